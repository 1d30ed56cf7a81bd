"""The `edgeseg` command line. Each command lives in its own module and registers on import.

Only Typer and rich are imported here; torch, onnxruntime and OpenCV load inside the commands.
"""

from __future__ import annotations

import typer

from edgeseg import __version__

# Command modules: importing registers the command (order = order in --help).
from edgeseg.cli import (
    bench,  # noqa: F401
    calibrate,  # noqa: F401
    data,  # noqa: F401
    demo,  # noqa: F401
    export,  # noqa: F401
    info,  # noqa: F401
    profiles,  # noqa: F401
    run,  # noqa: F401
    train,  # noqa: F401
    tune,  # noqa: F401
)
from edgeseg.cli._util import app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, export, calibrate, benchmark and run DESANet segmentation on NVIDIA Jetson."""


def main() -> None:
    app()


__all__ = ["app", "main"]

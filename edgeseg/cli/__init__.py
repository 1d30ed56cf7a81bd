"""The `edgeseg` command line. Each command lives in its own module and registers on import.

Only Typer and rich are imported here; torch, onnxruntime and OpenCV load inside the commands.
"""

from __future__ import annotations

import typer

from edgeseg import __version__

# Command modules: importing registers the command (order = order in --help).
from edgeseg.cli import train  # noqa: E402,F401
from edgeseg.cli import export  # noqa: E402,F401
from edgeseg.cli import calibrate  # noqa: E402,F401
from edgeseg.cli import bench  # noqa: E402,F401
from edgeseg.cli import run  # noqa: E402,F401
from edgeseg.cli import info  # noqa: E402,F401
from edgeseg.cli import profiles  # noqa: E402,F401
from edgeseg.cli import data  # noqa: E402,F401
from edgeseg.cli import demo  # noqa: E402,F401
from edgeseg.cli import doctor  # noqa: E402,F401
from edgeseg.cli import ros2  # noqa: E402,F401
from edgeseg.cli import tune  # noqa: E402,F401
from edgeseg.cli._util import app  # noqa: E402


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

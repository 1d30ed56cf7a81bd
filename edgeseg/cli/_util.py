"""Shared CLI plumbing: the Typer app, console, JSON output, one-line errors, progress bars."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer >= 0.16 vendors click
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older typer on the system click
    from click import exceptions as _click_exceptions  # type: ignore[no-redef]

from edgeseg.errors import EdgesegError


class _OneLineErrors(TyperGroup):
    """The root group: usage errors (a missing option, a number out of range, an unknown
    command) are one ``error: ...`` line and exit 2, like every EdgesegError, instead of
    click's boxed usage text."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _click_exceptions.ClickException as e:
            if isinstance(e, _click_exceptions.NoArgsIsHelpError):
                e.show()
            else:
                ctx = getattr(e, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                message = " ".join(e.format_message().split())
                console.print(f"[bold red]error:[/] {where}{message}{hint}", soft_wrap=True,
                              markup=True, highlight=False)
            sys.exit(e.exit_code)
        except typer.Abort:
            console.print("aborted")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="edgeseg",
    help="Train, export, calibrate, benchmark and run DESANet segmentation on NVIDIA Jetson.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Human output goes to stderr so that `--json` leaves stdout clean for machines.
console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")

# The Triton client options `run` and `bench` share (a model served by Triton, `--backend triton`).
TritonUrlOpt = typer.Option(
    None, "--url", help="Triton server for --backend triton: grpc://HOST:PORT, "
    "http://HOST:PORT or HOST:PORT (8000 HTTP, else gRPC) [localhost:8001].",
)
TritonModelOpt = typer.Option(
    None, "--triton-model", help="Model on the Triton server (default: its one edgeseg model).",
)
TritonTokenOpt = typer.Option(
    None, "--token", envvar="EDGESEG_TRITON_TOKEN",
    help="Bearer token for a gateway in front of Triton.",
)


# One model argument for every command (:mod:`edgeseg.artifacts.resolve` dispatches it).
MODEL_HELP = ("Checkpoint (.pt), ONNX (.onnx), TensorRT engine (.engine/.plan), "
              "triton://HOST:PORT/NAME, or a variant name (desanet-hn, desanet-rn) with "
              "--random-init.")


def model_option(help: str = MODEL_HELP) -> Any:
    return typer.Option(None, "--model", "-m", help=help)


# The flags --model replaced: hidden, still working, each prints one deprecation line.
WeightsAlias = typer.Option(None, "--weights", "-w", hidden=True)
OnnxAlias = typer.Option(None, "--onnx", hidden=True)
EngineAlias = typer.Option(None, "--engine", hidden=True)


def deprecated(replacement: str, **given: Any) -> None:
    """One ``warning:`` line for each old flag given (``weights=...`` is ``--weights``)."""
    for name, value in given.items():
        if value is not None and value is not False:
            flag = "--" + name.replace("_", "-")
            console.print(f"[yellow]warning:[/] {flag} is deprecated: use {replacement}",
                          soft_wrap=True, highlight=False)


def command(
    name: str | None = None, *, on: typer.Typer | None = None, **kwargs: Any
) -> Callable[[F], F]:
    """Register a command on the app (or the sub-app ``on``) and turn EdgesegError into
    `error: ...` + exit 2."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except EdgesegError as e:
                fail(str(e))
            except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
                # a path the user gave that cannot be written or read: bad input, not a bug
                fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
            except KeyboardInterrupt:
                console.print("interrupted")
                raise typer.Exit(130) from None

        (on or app).command(name, **kwargs)(run)
        return fn

    return wrap


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, non-zero exit, no traceback."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def emit_json(obj: Any) -> None:
    stdout.out(json.dumps(obj, indent=2, default=_json_default), highlight=False)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


@contextmanager
def progress(description: str, total: int | None, *, transient: bool = False) -> Iterator[Any]:
    """A rich progress bar on a terminal; on CI (no TTY) a few plain lines instead."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
        disable=not interactive(),
    )
    with bar:
        task = bar.add_task(description, total=total, info="")
        yield _Advancer(bar, task, description, total)


class _Advancer:
    """Advances the bar; without a terminal prints about ten progress lines in all."""

    def __init__(self, bar: Any, task: Any, description: str, total: int | None) -> None:
        self.bar, self.task, self.description, self.total = bar, task, description, total
        self.done = 0
        self._next_line = 0

    def note(self, info: str) -> None:
        """Show ``info`` beside the bar without advancing it (live terminals only)."""
        self.bar.update(self.task, info=info)

    def __call__(self, n: int = 1, info: str = "") -> None:
        self.done += n
        self.bar.update(self.task, advance=n, info=info)
        if self.bar.disable and self.total:
            if self.done >= self._next_line or self.done == self.total:
                console.print(f"{self.description}: {self.done}/{self.total} {info}")
                self._next_line = self.done + max(1, self.total // 10)


def existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise EdgesegError(f"{what} not found: {path}")
    return path

"""The one parser of ``--device`` for train, eval, bench and run.

``torch.device("cuda")`` has no index, and several torch calls (``torch.cuda.set_device`` in
DDP setups, ``device_ids``) refuse such a device; ``cuda`` here therefore means the *current*
CUDA device, ``cuda:<current_device()>``. Every bad spelling or a GPU that is not there is an
:class:`EdgesegError` (one line, exit 2), never a torch RuntimeError.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_HELP", "check_device_spec", "parse_device"]

DEVICE_HELP = "cpu, cuda (the current CUDA device), cuda:N or auto (CUDA when torch sees one)"

_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def check_device_spec(spec: str, what: str = "--device") -> str:
    """Validate the spelling of ``spec`` without touching CUDA; returns it lower-cased."""
    s = str(spec).strip().lower()
    m = _SPEC.match(s)
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise EdgesegError(f"{what}: unknown device {spec!r}: expected {DEVICE_HELP}")
    return s


def parse_device(
    spec: str | None, *, what: str = "--device", local_rank: int | None = None
) -> torch.device:
    """``spec`` -> a ``torch.device`` with an index for CUDA.

    ``None``/``auto``: ``cuda:<local_rank or current>`` when torch sees a GPU, else ``cpu``.
    ``cuda``: the current CUDA device (``local_rank`` under torchrun). ``cuda:N``: checked
    against the device count.
    """
    import torch

    s = check_device_spec("auto" if spec is None else spec, what)
    kind, _, index = s.partition(":")
    if kind == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if kind == "auto":
        if not available:
            return torch.device("cpu")
        kind = "cuda"
    if not available:
        built = torch.version.cuda
        why = f"torch {torch.__version__} is a CPU-only build" if built is None else (
            f"torch {torch.__version__} (CUDA {built}) sees no CUDA GPU")
        raise EdgesegError(f"{what} {spec}: {why}; use --device cpu")
    count = torch.cuda.device_count()
    if index:
        n = int(index)
    elif local_rank is not None:
        n = local_rank
    else:
        n = torch.cuda.current_device()
    if n >= count:
        raise EdgesegError(f"{what} {spec}: there is no CUDA device {n} (torch sees {count})")
    return torch.device("cuda", n)

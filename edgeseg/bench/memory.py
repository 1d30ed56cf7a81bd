"""Memory use of the benchmark process: peak RSS, CUDA allocator peaks, Jetson shared RAM.

Every function returns a dict; when a figure cannot be had here it says so with
``{"available": False, "reason": "..."}`` instead of raising, so reports keep their shape.
On Jetson the GPU has no memory of its own: its allocations show up as ``gpu_shared_mb`` of
system RAM (jtop's ``memory['RAM']['shared']``), not as a separate VRAM figure.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "cuda_memory",
    "jetson_memory",
    "memory_report",
    "parse_proc_status",
    "peak_rss",
    "reset_cuda_peak",
]

_MB = 1024 * 1024  # memory is reported in MiB, labelled MB as tools on Linux do


def parse_proc_status(text: str) -> dict[str, int]:
    """``/proc/<pid>/status`` ``Vm*`` fields in kB, e.g. ``{"VmHWM": 1748, "VmRSS": 1700}``."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def peak_rss(proc_status: str | Path = "/proc/self/status") -> dict[str, Any]:
    """Peak and current resident set size of this process.

    Linux: ``VmHWM``/``VmRSS`` from ``/proc/self/status``. Elsewhere: ``getrusage`` (peak
    only; ``ru_maxrss`` is kB on Linux, bytes on macOS).

    Returns:
        ``{"available", "peak_rss_mb", "rss_mb", "source"}`` or ``{"available": False,
        "reason"}``.
    """
    try:
        fields = parse_proc_status(Path(proc_status).read_text())
    except OSError:
        fields = {}
    if "VmHWM" in fields:
        return {
            "available": True,
            "peak_rss_mb": fields["VmHWM"] / 1024,
            "rss_mb": fields["VmRSS"] / 1024 if "VmRSS" in fields else None,
            "source": "VmHWM",
        }
    try:
        import resource
    except ImportError:
        return {"available": False, "reason": "neither /proc nor resource.getrusage here"}
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return {
        "available": True,
        "peak_rss_mb": maxrss * scale / _MB,
        "rss_mb": None,
        "source": "getrusage",
    }


def _cuda() -> tuple[Any, str | None]:
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA device"
    return torch, None


def reset_cuda_peak(device: Any = None) -> None:
    """Start a new peak window for :func:`cuda_memory` (no-op without CUDA)."""
    torch, reason = _cuda()
    if reason is None:
        torch.cuda.reset_peak_memory_stats(device)


def cuda_memory(device: Any = None) -> dict[str, Any]:
    """Peaks of torch's CUDA caching allocator since the last :func:`reset_cuda_peak`.

    Only memory allocated through torch counts: TensorRT and onnxruntime allocate on their
    own; on Jetson use :func:`jetson_memory` for the whole picture.

    Returns:
        ``{"available", "max_allocated_mb", "max_reserved_mb", "allocated_mb", "device"}`` or
        ``{"available": False, "reason"}``.
    """
    torch, reason = _cuda()
    if reason is not None:
        return {"available": False, "reason": reason}
    return {
        "available": True,
        "max_allocated_mb": torch.cuda.max_memory_allocated(device) / _MB,
        "max_reserved_mb": torch.cuda.max_memory_reserved(device) / _MB,
        "allocated_mb": torch.cuda.memory_allocated(device) / _MB,
        "device": torch.cuda.get_device_name(device),
    }


def jetson_memory() -> dict[str, Any]:
    """Jetson RAM from jtop: ``memory['RAM']`` in kB, ``shared`` being what the GPU holds.

    Returns:
        ``{"available", "ram_used_mb", "ram_total_mb", "gpu_shared_mb", "source": "jtop"}`` or
        ``{"available": False, "reason"}``.
    """
    try:
        from jtop import jtop
    except ImportError:
        return {"available": False, "reason": "jetson-stats is not installed"}
    j = jtop()
    try:
        j.start()
        ram = j.memory["RAM"]
        return {
            "available": True,
            "ram_used_mb": ram["used"] / 1024,
            "ram_total_mb": ram["tot"] / 1024,
            "gpu_shared_mb": ram.get("shared", 0) / 1024,
            "source": "jtop",
        }
    except Exception as e:  # noqa: BLE001 - JtopException, KeyError on odd boards
        return {"available": False, "reason": f"jtop: {' '.join(str(e).split())}"}
    finally:
        with contextlib.suppress(Exception):
            j.close()


def memory_report(device: Any = None, jetson: bool = True) -> dict[str, Any]:
    """``{"rss": peak_rss(), "cuda": cuda_memory(), "jetson": jetson_memory()}``."""
    report: dict[str, Any] = {"rss": peak_rss(), "cuda": cuda_memory(device)}
    if jetson:
        report["jetson"] = jetson_memory()
    return report

"""The machine and software a benchmark ran on, stamped into every `edgeseg bench` report.

Versions of the Python stack (:func:`versions`), CPU / GPU / board and load (:func:`machine`),
thread settings (:func:`_threads_info`), the device profile (given or auto-detected,
:func:`_resolve_profile`), whether this is a Jetson, and the peak-RSS reset before timing.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import __version__
from edgeseg.errors import EdgesegError

__all__ = ["machine", "versions"]


def versions() -> dict[str, Any]:
    """Versions of the Python stack that the numbers depend on (None = not installed)."""
    out: dict[str, Any] = {
        "edgeseg": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for mod in ("torch", "torchvision", "onnx", "onnxruntime", "cv2"):
        if mod in sys.modules or _importable(mod):
            try:
                m = __import__(mod)
                out["opencv" if mod == "cv2" else mod] = getattr(m, "__version__", "?")
            except Exception:  # noqa: BLE001 - a broken optional install is just absent
                out["opencv" if mod == "cv2" else mod] = None
        else:
            out["opencv" if mod == "cv2" else mod] = None
    if _importable("tensorrt"):
        try:
            import tensorrt

            out["tensorrt"] = tensorrt.__version__
        except Exception:  # noqa: BLE001 - the PyPI stub raises on import
            out["tensorrt"] = None
    else:
        out["tensorrt"] = None
    return out


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU (when torch sees one) and load average at the start."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
    }
    with contextlib.suppress(AttributeError):
        out["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, AttributeError):
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    model = Path("/proc/device-tree/model")
    with contextlib.suppress(OSError):
        out["board"] = model.read_bytes().decode("utf-8", "replace").strip("\x00 \n")
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM) of this process; False where it can't."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _is_jetson(profile: Any) -> bool:
    if profile is not None and profile.device.kind == "jetson":
        return True
    return Path("/etc/nv_tegra_release").exists()


def _resolve_profile(profile: str | None, warn: Callable[[str], None]) -> Any:
    from edgeseg.profiles import ProfileWarning, load_profile

    if profile is not None:
        return load_profile(profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProfileWarning)
        try:
            prof = load_profile("auto")
        except EdgesegError as e:
            warn(f"no device profile ({e}); roofline from measured peaks")
            return None
    for w in caught:
        if issubclass(w.category, ProfileWarning):
            warn(str(w.message))
    return prof


def _threads_info(runs: Sequence[Any], requested: int | None) -> dict[str, Any]:
    """Thread settings in effect: torch's, and onnxruntime's of the ``runs``' segmenters
    (:class:`~edgeseg.bench.measure._Run`: anything with a ``seg``)."""
    import torch

    out: dict[str, Any] = {
        "requested": requested,
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError):
        out["usable_cpus"] = len(os.sched_getaffinity(0))
    for r in runs:
        opts = getattr(r.seg, "options", None)
        if isinstance(opts, dict) and "intra_op_num_threads" in opts:
            out["onnxruntime_intra_op"] = opts["intra_op_num_threads"]
            out["onnxruntime_inter_op"] = opts.get("inter_op_num_threads")
    return out

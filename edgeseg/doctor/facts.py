"""What `edgeseg doctor` looks at: files under a root folder and what the Python packages say.

:func:`gather` collects :class:`Facts` (a test passes a fake root and its own
:class:`PythonFacts`); :mod:`edgeseg.doctor.checks` judges them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["JETPACK_OF_L4T", "Facts", "PythonFacts", "gather", "gather_python", "jetpack_of",
           "parse_l4t"]

# L4T release -> (JetPack, TensorRT it ships); NVIDIA's JetPack archive.
JETPACK_OF_L4T: tuple[tuple[tuple[int, int, int], str, str], ...] = (
    ((36, 4, 3), "6.2", "10.3"),
    ((36, 4, 0), "6.1", "10.3"),
    ((36, 3, 0), "6.0", "8.6.2"),
    ((36, 2, 0), "6.0 DP", "8.6.2"),
    ((35, 3, 1), "5.1.x", "8.5.2"),
    ((35, 1, 0), "5.0.2", "8.4.1"),
    ((32, 7, 1), "4.6.x", "8.2.1"),
)

@dataclass
class PythonFacts:
    """What the installed packages report (None: not installed / not importable)."""

    torch: str | None = None
    torch_cuda: str | None = None  # torch.version.cuda; None for a CPU build
    cuda_available: bool = False
    gpu_name: str | None = None
    gpu_cc: str | None = None  # "8.7"
    arch_list: list[str] = field(default_factory=list)
    tensorrt: str | None = None
    tensorrt_error: str | None = None  # import failed with this (a broken libnvinfer)
    deform_plugin: bool | None = None  # ModulatedDeformConv2d registered (None: unknown)
    torch2trt: str | None = None
    torch2trt_error: str | None = None
    opencv: str | None = None
    gstreamer: bool | None = None
    onnxruntime: str | None = None
    ort_providers: list[str] = field(default_factory=list)


@dataclass
class Facts:
    machine: str
    jetson: bool
    board: str | None  # /proc/device-tree/model
    compatible: str  # /proc/device-tree/compatible, lower case, NULs as spaces
    profile: str | None  # the profile detect() picks
    profile_source: str | None  # which detection source answered
    l4t: tuple[int, int, int] | None
    nvpmodel_id: int | None
    nvpmodel_name: str | None
    clocks_pinned: bool | None  # CPU min frequency == max (what jetson_clocks sets)
    jtop_socket: bool
    python: PythonFacts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["l4t"] = ".".join(map(str, self.l4t)) if self.l4t else None
        return d


# ---------------------------------------------------------------------------------------------
# Facts from files


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel.lstrip("/")).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def parse_l4t(text: str | None) -> tuple[int, int, int] | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> (36, 4, 3)."""
    if not text:
        return None
    m = re.search(r"#\s*R(\d+)\s*\(\w+\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def jetpack_of(l4t: tuple[int, int, int]) -> tuple[str, str] | None:
    """(JetPack, TensorRT) of an L4T release: the newest table row not above it, same major."""
    for rel, jp, trt in JETPACK_OF_L4T:
        if rel[0] == l4t[0] and l4t >= rel:
            return jp, trt
    return None


def _nvpmodel(root: Path) -> tuple[int | None, str | None]:
    status = _read(root, "/var/lib/nvpmodel/status") or ""
    m = re.search(r"pmode:\s*(\d+)", status)
    if not m:
        return None, None
    mode = int(m.group(1))
    conf = _read(root, "/etc/nvpmodel.conf") or ""
    names = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", conf)}
    return mode, names.get(mode)


def _clocks_pinned(root: Path) -> bool | None:
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    lo, hi = _read(root, base + "scaling_min_freq"), _read(root, base + "scaling_max_freq")
    if lo is None or hi is None:
        return None
    return lo.strip() == hi.strip()


def gather(root: str | Path = "/", python: PythonFacts | None = None,
           machine: str | None = None, environ: dict[str, str] | None = None) -> Facts:
    """Facts of the machine whose files are under ``root`` (``/``: this one).

    ``environ``: the variables board detection reads (``EDGESEG_BOARD``, ``EDGESEG_PROFILE``;
    default: this process's for ``/``, none for another root).
    """
    import os
    import platform

    from edgeseg.profiles.detection import detect

    root = Path(root)
    if not root.is_dir():
        raise EdgesegError(f"--root {root} is not a folder")
    env = dict(environ) if environ is not None else (dict(os.environ) if root == Path("/") else {})
    py = python if python is not None else gather_python()
    model = (_read(root, "/proc/device-tree/model") or env.get("EDGESEG_BOARD")
             or _read(root, "/tmp/nv_jetson_model") or "").replace("\x00", " ").strip()
    compat = (_read(root, "/proc/device-tree/compatible") or "").replace("\x00", " ").lower()
    release = _read(root, "/etc/nv_tegra_release")
    jetson = bool(release) or "nvidia,tegra" in compat or "jetson" in model.lower()
    try:
        found = detect(
            model_path=root / "proc/device-tree/model",
            compatible_path=root / "proc/device-tree/compatible",
            release_path=root / "etc/nv_tegra_release",
            mounted_model_path=root / "tmp/nv_jetson_model",
            environ=env,
            gpu_names=lambda: [py.gpu_name] if py.gpu_name else [],
        )
        profile: str | None = found.profile
        source: str | None = found.source
    except EdgesegError:
        profile = source = None  # a board without a profile; the board row says so
    mode, name = _nvpmodel(root)
    return Facts(
        machine=machine or platform.machine(), jetson=jetson, board=model or None,
        compatible=compat.strip(), profile=profile, profile_source=source, l4t=parse_l4t(release), nvpmodel_id=mode, nvpmodel_name=name,
        clocks_pinned=_clocks_pinned(root), jtop_socket=(root / "run/jtop.sock").exists(),
        python=py,
    )


# ---------------------------------------------------------------------------------------------
# Facts from Python packages (the only part that imports heavy things)


def plugin_registered(registry: Any, name: str, version: str) -> bool:
    """Whether ``registry`` holds the creator ``name``/``version``. TensorRT 11's bindings keep
    only ``get_creator`` (10.x has both; 8.6 only ``get_plugin_creator``)."""
    lookup = getattr(registry, "get_creator", None) or getattr(registry, "get_plugin_creator")
    return lookup(name, version, "") is not None


def gather_python() -> PythonFacts:
    f = PythonFacts()
    try:
        import torch

        f.torch = str(torch.__version__)
        f.torch_cuda = torch.version.cuda
        f.cuda_available = bool(torch.cuda.is_available())
        if f.cuda_available:
            f.gpu_name = torch.cuda.get_device_name(0)
            major, minor = torch.cuda.get_device_capability(0)
            f.gpu_cc = f"{major}.{minor}"
        f.arch_list = list(torch.cuda.get_arch_list()) if f.torch_cuda else []
    except ImportError:
        pass
    if f.gpu_name is None:
        from edgeseg.profiles.detection import _gpu_names

        names = _gpu_names()
        f.gpu_name = names[0] if names else None
    try:
        import tensorrt

        if hasattr(tensorrt, "Builder"):  # not the stubs' empty namespace package
            f.tensorrt = str(tensorrt.__version__)
            from edgeseg.deploy.tensorrt import init_plugins
            from edgeseg.deploy.trt_compat import MODULATED_DEFORM_PLUGIN

            init_plugins(tensorrt)
            f.deform_plugin = plugin_registered(tensorrt.get_plugin_registry(),
                                                MODULATED_DEFORM_PLUGIN, "1")
    except (ImportError, OSError, RuntimeError, AttributeError) as e:
        if not isinstance(e, ImportError) or "tensorrt" not in str(e):
            f.tensorrt_error = f"{type(e).__name__}: {e}"
    try:
        import torch2trt

        f.torch2trt = str(getattr(torch2trt, "__version__", "unknown"))
    except ImportError:
        pass
    except (OSError, RuntimeError, AttributeError) as e:
        f.torch2trt_error = f"{type(e).__name__}: {e}"
    try:
        import cv2

        f.opencv = str(cv2.__version__)
        m = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
        f.gstreamer = bool(m and m.group(1).upper() == "YES")
    except ImportError:
        pass
    try:
        import onnxruntime

        f.onnxruntime = str(onnxruntime.__version__)
        f.ort_providers = list(onnxruntime.get_available_providers())
    except ImportError:
        pass
    return f


# ---------------------------------------------------------------------------------------------
# Judgement (pure)

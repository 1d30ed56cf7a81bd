"""Which profile fits this machine: Jetson device tree and L4T release, NVIDIA GPU names
(NVML, else nvidia-smi), else the x86 CPU profile.

Inside a container the Jetson files are not what they are on the host: Docker masks
``/sys/firmware`` (so ``/proc/device-tree/*`` is unreadable) and L4T images carry an empty or no
``/etc/nv_tegra_release``. The host hands them in instead (:data:`CONTAINER_FLAGS`, the run
lines in docker/README.md): ``$EDGESEG_BOARD`` with the module name, jetson-containers' copy of
it at ``/tmp/nv_jetson_model``, and the release file mounted read-only. ``$EDGESEG_PROFILE``
names the profile outright. :attr:`Detection.source` says which of these answered.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.profiles.schema import ENV_PROFILES_DIR, ProfileWarning

__all__ = [
    "CONTAINER_FLAGS",
    "DEVICE_TREE_COMPATIBLE",
    "DEVICE_TREE_MODEL",
    "ENV_BOARD",
    "ENV_PROFILE",
    "MOUNTED_MODEL",
    "SOURCES",
    "TEGRA_RELEASE",
    "Detection",
    "detect",
    "detect_profile",
    "detect_with_source",
]

# Detection reads these; tests point them elsewhere through detect()'s keyword arguments.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
DEVICE_TREE_COMPATIBLE = Path("/proc/device-tree/compatible")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# jetson-containers' run.sh copies the host's model file here (/proc cannot be bind-mounted).
MOUNTED_MODEL = Path("/tmp/nv_jetson_model")
ENV_PROFILE = "EDGESEG_PROFILE"  # a profile name: what `auto` resolves to, no detection
ENV_BOARD = "EDGESEG_BOARD"  # the host's /proc/device-tree/model, for containers

# Detection.source values, in the order detect() tries them.
SOURCES = (
    f"env:{ENV_PROFILE}",
    f"env:{ENV_BOARD}",
    "device-tree-model",
    "mounted-model",
    "device-tree-compatible",
    "nv_tegra_release",
    "gpu-name",
    "fallback",
)

# `docker run` flags that let detect() see a Jetson host from inside a container, with why.
# docker/README.md's run lines are checked against this list (tests/test_docker.py).
CONTAINER_FLAGS: tuple[tuple[str, str], ...] = (
    (
        f"-e {ENV_BOARD}=\"$(tr -d '\\0' 2>/dev/null </proc/device-tree/model)\"",
        "the module name (Docker masks /proc/device-tree in containers)",
    ),
    (
        f"-v {TEGRA_RELEASE}:{TEGRA_RELEASE}:ro",
        "the host's L4T release (empty or missing in L4T images)",
    ),
)


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` chose and why; ``warnings`` is non-empty for a nearest match.

    ``source`` is one of :data:`SOURCES`: what answered (an environment variable, a file, the
    GPU name, or the CPU fallback); ``reason`` is the human-readable detail.
    """

    profile: str
    reason: str
    warnings: tuple[str, ...] = ()
    source: str = "fallback"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


_NX_NEAREST = (
    "Orin NX has no profile of its own; using jetson-orin-nano (same 1024-core GPU, but the NX "
    "clocks higher, has 102 GB/s and DLA cores): copy and edit it for exact figures"
)
_XAVIER_NX_NEAREST = (
    "Xavier NX has no profile of its own; using jetson-agx-xavier (same Volta generation, but "
    "the NX has 384 cores and 59.7 GB/s): copy and edit it for exact figures"
)
_ORIN_32GB = (
    "AGX Orin 32GB: the jetson-agx-orin figures are for the 64GB module (2048 cores, "
    "204.8 GB/s); the 32GB one has 1792 cores"
)

# (substring of the lower-cased /proc/device-tree/model, profile, warning or None)
_JETSON_MODELS: tuple[tuple[str, str, str | None], ...] = (
    ("agx orin", "jetson-agx-orin", None),
    ("orin nano", "jetson-orin-nano", None),
    ("orin nx", "jetson-orin-nano", _NX_NEAREST),
    ("agx xavier", "jetson-agx-xavier", None),
    ("jetson-agx", "jetson-agx-xavier", None),  # L4T R32 spelling for AGX Xavier
    ("xavier nx", "jetson-agx-xavier", _XAVIER_NX_NEAREST),
)

# (substring of /proc/device-tree/compatible, profile, warning or None); order matters.
_JETSON_BOARDS: tuple[tuple[str, str, str | None], ...] = (
    ("p3701-0004", "jetson-agx-orin", _ORIN_32GB),
    ("p3701", "jetson-agx-orin", None),
    ("p3767-0000", "jetson-orin-nano", _NX_NEAREST),
    ("p3767-0001", "jetson-orin-nano", _NX_NEAREST),
    ("p3767", "jetson-orin-nano", None),
    ("p3668", "jetson-agx-xavier", _XAVIER_NX_NEAREST),
    ("p2888", "jetson-agx-xavier", None),
    ("tegra194", "jetson-agx-xavier", None),
)


_R36_GUESS = (
    "could not read the Jetson module name; assuming the smallest Orin (jetson-orin-nano): "
    f"pass --profile jetson-agx-orin on an AGX Orin (in a container: -e {ENV_BOARD}=..., "
    "see docker/README.md)"
)


def _unknown_gpu(gpu: str) -> str:
    return (
        f"GPU {gpu!r} has no edgeseg profile; using x86-cpu (onnxruntime on the CPU). Copy "
        "profiles/gtx1080ti.yaml, set the device figures, and pass its path or put it in "
        f"${ENV_PROFILES_DIR}"
    )


def _no_profile(what: str) -> EdgesegError:
    return EdgesegError(
        f"{what} has no edgeseg profile (profiles cover AGX Orin, Orin Nano/NX, AGX Xavier); "
        "copy profiles/jetson-orin-nano.yaml, edit it, and pass its path"
    )


def detect(
    *,
    model_path: Path | str | None = None,
    compatible_path: Path | str | None = None,
    release_path: Path | str | None = None,
    mounted_model_path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    gpu_names: Callable[[], list[str]] | None = None,
) -> Detection:
    """Choose the profile for this machine. Arguments replace the paths, the environment
    (default ``os.environ``) and the NVML query (tests).

    Order (:data:`SOURCES`; empty variables and files count as absent): ``$EDGESEG_PROFILE``;
    the module name from ``$EDGESEG_BOARD``, ``/proc/device-tree/model`` or the mounted
    ``/tmp/nv_jetson_model``; ``/proc/device-tree/compatible``; ``/etc/nv_tegra_release``;
    then the first NVIDIA GPU by name (NVML, else ``nvidia-smi``); else ``x86-cpu``. Decisions:

    * Orin NX -> ``jetson-orin-nano``, Xavier NX -> ``jetson-agx-xavier`` (nearest, warned).
    * Older Jetsons (Nano, TX1, TX2) -> EdgesegError: no profile would be close.
    * A Jetson whose module cannot be read: L4T R36 (JetPack 6 runs only on Orin) ->
      ``jetson-orin-nano``, the smallest Orin, warned; other releases -> EdgesegError.
    * GTX 1080 Ti -> ``gtx1080ti``. Any other GPU -> ``x86-cpu`` with a warning: its peaks
      are unknown, and the CPU profile at least runs everywhere; write a profile for it.
    """
    env = os.environ if environ is None else environ
    model_p = Path(model_path) if model_path is not None else DEVICE_TREE_MODEL
    compat_p = Path(compatible_path) if compatible_path is not None else DEVICE_TREE_COMPATIBLE
    release_p = Path(release_path) if release_path is not None else TEGRA_RELEASE
    mounted_p = Path(mounted_model_path) if mounted_model_path is not None else MOUNTED_MODEL

    forced = env.get(ENV_PROFILE, "").strip()
    if forced:
        if forced == "auto":
            raise EdgesegError(f"${ENV_PROFILE}=auto: name a profile (see `edgeseg profiles list`)")
        return Detection(forced, f"${ENV_PROFILE}={forced!r}", (), f"env:{ENV_PROFILE}")

    # The module name: the first non-empty of the variable, the device tree, the mounted copy.
    model, model_origin, model_source = "", str(model_p), "device-tree-model"
    for text, origin, source in (
        (env.get(ENV_BOARD), f"${ENV_BOARD}", f"env:{ENV_BOARD}"),
        (_read_text(model_p), str(model_p), "device-tree-model"),
        (_read_text(mounted_p), str(mounted_p), "mounted-model"),
    ):
        cleaned = (text or "").replace("\x00", " ").strip()
        if cleaned:
            model, model_origin, model_source = cleaned, origin, source
            break
    compat = (_read_text(compat_p) or "").replace("\x00", " ").lower()
    release = (_read_text(release_p) or "").strip()

    if model:
        low = model.lower()
        for needle, name, warn in _JETSON_MODELS:
            if needle in low:
                warns = [warn] if warn else []
                if name == "jetson-agx-orin" and "p3701-0004" in compat:
                    warns.append(_ORIN_32GB)
                return Detection(name, f"{model_origin}: {model!r}", tuple(warns), model_source)
    jetsonish = "jetson" in model.lower() or "nvidia,tegra" in compat or bool(release)
    for needle, name, warn in _JETSON_BOARDS:
        if needle in compat:
            return Detection(
                name, f"{compat_p}: {needle}", (warn,) if warn else (), "device-tree-compatible"
            )
    if jetsonish:
        if model:  # the module names itself but matches no profile (Nano, TX2, Thor, ...)
            raise _no_profile(f"Jetson {model!r} ({model_origin})")
        if "tegra210" in compat or "tegra186" in compat:  # Nano/TX1, TX2
            raise _no_profile(f"this Jetson ({compat_p}: {compat.split()[0]})")
        m = re.search(r"#\s*R(\d+)", release)
        if m and m.group(1) == "36":  # JetPack 6 runs on Orin modules only
            return Detection(
                "jetson-orin-nano",
                f"{release_p}: L4T R36 (JetPack 6: an Orin)",
                (_R36_GUESS,),
                "nv_tegra_release",
            )
        first = release.splitlines()[0] if release else compat.strip()
        raise EdgesegError(
            f"this is a Jetson ({first}) but {model_p} is unreadable, so the module is unknown; "
            f"pass --profile NAME or set ${ENV_PROFILE} (see `edgeseg profiles list`)"
        )

    names = (gpu_names or _gpu_names)()
    if names:
        gpu = names[0]
        low = gpu.lower()
        if "1080 ti" in low:
            return Detection("gtx1080ti", f"NVIDIA GPU 0: {gpu!r}", (), "gpu-name")
        return Detection(
            "x86-cpu",
            f"NVIDIA GPU 0 {gpu!r} has no profile",
            (_unknown_gpu(gpu),),
            "gpu-name",
        )
    machine = platform.machine().lower()
    cpu_warns: tuple[str, ...] = ()
    if machine and machine not in ("x86_64", "amd64", "i386", "i686"):
        hint = (
            f"not an x86 machine ({machine}); x86-cpu stands for any CPU here (a Jetson in a "
            f"container: pass -e {ENV_BOARD}=... and -v {TEGRA_RELEASE}:{TEGRA_RELEASE}:ro, "
            "see docker/README.md)"
        )
        cpu_warns = (hint,)
    return Detection("x86-cpu", "no Jetson and no NVIDIA GPU found", cpu_warns, "fallback")


def detect_with_source(**kwargs: Any) -> tuple[str, str]:
    """``(profile, source)`` for this machine: the profile :func:`detect` chooses and which of
    :data:`SOURCES` answered (what `edgeseg doctor` reports). Raises as :func:`detect` does."""
    found = detect(**kwargs)
    return found.profile, found.source


def detect_profile(**kwargs: Any) -> str:
    """The profile name :func:`detect` chooses; nearest matches raise a ProfileWarning."""
    found = detect(**kwargs)
    for w in found.warnings:
        warnings.warn(w, ProfileWarning, stacklevel=2)
    return found.profile


def _gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs, NVML first (optional pynvml), else nvidia-smi; [] if none."""
    names = _nvml_gpu_names()
    return names if names is not None else _smi_gpu_names()


def _nvml_gpu_names() -> list[str] | None:
    """GPU names through NVML; None when pynvml or the driver is missing (or on a Jetson)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            n = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(n.decode() if isinstance(n, bytes) else str(n))
        return names
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None
    finally:
        pynvml.nvmlShutdown()


def _smi_gpu_names() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]

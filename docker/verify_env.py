#!/usr/bin/env python3
"""Check an edgeseg image: the last build step of each docker/Dockerfile.*, and its run-time self-test.

The images install edgeseg with ``pip install --no-deps`` (each brings torch, torchvision and
OpenCV its own way), so ``pip check`` would report the deliberate substitutions. This script checks
what matters instead. Build-time checks need no GPU and load no GPU library (no TensorRT, no
torch2trt, no device), so they work with either Docker builder:

* every requirement edgeseg declares (plus ``--extra`` ones) is installed in a matching version;
  ``opencv-python`` counts as met by any OpenCV wheel of a matching version, or with
  ``--system-opencv`` by an importable system cv2 (JetPack's, which pip does not know about);
  pre-release builds (NVIDIA's ``2.5.0a0+...`` torch) count as matching;
* ``edgeseg.cli``, ``cv2``, ``onnx``, ``onnxruntime`` and ``onnxscript`` import;
* each ``--require`` of :data:`BUILD_CHECKS`: ``gstreamer`` (cv2 built with GStreamer),
  ``torch-cuda`` (torch built with CUDA), ``torchvision-cuda`` (torchvision's deform_conv2d has
  a CUDA kernel);
* each ``--cuda-arch X.Y`` (TORCH_CUDA_ARCH_LIST syntax): torch's compiled architectures run on
  compute capability X.Y (read from the build, no GPU needed).

With ``--runtime`` (``docker run``, where the NVIDIA runtime mounts the driver libraries),
:data:`RUNTIME_CHECKS` may be required too: ``tensorrt`` (imports and creates a builder on the
GPU), ``torch2trt`` (imports), ``cuda-device`` (torch sees a GPU whose compute capability its
build covers, and torchvision's deformable conv runs on it). Without ``--runtime`` they are
refused, so no Dockerfile can make them a build step.

Prints one line per check; exits 1 when any fails, 2 on bad arguments. Standard library plus
``packaging``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import re
import sys
from collections.abc import Callable

from packaging.requirements import Requirement  # pinned in every image's constraints/base
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

OPENCV_DISTS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _cv2_version() -> str | None:
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        return None
    return str(getattr(cv2, "__version__", "0"))


def _matches(req: Requirement, version: str) -> bool:
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def requirement_problem(req: Requirement, system_opencv: bool = False) -> str | None:
    """Why ``req`` is not met here, or None when it is."""
    name = canonicalize_name(req.name)
    if name in OPENCV_DISTS:
        found = {d: v for d in OPENCV_DISTS if (v := _installed(d)) is not None}
        if any(_matches(req, v) for v in found.values()):
            return None
        if system_opencv and not found:
            v = _cv2_version()
            if v is not None and _matches(req, v):
                return None
            return f"{req}: system cv2 {v or 'not importable'}"
        return f"{req}: installed {found or 'none'}"
    v = _installed(name)
    if v is None:
        return f"{req}: not installed"
    if not _matches(req, v):
        return f"{req}: installed {v}"
    return None


def edgeseg_requirements(extras: tuple[str, ...] = ()) -> list[Requirement]:
    """edgeseg's declared requirements that apply here (base plus the given extras)."""
    reqs = []
    for line in md.requires("edgeseg") or []:
        req = Requirement(line)
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": e}) for e in ("", *extras)
        ):
            continue
        reqs.append(req)
    return reqs


def _gstreamer() -> str:
    import cv2

    m = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    if not m or m.group(1).upper() != "YES":
        raise RuntimeError("this OpenCV was built without GStreamer (csi:// needs it)")
    return f"cv2 {cv2.__version__} with GStreamer"


def parse_cuda_archs(text: str) -> list[tuple[int, int]]:
    """``"8.7"``, ``"7.2;8.7"``, ``"8.6 8.7+PTX"`` (TORCH_CUDA_ARCH_LIST) -> [(8, 7), ...]."""
    out = []
    for item in re.split(r"[;\s,]+", text.strip()):
        if not item:
            continue
        m = re.fullmatch(r"(\d+)\.(\d)(\+PTX)?", item)
        if not m:
            raise ValueError(f"not a compute capability: {item!r} (expected e.g. 8.7)")
        out.append((int(m[1]), int(m[2])))
    if not out:
        raise ValueError("no compute capability given")
    return out


def arch_runs_on(arch_flags: list[str], capability: tuple[int, int]) -> bool:
    """Whether code built for ``arch_flags`` (torch's ``sm_87``/``compute_87`` list) runs on a
    GPU of ``capability``: SASS for sm_Mn runs on M.n' with n' >= n (same major); PTX
    (compute_Mn) is JIT-compiled for any capability >= M.n; ``a`` variants (sm_90a) run on
    their own capability only."""
    for flag in arch_flags:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", flag)
        if not m:
            continue
        built = (int(m[2]), int(m[3]))
        if m[4] == "a":
            ok = built == capability
        elif m[1] == "compute":
            ok = built <= capability
        else:
            ok = built[0] == capability[0] and built[1] <= capability[1]
        if ok:
            return True
    return False


def _torch_arch_flags() -> list[str]:
    """The architectures torch was compiled for, without a GPU (torch.cuda.get_arch_list()
    returns [] when no device is available, as in a build step on torch 2.5/2.6)."""
    import torch

    flags = getattr(torch._C, "_cuda_getArchFlags", lambda: None)()
    return str(flags).split() if flags else []


def _tensorrt() -> str:
    trt = importlib.import_module("tensorrt")
    version = getattr(trt, "__version__", None)
    if version is None:
        raise RuntimeError("`tensorrt` imports but has no __version__ (type stubs only?)")
    if trt.Builder(trt.Logger(trt.Logger.ERROR)) is None:
        raise RuntimeError(f"tensorrt {version} imports but cannot create a builder (no GPU?)")
    return f"tensorrt {version} (builder on the GPU)"


def _torch2trt() -> str:
    importlib.import_module("torch2trt")
    return f"torch2trt {_installed('torch2trt') or '?'}"


def _cuda_device() -> str:
    import torch
    import torchvision

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no GPU (docker run --runtime nvidia / --gpus all?)")
    cap = torch.cuda.get_device_capability(0)
    flags = _torch_arch_flags()
    if not arch_runs_on(flags, cap):
        raise RuntimeError(f"torch is built for {' '.join(flags)}, not for this GPU ({cap[0]}.{cap[1]})")
    x = torch.zeros(1, 1, 4, 4, device="cuda")
    torchvision.ops.deform_conv2d(
        x, torch.zeros(1, 18, 2, 2, device="cuda"), torch.ones(1, 1, 3, 3, device="cuda")
    )
    torch.cuda.synchronize()
    name = torch.cuda.get_device_name(0)
    return f"GPU {name!r} ({cap[0]}.{cap[1]}) runs torch and deform_conv2d"


def _torch_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        raise RuntimeError(f"torch {torch.__version__} is a CPU-only build")
    return f"torch {torch.__version__} (CUDA {torch.version.cuda})"


def _cuda_arch(capability: tuple[int, int]) -> str:
    flags = _torch_arch_flags()
    if not arch_runs_on(flags, capability):
        raise RuntimeError(
            f"torch is built for {' '.join(flags) or 'no CUDA architecture'}, "
            f"which does not run on {capability[0]}.{capability[1]}"
        )
    return f"torch's {' '.join(flags)} runs on {capability[0]}.{capability[1]}"


def _torchvision_cuda() -> str:
    import torch
    import torchvision  # registers torchvision:: ops

    if not torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::deform_conv2d", "CUDA"):
        raise RuntimeError(f"torchvision {torchvision.__version__} has no CUDA deform_conv2d")
    return f"torchvision {torchvision.__version__} (CUDA ops)"


# Build steps may require these: no GPU, no driver libraries, no TensorRT.
BUILD_CHECKS: dict[str, Callable[[], str]] = {
    "gstreamer": _gstreamer,
    "torch-cuda": _torch_cuda,
    "torchvision-cuda": _torchvision_cuda,
}
# Only with --runtime (in `docker run`): these load TensorRT or touch the GPU.
RUNTIME_CHECKS: dict[str, Callable[[], str]] = {
    "tensorrt": _tensorrt,
    "torch2trt": _torch2trt,
    "cuda-device": _cuda_device,
}
CHECKS = {**BUILD_CHECKS, **RUNTIME_CHECKS}
IMPORTS = ("edgeseg.cli", "cv2", "onnx", "onnxruntime", "onnxscript")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", action="append", default=[], help="edgeseg extra to include")
    ap.add_argument(
        "--system-opencv", action="store_true", help="opencv-python may be a system cv2"
    )
    ap.add_argument("--require", action="append", default=[], choices=sorted(CHECKS))
    ap.add_argument(
        "--cuda-arch", action="append", default=[], metavar="X.Y",
        help="compute capability torch's build must cover (TORCH_CUDA_ARCH_LIST syntax)",
    )
    ap.add_argument(
        "--runtime", action="store_true",
        help="in `docker run`: allow the checks that load TensorRT or use the GPU",
    )
    args = ap.parse_args(argv)
    gpu_checks = sorted(set(args.require) & set(RUNTIME_CHECKS))
    if gpu_checks and not args.runtime:
        ap.error(
            f"--require {' '.join(gpu_checks)} loads GPU libraries: a run-time check "
            "(docker run ... verify_env.py --runtime), never a build step"
        )
    try:
        archs = [cap for text in args.cuda_arch for cap in parse_cuda_archs(text)]
    except ValueError as e:
        ap.error(f"--cuda-arch: {e}")

    failures = 0

    def report(ok: bool, text: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok' if ok else 'FAIL'}: {text}", flush=True)

    try:
        reqs = edgeseg_requirements(tuple(args.extra))
    except md.PackageNotFoundError:
        report(False, "edgeseg is not installed")
        return 1
    for req in reqs:
        problem = requirement_problem(req, system_opencv=args.system_opencv)
        report(problem is None, problem or str(req))
    for module in IMPORTS:
        try:
            importlib.import_module(module)
            report(True, f"import {module}")
        except Exception as e:  # noqa: BLE001 - report any import failure
            report(False, f"import {module}: {type(e).__name__}: {e}")
    for name in args.require:
        try:
            report(True, CHECKS[name]())
        except Exception as e:  # noqa: BLE001
            report(False, f"{name}: {type(e).__name__}: {e}")
    for cap in archs:
        try:
            report(True, _cuda_arch(cap))
        except Exception as e:  # noqa: BLE001
            report(False, f"cuda-arch {cap[0]}.{cap[1]}: {type(e).__name__}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check an edgeseg image at build time; the last step of each docker/Dockerfile.*.

The images install edgeseg with ``pip install --no-deps`` (each brings torch, torchvision and
OpenCV its own way), so ``pip check`` would report the deliberate substitutions. This script checks
what matters instead and needs no GPU:

* every requirement edgeseg declares (plus ``--extra`` ones) is installed in a matching version;
  ``opencv-python`` counts as met by any OpenCV wheel of a matching version, or with
  ``--system-opencv`` by an importable system cv2 (JetPack's, which pip does not know about);
  pre-release builds (NVIDIA's ``2.5.0a0+...`` torch) count as matching;
* ``edgeseg.cli`` and ``cv2`` import;
* each ``--require``: ``gstreamer`` (cv2 built with GStreamer), ``tensorrt``, ``torch2trt``,
  ``torch2trt-plugins`` (libtorch2trt_plugins.so loads), ``torch-cuda`` (torch built with CUDA),
  ``torchvision-cuda`` (torchvision's deform_conv2d has a CUDA kernel).

Prints one line per check; exits 1 when any fails. Standard library plus ``packaging``.
"""

from __future__ import annotations

import argparse
import ctypes
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


def _tensorrt() -> str:
    trt = importlib.import_module("tensorrt")
    version = getattr(trt, "__version__", None)
    if version is None:
        raise RuntimeError("`tensorrt` imports but has no __version__ (type stubs only?)")
    return f"tensorrt {version}"


def _torch2trt() -> str:
    importlib.import_module("torch2trt")
    return f"torch2trt {_installed('torch2trt') or '?'}"


def _torch2trt_plugins() -> str:
    ctypes.CDLL("libtorch2trt_plugins.so")
    return "libtorch2trt_plugins.so loads"


def _torch_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        raise RuntimeError(f"torch {torch.__version__} is a CPU-only build")
    return f"torch {torch.__version__} (CUDA {torch.version.cuda})"


def _torchvision_cuda() -> str:
    import torch
    import torchvision  # registers torchvision:: ops

    if not torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::deform_conv2d", "CUDA"):
        raise RuntimeError(f"torchvision {torchvision.__version__} has no CUDA deform_conv2d")
    return f"torchvision {torchvision.__version__} (CUDA ops)"


CHECKS: dict[str, Callable[[], str]] = {
    "gstreamer": _gstreamer,
    "tensorrt": _tensorrt,
    "torch2trt": _torch2trt,
    "torch2trt-plugins": _torch2trt_plugins,
    "torch-cuda": _torch_cuda,
    "torchvision-cuda": _torchvision_cuda,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", action="append", default=[], help="edgeseg extra to include")
    ap.add_argument(
        "--system-opencv", action="store_true", help="opencv-python may be a system cv2"
    )
    ap.add_argument("--require", action="append", default=[], choices=sorted(CHECKS))
    args = ap.parse_args(argv)

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
    for module in ("edgeseg.cli", "cv2"):
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
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

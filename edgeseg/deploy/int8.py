"""Where an INT8 engine's scales come from, decided before anything heavy runs.

Three routes for ``edgeseg export --format engine --precision int8``:

* ``qdq``: the Q/DQ ONNX ``edgeseg calibrate`` writes (``model.int8.onnx``): explicit
  quantization, no calibrator. The route for TensorRT 10.1+ and the only one on 11; 8.6 parses
  Q/DQ too.
* ``cache``: calibrate's ``calibration.cache`` with the FP32 ONNX it was computed on
  (``model.fp32.onnx`` beside it): implicit INT8, an entropy calibrator that reads the cache
  instead of calibrating. The route for TensorRT 8.6 (JetPack 6.0); deprecated from 10.1, gone
  in 11.
* ``images``: a checkpoint exported here and calibrated by TensorRT itself on ``--images``
  (implicit INT8, TensorRT < 11); the cache it writes lands beside the engine.

``--format torch2trt --precision int8`` calibrates inside torch2trt (``int8_mode``) on the same
``--images``. Impossible combinations raise one line naming the command that works.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.deploy.trt_compat import (
    TrtFeatures,
    TrtVersion,
    format_calibration_cache,
    parse_calibration_cache,
    parse_trt_version,
)
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.artifacts.meta import ModelMeta

__all__ = [
    "DEFAULT_CALIBRATION_IMAGES",
    "Int8Source",
    "Torch2trtCalibration",
    "cache_for_tensorrt",
    "calibration_batches",
    "plan_int8",
]

DEFAULT_CALIBRATION_IMAGES = 100
_CALIBRATE = ("`edgeseg calibrate --profile PROFILE --model CKPT --images DIR --out DIR`")


@dataclass(frozen=True)
class Int8Source:
    """How the INT8 scales are obtained (see the module docstring)."""

    route: str  # qdq | cache | images | torch2trt
    onnx: Path | None = None  # build from this ONNX (qdq / cache); None: export the checkpoint
    cache: Path | None = None  # calibration cache to read (cache route)
    images: str | None = None  # calibration frames (images / torch2trt routes)

    @property
    def has_qdq(self) -> bool:
        return self.route == "qdq"

    @property
    def describe(self) -> str:
        return {
            "qdq": f"explicit Q/DQ from {self.onnx}",
            "cache": f"implicit, scales from {self.cache} (for {self.onnx})",
            "images": f"implicit, TensorRT's entropy calibrator on {self.images}",
            "torch2trt": f"torch2trt int8_mode calibrated on {self.images}",
        }[self.route]


def plan_int8(
    fmt: str,
    trt_version: str | TrtVersion,
    *,
    onnx: Path | None = None,
    onnx_has_qdq: bool = False,
    cache: Path | None = None,
    images: str | None = None,
    weights: Path | None = None,
) -> Int8Source:
    """Pick the INT8 route for ``fmt`` (engine | torch2trt) or refuse in one line.

    Args:
        onnx: an ONNX given to export (calibrate's ``model.int8.onnx`` or ``model.fp32.onnx``).
        onnx_has_qdq: whether ``onnx`` carries Q/DQ nodes.
        cache: calibrate's ``calibration.cache``; its FP32 ONNX is ``onnx`` or, if not given,
            ``model.fp32.onnx`` beside the cache.
        images: calibration frames for TensorRT's (or torch2trt's) own calibration.
        weights: a checkpoint (the ``images`` route exports it first).
    """
    v = parse_trt_version(trt_version)
    feats = TrtFeatures(v)
    given = [n for n, x in (("--onnx Q/DQ", onnx if onnx_has_qdq else None),
                            ("--calibration-cache", cache), ("--images", images)) if x]
    if len(given) > 1:
        raise EdgesegError(f"give one INT8 source, not {' and '.join(given)}")
    if fmt == "torch2trt":
        if onnx is not None or cache is not None:
            raise EdgesegError(
                "torch2trt converts a checkpoint and calibrates itself: give a checkpoint --model "
                "and --images; calibrate's Q/DQ ONNX or cache build with `edgeseg export "
                "--format engine --model DIR/model.int8.onnx`"
            )
        if images is None:
            raise EdgesegError("--format torch2trt --precision int8 needs --images DIR "
                               "(calibration frames for torch2trt's int8_mode)")
        if feats.strongly_typed_only:
            raise EdgesegError(
                f"TensorRT {v.short} has no INT8 calibrator, so torch2trt cannot calibrate: run "
                f"{_CALIBRATE} and `edgeseg export --format engine --model DIR/model.int8.onnx`"
            )
        return Int8Source("torch2trt", images=images)
    if fmt != "engine":
        raise EdgesegError(f"an INT8 {fmt} is written by `edgeseg calibrate`, not export")

    if onnx is not None and onnx_has_qdq:
        return Int8Source("qdq", onnx=onnx)
    implicit_hint = (
        f"TensorRT {v.short} builds INT8 only from a Q/DQ ONNX: run {_CALIBRATE} and "
        "`edgeseg export --format engine --precision int8 --model DIR/model.int8.onnx`"
    )
    if cache is not None:
        if feats.strongly_typed_only:
            raise EdgesegError(implicit_hint)
        fp32 = onnx if onnx is not None else cache.parent / "model.fp32.onnx"
        if not fp32.is_file():
            raise EdgesegError(
                f"{cache.name} names the tensors of the FP32 ONNX it was computed on, and "
                f"{fp32} is not there: pass calibrate's model.fp32.onnx as --model"
            )
        return Int8Source("cache", onnx=fp32, cache=cache)
    if images is not None:
        if feats.strongly_typed_only:
            raise EdgesegError(implicit_hint)
        return Int8Source("images", onnx=onnx, images=images)
    if onnx is not None:
        raise EdgesegError(
            f"{onnx.name} has no Q/DQ nodes: for INT8 give --images DIR (calibrate here), "
            "--calibration-cache from `edgeseg calibrate`, or its model.int8.onnx"
        )
    if weights is not None and feats.strongly_typed_only:
        raise EdgesegError(implicit_hint)
    raise EdgesegError(
        "INT8 needs calibration: give --images DIR (TensorRT calibrates on them), or run "
        f"{_CALIBRATE} and export its model.int8.onnx (--onnx) or its calibration.cache "
        "(--calibration-cache)"
    )


def cache_for_tensorrt(
    cache: Path, trt_version: str | TrtVersion, tensor_names: Sequence[str]
) -> tuple[bytes, list[str]]:
    """The cache's bytes for the installed TensorRT, and notes for the report.

    The scales are edgeseg's (onnxruntime calibration, ``amax / 127``), not a TensorRT
    calibrator's, so the header's version only says which release the file was meant for;
    TensorRT ignores a cache whose header names another release, so it is rewritten for the
    installed one. Every tensor the cache names must exist in the ONNX it builds.
    """
    parsed = parse_calibration_cache(cache.read_bytes(), source=str(cache))
    v = parse_trt_version(trt_version)
    names = set(tensor_names)
    unknown = [n for n in parsed.scales if n not in names]
    if unknown:
        raise EdgesegError(
            f"{cache.name} names {len(unknown)} tensor(s) this ONNX lacks (e.g. {unknown[0]!r}): "
            "it belongs to another export; pass calibrate's model.fp32.onnx with --onnx"
        )
    notes = []
    if parsed.version_tag != v.cache_tag:
        notes.append(f"{cache.name} was written for TensorRT {parsed.trt_version}; its scales "
                     f"are used with TensorRT {v}")
    return format_calibration_cache(v, parsed.scales), notes


def _preprocessor(meta: ModelMeta) -> Any:
    """Segmenter.preprocess of ``meta`` (the code inference runs), without a backend."""
    from edgeseg.runtime.base import Segmenter

    class _Preprocess(Segmenter):
        backend = "preprocess"

        def infer(self, batch: np.ndarray) -> np.ndarray:
            raise NotImplementedError

    return _Preprocess(meta)


def calibration_batches(
    images: str | Path, meta: ModelMeta, num: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0,
    size_hw: tuple[int, int] | None = None,
) -> tuple[list[Path], Iterator[np.ndarray]]:
    """(chosen frames, iterator of (1, 3, H, W) float32 batches) for TensorRT calibration.

    Frames are found and sampled as `edgeseg calibrate` does (folder, glob, manifest or
    Cityscapes root; ``seed``); the paths are returned first so bad input fails before a build.
    """
    from edgeseg.deploy.quantize.images import find_images, read_bgr, sample_images

    found = find_images(images)
    chosen, _ = sample_images(found, num, holdout=0, seed=seed)
    pre = _preprocessor(meta)
    hw = size_hw or tuple(meta.input_hw)

    def gen() -> Iterator[np.ndarray]:
        for p in chosen:
            yield pre.preprocess(read_bgr(p), hw)

    return chosen, gen()


class Torch2trtCalibration:
    """torch2trt's ``int8_calib_dataset``: ``dataset[i]`` is the list of model inputs."""

    def __init__(self, paths: Sequence[Path], meta: ModelMeta, size_hw: tuple[int, int],
                 device: str = "cuda") -> None:
        self.paths, self.size_hw, self.device = list(paths), size_hw, device
        self._pre = _preprocessor(meta)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> list[Any]:
        import torch

        from edgeseg.deploy.quantize.images import read_bgr

        x = self._pre.preprocess(read_bgr(self.paths[i]), self.size_hw)
        return [torch.from_numpy(x[0]).to(self.device)]  # torch2trt adds the batch dimension

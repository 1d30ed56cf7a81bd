"""INT8 post-training quantization: calibration images -> a Q/DQ ONNX and a TensorRT
calibration cache, plus what INT8 costs in accuracy and gains in speed.

One calibration pass over the images feeds both outputs:

* ``model.int8.onnx``: QuantizeLinear/DequantizeLinear (Q/DQ) nodes written by onnxruntime's
  ``quantize_static``. It runs in onnxruntime on the CPU, and TensorRT 10+ builds it with
  explicit quantization (TensorRT 11 has no other INT8 path). Its ``metadata_props`` carry the
  model's :class:`~edgeseg.runtime.base.ModelMeta` with ``precision="int8"``, so later commands
  need no flags.
* ``calibration.cache``: per-tensor scales (``amax / 127``) of every float activation, in
  TensorRT's EntropyCalibration2 text format (:func:`edgeseg.deploy.trt_compat.
  write_calibration_cache`), for the implicit INT8 builds of TensorRT < 10.1 and the
  ``IInt8EntropyCalibrator2`` of :mod:`edgeseg.deploy.tensorrt`, which reads it instead of
  calibrating. It names ONNX tensors, so it belongs to the FP32 ONNX it was computed on
  (``model.fp32.onnx`` when calibrating a checkpoint). It is always written: it is just a file.

Quantization settings follow the profile's backend (measured in ``docs/benchmarks.md``):

* ``onnxruntime`` (CPU): uint8 asymmetric activations, int8 symmetric per-channel weights
  (U8S8, the VNNI/AVX2 integer GEMM path; int8 activations run *slower* than FP32 on x86
  onnxruntime). ``reduce_range`` (7-bit weights) only on x86 CPUs without VNNI, where 8-bit
  products can saturate; int8 symmetric activations on ARM.
* ``tensorrt``: int8 symmetric activations and per-channel weights: TensorRT accepts only
  zero-point-0 INT8 Q/DQ.

Kept in float by default (``--exclude``): ``DeformConv`` (neither onnxruntime nor TensorRT's
plugin has an INT8 kernel), ``GridSample`` of the portable deformable conv *with the
arithmetic that computes its sampling grid* (pixel coordinates up to the image width do not
survive 8 bits), and ``logits``, a pseudo op type for the classifier conv and the upsampling
to the input size after it: rounding the logits to 8 bits (one scale for all classes) flips
the argmax wherever two classes are close, and that head is a small part of the cost
(measured in ``docs/benchmarks.md``). Excluded nodes' outputs are also left out of the
TensorRT cache, so TensorRT cannot run them in INT8 either.

Preprocessing is :meth:`Segmenter.preprocess` of the FP32 model, the code inference runs, on
frames read with ``cv2.imread`` (BGR), as the camera pipeline delivers them.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import logging
import os
import platform
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runtime.base import ModelMeta, Segmenter

__all__ = [
    "CACHE_NAME",
    "DEFAULT_EXCLUDE",
    "FP32_NAME",
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "METHODS",
    "QDQ_NAME",
    "RECOMMENDED_IMAGES",
    "REPORT_NAME",
    "CalibrationReader",
    "ImageSet",
    "QuantSettings",
    "cache_scales",
    "calibrate",
    "check_fp32_onnx",
    "check_image_sizes",
    "compare_models",
    "compute_ranges",
    "excluded_nodes",
    "find_images",
    "find_label",
    "image_size",
    "parse_exclude",
    "quantize_qdq",
    "read_bgr",
    "read_manifest",
    "sample_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MANIFEST_NAME = "manifest.txt"
RECOMMENDED_IMAGES = 300
METHODS = ("entropy", "minmax", "percentile")
LOGITS = "logits"  # pseudo op type: the classifier conv and what follows it to the output
DEFAULT_EXCLUDE = ("DeformConv", "GridSample", LOGITS)
DEFAULT_HOLDOUT = 50
DEFAULT_RUNS = 10
# TensorRT releases that read an implicit-INT8 calibration cache: 8.6 (JetPack 6.0) needs it;
# 10.1+ deprecate it in favour of Q/DQ. The header's version when no TensorRT is installed.
DEFAULT_CACHE_TRT_VERSION = "8.6.2"
MIN_AMAX = 1e-5  # floor for all-zero tensors (a zero scale is not a usable dynamic range)

QDQ_NAME = "model.int8.onnx"
FP32_NAME = "model.fp32.onnx"
CACHE_NAME = "calibration.cache"
REPORT_NAME = "calibration.json"

_CHUNK = 2  # images per calibrator pass: every activation of every image is held in memory

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Calibration images


@dataclass
class ImageSet:
    """The images found at ``--images``.

    ``pool`` is where calibration images are drawn from. ``eval_pool`` is where held-out
    images are drawn from when the source has a separate split for it (a Cityscapes root:
    calibrate on ``train``, compare on ``val``); ``None`` means held-out images come from
    ``pool`` too, disjoint from the calibration images. ``labels`` maps an image to its
    label file and whether that holds train ids (else Cityscapes label ids).
    """

    source: str
    kind: str  # folder | glob | manifest | cityscapes
    root: Path  # what relative paths (reports, --labels lookups) are relative to
    pool: list[Path]
    eval_pool: list[Path] | None = None
    labels: dict[Path, tuple[Path, bool]] = field(default_factory=dict)
    splits: tuple[str, str] | None = None  # cityscapes: (calibration split, held-out split)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(source: str | Path) -> ImageSet:
    """Resolve ``--images``: a folder (searched recursively), a quoted glob, a manifest file,
    a folder holding ``manifest.txt``, or a Cityscapes root (it has ``leftImg8bit/``)."""
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists() and any(c in text for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True))
        images = [p for p in found if p.is_file() and _is_image(p)]
        if not images:
            raise EdgesegError(f"no images match {text} (looked for {_suffixes()})")
        root = Path(os.path.commonpath([str(p.parent) for p in images]))
        return ImageSet(text, "glob", root, images)
    if not path.exists():
        raise EdgesegError(f"calibration images not found: {path}")
    if path.is_file():
        if _is_image(path):
            raise EdgesegError(
                f"{path} is a single image: give a folder, a quoted glob or a manifest of "
                "a few hundred images"
            )
        return ImageSet(text, "manifest", path.parent, read_manifest(path))
    if (path / "leftImg8bit").is_dir():
        return _cityscapes_images(path)
    if (path / MANIFEST_NAME).is_file():
        return ImageSet(text, "manifest", path, read_manifest(path / MANIFEST_NAME))
    images = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p))
    if not images:
        raise EdgesegError(f"no images in {path} (looked for {_suffixes()}, recursively)")
    return ImageSet(text, "folder", path, images)


def _suffixes() -> str:
    return ", ".join(f"*{s}" for s in IMAGE_SUFFIXES[:4]) + " ..."


def read_manifest(path: str | Path) -> list[Path]:
    """Image paths of a manifest: one per line, relative to the manifest's folder (absolute
    paths allowed); blank lines and ``#`` comments (whole-line, or after whitespace) ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesegError(f"cannot read manifest {path}: {type(e).__name__}") from None
    images: list[Path] = []
    seen: set[Path] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for sep in (" #", "\t#"):
            if sep in line:
                line = line.split(sep, 1)[0].rstrip()
        p = Path(line).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if not _is_image(p):
            raise EdgesegError(f"{path}:{lineno}: {line!r} is not an image ({_suffixes()})")
        if not p.is_file():
            raise EdgesegError(f"{path}:{lineno}: image not found: {p}")
        if p in seen:
            raise EdgesegError(f"{path}:{lineno}: {line} is listed twice")
        seen.add(p)
        images.append(p)
    if not images:
        raise EdgesegError(f"manifest {path} lists no images")
    return images


def _cityscapes_images(root: Path) -> ImageSet:
    splits = [s for s in ("train", "val", "test") if (root / "leftImg8bit" / s).is_dir()]

    def images_of(split: str) -> list[Path]:
        return sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))

    splits = [s for s in splits if images_of(s)]
    if not splits:
        raise EdgesegError(f"no leftImg8bit/{{train,val,test}}/*/*_leftImg8bit.png under {root}")
    calib = splits[0]  # train when present: calibration data should not be the test data
    held = "val" if "val" in splits and calib != "val" else calib
    labels: dict[Path, tuple[Path, bool]] = {}
    if held != "test":
        from edgeseg.data.cityscapes import CityscapesDataset

        with contextlib.suppress(EdgesegError):  # images without gtFine: no mIoU, still agreement
            for img, label, is_train_ids in CityscapesDataset(root, held).samples:
                if label is not None:
                    labels[img] = (label, is_train_ids)
    return ImageSet(
        str(root), "cityscapes", root, images_of(calib),
        eval_pool=images_of(held) if held != calib else None,
        labels=labels, splits=(calib, held),
    )


def sample_images(
    images: ImageSet, num: int, holdout: int = DEFAULT_HOLDOUT, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """(calibration images, held-out images), disjoint, drawn reproducibly with ``seed``.

    With one pool the held-out images are drawn first, so changing ``num`` does not change
    them. A pool too small for both keeps at least one held-out image (a fifth of the pool, up
    to ``holdout``) and gives the rest to calibration.
    """
    if num < 1:
        raise EdgesegError(f"--num must be at least 1, got {num}")
    if holdout < 0:
        raise EdgesegError(f"--holdout must be 0 or more, got {holdout}")
    rng_cal = np.random.default_rng([seed, 0])
    rng_eval = np.random.default_rng([seed, 1])
    pool = images.pool
    if images.eval_pool is not None:
        cal_idx = rng_cal.permutation(len(pool))[:num]
        ev_idx = rng_eval.permutation(len(images.eval_pool))[:holdout]
        return sorted(pool[i] for i in cal_idx), sorted(images.eval_pool[i] for i in ev_idx)
    n = len(pool)
    if holdout and n < 2:
        raise EdgesegError(
            f"{images.source} has {n} image: need at least 2 (calibration images and held-out "
            "images to compare FP32 with INT8 on), or --holdout 0"
        )
    if holdout:
        keep = max(1, min(holdout, n // 5))  # held-out images a large --num cannot take
        n_cal = min(num, n - keep)
        n_hold = min(holdout, n - n_cal)
    else:
        n_cal, n_hold = min(num, n), 0
    perm = rng_eval.permutation(n)
    held = sorted(pool[i] for i in perm[:n_hold])
    cal = sorted(pool[i] for i in perm[n_hold : n_hold + n_cal])
    return cal, held


def find_label(image: Path, labels_dir: Path, root: Path | None = None) -> tuple[Path, bool] | None:
    """The label of ``image`` under ``labels_dir``: ``(path, holds train ids)`` or None.

    Looked for, first match wins, at the image's path relative to ``root`` and flat in
    ``labels_dir``: ``<stem>.png`` (train ids, 255 = ignore), and for Cityscapes names
    (``*_leftImg8bit``) ``*_gtFine_labelTrainIds.png`` or ``*_gtFine_labelIds.png``.
    """
    subdirs = [labels_dir]
    if root is not None:
        with contextlib.suppress(ValueError):
            parent = image.parent.relative_to(root)
            if str(parent) != ".":
                subdirs.insert(0, labels_dir / parent)
    stem = image.stem
    names: list[tuple[str, bool]] = [(f"{stem}.png", True)]
    if stem.endswith("_leftImg8bit"):
        base = stem[: -len("_leftImg8bit")]
        names += [(f"{base}_gtFine_labelTrainIds.png", True), (f"{base}_gtFine_labelIds.png", False)]
    for d in subdirs:
        for name, train_ids in names:
            if (d / name).is_file():
                return d / name, train_ids
    return None


def _load_label(path: Path, is_train_ids: bool, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise EdgesegError(f"cannot read label {path}")
    if raw.shape != shape:
        raise EdgesegError(
            f"label {path} is {raw.shape[1]}x{raw.shape[0]}, its image {shape[1]}x{shape[0]}"
        )
    if is_train_ids:
        return raw
    from edgeseg.data.cityscapes import ID_TO_TRAIN_ID

    return ID_TO_TRAIN_ID[raw]


def read_bgr(path: Path) -> np.ndarray:
    """An image as OpenCV BGR uint8 (H, W, 3), as the camera and image-folder sources give."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EdgesegError(f"cannot read image {path} (unreadable or not an image)")
    return bgr


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG or JPEG header; other formats are decoded."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            if head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
                if size:
                    return size
    except OSError as e:
        raise EdgesegError(f"cannot read image {path} ({e.strerror or type(e).__name__})") from None
    bgr = read_bgr(path)
    return int(bgr.shape[1]), int(bgr.shape[0])


def _jpeg_size(f: Any) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        f.seek(length - 2, 1)


def check_image_sizes(paths: Sequence[Path], images: ImageSet | None = None) -> tuple[int, int]:
    """The common (width, height) of ``paths``; EdgesegError naming two files that differ.

    Preprocessing resizes every frame to the model's input, so mixed sizes would run, but they
    mean frames from different cameras or modes whose resize distorts them differently:
    statistics that do not describe the deployment camera.
    """
    first: tuple[Path, tuple[int, int]] | None = None
    for p in paths:
        size = image_size(p)
        if first is None:
            first = (p, size)
        elif size != first[1]:
            name = images.rel if images else str
            (w0, h0), (w1, h1) = first[1], size
            raise EdgesegError(
                f"images of mixed sizes: {name(first[0])} is {w0}x{h0}, {name(p)} is {w1}x{h1}; "
                "calibrate with frames from one camera mode (resize or split the set)"
            )
    if first is None:
        raise EdgesegError("no images to check")
    return first[1]


class CalibrationReader:
    """onnxruntime ``CalibrationDataReader``: one preprocessed frame per ``get_next()``.

    Each image is read with :func:`read_bgr` and goes through ``segmenter.preprocess``, the
    preprocessing inference uses, so calibration sees exactly the tensors the model will.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        segmenter: Segmenter,
        input_name: str,
        on_image: Callable[[], None] | None = None,
    ) -> None:
        self.paths = list(paths)
        self.segmenter = segmenter
        self.input_name = input_name
        self.on_image = on_image
        self._next = 0

    def __len__(self) -> int:
        return len(self.paths)

    def tensor(self, index: int) -> np.ndarray:
        return self.segmenter.preprocess(read_bgr(self.paths[index]))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.paths):
            return None
        x = self.tensor(self._next)
        self._next += 1
        if self.on_image:
            self.on_image()
        return {self.input_name: x}

    def rewind(self) -> None:
        self._next = 0

    def chunks(self, size: int) -> Iterator[CalibrationReader]:
        for i in range(0, len(self.paths), size):
            yield CalibrationReader(self.paths[i : i + size], self.segmenter, self.input_name,
                                    self.on_image)


# ---------------------------------------------------------------------------------------------
# The FP32 model


def check_fp32_onnx(path: str | Path) -> tuple[Any, ModelMeta]:
    """Load an FP32 ONNX to calibrate; return (ModelProto, ModelMeta).

    Refuses (one line each) a missing or unreadable file, one without edgeseg metadata, one
    already quantized, and one whose input is not a single float32 1x3xHxW tensor (H and W may
    be symbolic; static ones must match the metadata's input size).
    """
    import onnx

    from edgeseg.deploy.artifact import meta_from_props

    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"ONNX file not found: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise EdgesegError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    meta = meta_from_props({e.key: e.value for e in model.metadata_props}, source=str(p))
    ops = {n.op_type for n in model.graph.node}
    if meta.precision == "int8" or ops & {"QuantizeLinear", "DequantizeLinear"}:
        raise EdgesegError(f"{p.name} is already quantized (INT8): calibrate the FP32 ONNX")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    want = "one float32 input of shape 1x3xHxW"
    if len(inputs) != 1:
        raise EdgesegError(f"{p.name} has {len(inputs)} inputs; calibrate expects {want}")
    tt = inputs[0].type.tensor_type
    dims: list[int | str] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                             for d in tt.shape.dim]
    shown = "x".join(str(d) for d in dims) or "scalar"
    if tt.elem_type != onnx.TensorProto.FLOAT:
        dtype = onnx.TensorProto.DataType.Name(tt.elem_type).lower()
        raise EdgesegError(f"{p.name}: input '{inputs[0].name}' is {dtype} {shown}; calibrate "
                           f"expects {want} (an FP32 export)")
    batch_ok = len(dims) == 4 and (dims[0] == 1 or isinstance(dims[0], str))
    if not batch_ok or dims[1] != 3:
        raise EdgesegError(f"{p.name}: input '{inputs[0].name}' has shape {shown}; calibrate "
                           f"expects {want}")
    static = isinstance(dims[2], int) and isinstance(dims[3], int)
    if static and (dims[2], dims[3]) != tuple(meta.input_hw):
        raise EdgesegError(
            f"{p.name}: input is {dims[2]}x{dims[3]} but its metadata says input_hw "
            f"{meta.input_hw[0]}x{meta.input_hw[1]}: re-export it"
        )
    return model, meta


def _ensure_node_names(model: Any) -> None:
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize; :meth:`for_target` picks the measured defaults for a backend."""

    target: str  # onnxruntime | tensorrt
    method: str = "entropy"
    activation_type: str = "uint8"  # uint8 (asymmetric) | int8 (symmetric)
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE

    @property
    def symmetric_activations(self) -> bool:
        return self.activation_type == "int8"

    @classmethod
    def for_target(
        cls, target: str, method: str = "entropy", exclude: Sequence[str] = DEFAULT_EXCLUDE,
        machine: str | None = None, cpu_flags: set[str] | None = None,
    ) -> QuantSettings:
        if method not in METHODS:
            raise EdgesegError(f"unknown calibration method {method!r}: choose one of "
                               f"{', '.join(METHODS)}")
        exclude = tuple(exclude)
        if target == "tensorrt":
            return cls("tensorrt", method, "int8", "int8", True, False, exclude)
        machine = (machine or platform.machine()).lower()
        if machine in ("aarch64", "arm64") or machine.startswith("arm"):
            return cls("onnxruntime", method, "int8", "int8", True, False, exclude)
        flags = cpu_flags if cpu_flags is not None else _cpu_flags()
        vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
        return cls("onnxruntime", method, "uint8", "int8", True, not vnni, exclude)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def parse_exclude(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"DeformConv,GridSample,logits"`` -> canonical ONNX op types (and ``logits``);
    ``none``/empty -> ()."""
    if text is None:
        return DEFAULT_EXCLUDE
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip() for s in items if s.strip()]
    if [n.lower() for n in names] in (["none"], []):
        return ()
    import onnx.defs

    known = {s.name.lower(): s.name for s in onnx.defs.get_all_schemas_with_history()}
    out: list[str] = []
    known[LOGITS] = LOGITS
    for n in names:
        canon = known.get(n.lower())
        if canon is None:
            raise EdgesegError(f"--exclude: {n!r} is not an ONNX op type (e.g. DeformConv, "
                               f"GridSample, Resize, Sigmoid) or {LOGITS}")
        if canon not in out:
            out.append(canon)
    return tuple(out)


def excluded_nodes(model: Any, op_types: Iterable[str]) -> list[str]:
    """Names of the nodes to keep in float: every node of an excluded op type; for
    ``GridSample`` also the nodes computing its sampling grid (back to the nearest Conv); for
    ``logits`` the nodes from each graph output back to and including the first Conv (the
    classifier, the upsampling to the input size, an argmax)."""
    types = set(op_types)
    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    seen: set[str] = set()

    def add(node: Any) -> None:
        if node.name not in seen:
            seen.add(node.name)
            names.append(node.name)

    if LOGITS in types:
        for out in model.graph.output:
            node = producer.get(out.name)
            while node is not None:
                add(node)
                if node.op_type == "Conv" or not node.input:
                    break
                node = producer.get(node.input[0])

    for node in model.graph.node:
        if node.op_type not in types:
            continue
        add(node)
        if node.op_type == "GridSample" and len(node.input) > 1:
            stack = [node.input[1]]
            while stack:
                src = producer.get(stack.pop())
                if src is None or src.op_type == "Conv" or src.name in seen:
                    continue
                add(src)
                stack.extend(src.input)
    return names


# ---------------------------------------------------------------------------------------------
# Calibration and quantization


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization prints to stdout and logs warnings: keep stdout for --json."""
    buf = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        logging.disable(previous)


def _ort_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[method]


def compute_ranges(
    model_path: Path, reader: CalibrationReader, settings: QuantSettings, workdir: Path,
) -> Any:
    """Activation ranges (onnxruntime ``TensorsData``) of every float tensor of the model.

    Images go through the calibrator a few at a time: onnxruntime holds every intermediate
    tensor of a pass in memory (hundreds of MB per 512x1024 frame).
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    options = {"symmetric": settings.symmetric_activations}
    with _quiet():
        calibrator = create_calibrator(
            model_path, None, augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=_ort_method(settings.method), extra_options=options,
        )
        try:
            for chunk in reader.chunks(_CHUNK):
                calibrator.collect_data(chunk)
            ranges = calibrator.compute_data()
        finally:
            del calibrator
    return ranges


def quantize_qdq(
    model_path: Path, out: Path, ranges: Any, settings: QuantSettings, nodes_to_exclude: list[str],
    workdir: Path,
) -> None:
    """Write the Q/DQ ONNX of ``model_path`` from precomputed ``ranges``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    cache = workdir / "ranges.json"
    save_tensors_data(ranges, cache)
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with _quiet():
        quantize_static(
            str(model_path), str(out), None,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=qtype[settings.activation_type],
            weight_type=qtype[settings.weight_type],
            nodes_to_exclude=list(nodes_to_exclude),
            calibrate_method=_ort_method(settings.method),
            calibration_cache_path=str(cache),
            extra_options={
                "ActivationSymmetric": settings.symmetric_activations,
                "WeightSymmetric": True,
            },
        )


def cache_scales(model: Any, ranges: Any, skip: Iterable[str] = ()) -> dict[str, float]:
    """TensorRT per-tensor scales ``max(|min|, |max|) / 127`` of the calibrated activations,
    in graph order (input, then node outputs), leaving out the tensors named in ``skip``."""
    skip = set(skip)
    order = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    scales: dict[str, float] = {}
    for name in order:
        if name in skip or name not in ranges.data or name in scales:
            continue
        lo, hi = (np.asarray(v, np.float64) for v in ranges.data[name].range_value)
        amax = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
        if np.isfinite(amax):
            scales[name] = max(amax, MIN_AMAX) / 127.0
    return scales


def _trt_version() -> str | None:
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        return None
    version = getattr(tensorrt, "__version__", None)  # the type stubs import but have none
    return str(version) if version else None


# ---------------------------------------------------------------------------------------------
# FP32 vs INT8


def compare_models(
    fp32: Segmenter,
    int8: Segmenter,
    held_out: Sequence[Path],
    labels: dict[Path, tuple[Path, bool]] | None = None,
    *,
    runs: int = DEFAULT_RUNS,
    on_image: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Agreement of the argmax, mIoU of both (where labels exist) and latency of both.

    Agreement counts pixels at the network's output size; mIoU uses each backend's own
    postprocess (labels resized to the label's size), as `edgeseg eval` does. Latency is the
    median of ``runs`` inferences of each model on the same tensor, alternated so that a noisy
    machine slows both alike, after two warm-up runs each.
    """
    from edgeseg.train.evaluate import ConfusionMatrix

    classes = list(fp32.meta.classes)
    cm32, cm8 = ConfusionMatrix(len(classes)), ConfusionMatrix(len(classes))
    same = total = 0
    per_image: list[float] = []
    labelled = 0
    first: np.ndarray | None = None
    for path in held_out:
        bgr = read_bgr(path)
        x = fp32.preprocess(bgr)
        first = x if first is None else first
        out32, out8 = fp32.infer(x), int8.infer(x)
        lab32 = out32 if out32.ndim == 3 else out32.argmax(1)
        lab8 = out8 if out8.ndim == 3 else out8.argmax(1)
        eq = int((lab32 == lab8).sum())
        same, total = same + eq, total + lab32.size
        per_image.append(eq / lab32.size)
        if labels and path in labels:
            gt = _load_label(*labels[path], shape=bgr.shape[:2])
            cm32.update(fp32.postprocess(out32, gt.shape), gt)
            cm8.update(int8.postprocess(out8, gt.shape), gt)
            labelled += 1
        if on_image:
            on_image()
    report: dict[str, Any] = {
        "agreement": same / total if total else None,
        "agreement_min_image": min(per_image) if per_image else None,
        "held_out_images": len(held_out),
        "labelled_images": labelled,
        "miou_fp32": None, "miou_int8": None, "miou_delta": None, "iou_delta_per_class": None,
        "iou_per_class_fp32": None, "iou_per_class_int8": None,
    }
    if labelled:
        s32, s8 = cm32.summary(classes), cm8.summary(classes)
        report.update(
            miou_fp32=s32["miou"], miou_int8=s8["miou"], miou_delta=s8["miou"] - s32["miou"],
            iou_per_class_fp32=s32["iou_per_class"], iou_per_class_int8=s8["iou_per_class"],
            iou_delta_per_class={
                c: (None if s32["iou_per_class"][c] is None or s8["iou_per_class"][c] is None
                    else s8["iou_per_class"][c] - s32["iou_per_class"][c])
                for c in classes
            },
        )
    if first is None:
        x = np.zeros((1, 3, *fp32.meta.input_hw), np.float32)
    else:
        x = first
    report.update(_latency(fp32, int8, x, runs) if runs > 0 else
                  {"latency_ms_fp32": None, "latency_ms_int8": None, "speedup": None})
    return report


def _latency(a: Segmenter, b: Segmenter, x: np.ndarray, runs: int) -> dict[str, Any]:
    for _ in range(2):
        a.infer(x)
        b.infer(x)
    ta: list[float] = []
    tb: list[float] = []
    for i in range(runs):
        for seg, times in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            seg.infer(x)
            times.append(time.perf_counter() - t0)
    ma, mb = float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3
    return {"latency_ms_fp32": ma, "latency_ms_int8": mb, "speedup": ma / mb if mb else None,
            "latency_runs": runs}


# ---------------------------------------------------------------------------------------------
# The whole command


def calibrate(
    *,
    images: str | Path,
    out: str | Path,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    profile: str = "auto",
    num: int | None = None,
    method: str = "entropy",
    labels: str | Path | None = None,
    exclude: str | Sequence[str] | None = None,
    seed: int = 0,
    holdout: int = DEFAULT_HOLDOUT,
    runs: int = DEFAULT_RUNS,
    height: int | None = None,
    width: int | None = None,
    dcn: str = "auto",
    trt_version: str | None = None,
    threads: int | None = None,
    log: Log | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> dict[str, Any]:
    """Library entry of `edgeseg calibrate`: calibrate, quantize, compare, write ``out/``.

    Args:
        images: folder, quoted glob, manifest file, or Cityscapes root.
        out: output folder; gets ``model.int8.onnx``, ``calibration.cache``,
            ``calibration.json`` (this report plus the image lists) and, from a checkpoint,
            ``model.fp32.onnx``. Written in a temporary folder and moved in at the end.
        weights / onnx: exactly one: a checkpoint (exported here at the profile's size) or an
            FP32 ONNX written by `edgeseg export`.
        profile: profile name or path: its backend picks the quantization settings, its
            ``calibration.images`` the default ``num``, its size the export size.
        num: calibration images (default: the profile's).
        method: ``entropy``, ``minmax`` or ``percentile``.
        labels: label folder for the held-out images (train-id PNGs; see :func:`find_label`).
        exclude: op types kept in float (default :data:`DEFAULT_EXCLUDE`; ``none``: nothing).
        seed: sampling seed. holdout: held-out images for the report (0: no comparison).
        runs: latency runs per model (0: no latency).
        height, width: export size of a checkpoint (default: the profile's).
        dcn: deformable conv for a checkpoint export: ``native`` (DeformConv), ``portable``
            (GridSample) or ``auto`` (portable for TensorRT, which before 10.1 cannot import
            DeformConv; native for onnxruntime, as fast there and simpler).
        trt_version: TensorRT version written in the cache header (default: the installed
            TensorRT, else 8.6.2, the JetPack 6.0 release that still needs a cache).
        threads: onnxruntime threads for calibration and comparison (default: physical cores).
        log: one-line messages (warnings, stages). progress: ``progress(stage, total)``
            returns a callable advanced once per image.
    """
    from edgeseg.profiles import apply_overrides, load_profile

    say = log or (lambda _m: None)
    tick = progress or (lambda _stage, _total: (lambda: None))
    warnings: list[str] = []

    def warn(msg: str) -> None:  # printed once the inputs are known to be good
        warnings.append(msg)

    # 1. Everything that can be checked cheaply, before any heavy work.
    if (weights is None) == (onnx is None):
        raise EdgesegError("give exactly one of --weights or --onnx")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgesegError(f"--out must be a folder, {out} is a file")
    if weights is not None and not Path(weights).is_file():
        raise EdgesegError(f"checkpoint not found: {weights}")
    if onnx is not None and (height or width):
        raise EdgesegError("--height/--width set the export size of --weights; an ONNX keeps "
                           "its own")
    prof = apply_overrides(load_profile(profile), height=height, width=width)
    target = "tensorrt" if prof.deploy.backend == "tensorrt" else "onnxruntime"
    settings = QuantSettings.for_target(target, method, parse_exclude(exclude))
    if dcn not in ("auto", "native", "portable"):
        raise EdgesegError(f"--dcn: expected auto, native or portable, got {dcn!r}")
    if runs < 0:
        raise EdgesegError(f"--runs must be 0 or more, got {runs}")
    n_wanted = prof.calibration.images if num is None else num
    image_set = find_images(images)
    cal, held = sample_images(image_set, n_wanted, holdout, seed)
    check_image_sizes(sorted(cal + held), image_set)
    label_map = dict(image_set.labels)
    if labels is not None:
        labels_dir = Path(labels)
        if not labels_dir.is_dir():
            raise EdgesegError(f"--labels folder not found: {labels_dir}")
        label_map = {}
        for p in held:
            found = find_label(p, labels_dir, image_set.root)
            if found is None:
                raise EdgesegError(
                    f"no label for held-out image {image_set.rel(p)} in {labels_dir} "
                    f"(looked for {p.stem}.png or Cityscapes *_gtFine_label(Train)Ids.png)"
                )
            label_map[p] = found
    if len(cal) < RECOMMENDED_IMAGES:
        warn(f"{len(cal)} calibration images: use about {RECOMMENDED_IMAGES} or more "
             "representative frames from the target camera (calibration/README.md)")
    if len(cal) < n_wanted:
        warn(f"asked for {n_wanted} calibration images, {image_set.source} had {len(cal)} "
             f"left after {len(held)} held-out images")
    fp32_meta_onnx = None
    if onnx is not None:
        fp32_meta_onnx = check_fp32_onnx(onnx)
        if dcn != "auto":
            warn("--dcn applies to --weights only; the ONNX keeps its deformable conv")
    for msg in warnings:
        say(f"warning: {msg}")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the output folder's mode
    work = Path(tempfile.mkdtemp(prefix="edgeseg-calibrate-"))
    try:
        report = _run(
            settings=settings, prof=prof, image_set=image_set, cal=cal, held=held,
            label_map=label_map, weights=weights, onnx=onnx, onnx_checked=fp32_meta_onnx,
            dcn=dcn, trt_version=trt_version, threads=threads, runs=runs, seed=seed,
            staging=staging, work=work, out=out, say=say, tick=tick, warnings=warnings,
        )
        _commit(staging, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _run(
    *, settings: QuantSettings, prof: Any, image_set: ImageSet, cal: list[Path],
    held: list[Path], label_map: dict[Path, tuple[Path, bool]], weights: Any, onnx: Any,
    onnx_checked: tuple[Any, ModelMeta] | None, dcn: str, trt_version: str | None,
    threads: int | None, runs: int, seed: int, staging: Path, work: Path, out: Path, say: Log,
    tick: Callable[[str, int], Callable[[], None]], warnings: list[str],
) -> dict[str, Any]:
    import onnx as onnx_lib

    from edgeseg.deploy.artifact import write_onnx_metadata
    from edgeseg.deploy.trt_compat import write_calibration_cache
    from edgeseg.runtime import open_segmenter

    t_start = time.perf_counter()
    outputs: dict[str, str] = {}
    # 2. The FP32 ONNX: exported from the checkpoint, or the given file.
    if weights is not None:
        from edgeseg.deploy.onnx import export_onnx
        from edgeseg.train.checkpoint import load_model

        impl = dcn if dcn != "auto" else ("portable" if settings.target == "tensorrt" else "native")
        model, meta = load_model(weights)
        fp32_path = staging / FP32_NAME
        say(f"exporting {meta.variant} at {prof.deploy.height}x{prof.deploy.width} ({impl} DCN)")
        export_onnx(model, meta, fp32_path, height=prof.deploy.height, width=prof.deploy.width,
                    dcn=impl, threads=threads)
        del model
        proto, meta = check_fp32_onnx(fp32_path)
        outputs["fp32_onnx"] = str(out / FP32_NAME)
        fp32_ref = fp32_path
    else:
        assert onnx_checked is not None
        proto, meta = onnx_checked
        fp32_ref = Path(onnx)
        outputs["fp32_onnx"] = str(fp32_ref)
    _ensure_node_names(proto)
    model_path = work / "model.onnx"
    onnx_lib.save(proto, str(model_path))
    fp32 = open_segmenter(model_path, threads=threads)
    input_name = fp32.input_name  # type: ignore[attr-defined]

    # 3. One calibration pass: ranges for the Q/DQ model and for the TensorRT cache.
    say(f"calibrating on {len(cal)} images ({settings.method})")
    reader = CalibrationReader(cal, fp32, input_name, on_image=tick("calibrate", len(cal)))
    t0 = time.perf_counter()
    ranges = compute_ranges(model_path, reader, settings, work)
    calib_s = time.perf_counter() - t0

    # 4. The Q/DQ ONNX, with the metadata of the FP32 one (precision int8).
    float_nodes = excluded_nodes(proto, settings.exclude)
    present = {n.op_type for n in proto.graph.node}
    missing = [t for t in settings.exclude if t not in present and t != LOGITS]
    if settings.target == "tensorrt" and "DeformConv" in present:
        msg = ("this graph has ONNX DeformConv, which TensorRT's parser imports only from 10.1: "
               "the calibration cache (for TensorRT 8.6) needs a portable export (--dcn portable)")
        warnings.append(msg)
        say(f"warning: {msg}")
    say("writing the Q/DQ model")
    qdq_raw = work / "qdq.onnx"
    quantize_qdq(model_path, qdq_raw, ranges, settings, float_nodes, work)
    qdq = onnx_lib.load(str(qdq_raw))
    int8_meta = type(meta).from_dict({**meta.to_dict(), "precision": "int8"})
    quant_info = {
        "method": settings.method, "activations": settings.activation_type,
        "weights": settings.weight_type, "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range, "target": settings.target,
        "excluded_ops": list(settings.exclude), "calibration_images": len(cal), "seed": seed,
    }
    int8_meta.extra.update(quantization=quant_info, fp32_source=Path(fp32_ref).name)
    write_onnx_metadata(qdq, int8_meta)
    qdq.producer_name = "edgeseg"
    qdq_path = staging / QDQ_NAME
    onnx_lib.save(qdq, str(qdq_path))
    outputs["qdq_onnx"] = str(out / QDQ_NAME)
    op_counts: dict[str, int] = {}
    for n in qdq.graph.node:
        op_counts[n.op_type] = op_counts.get(n.op_type, 0) + 1

    # 5. The TensorRT calibration cache (always: it is just a file).
    skip = {o for n in proto.graph.node if n.name in set(float_nodes) for o in n.output}
    version = trt_version or _trt_version() or DEFAULT_CACHE_TRT_VERSION
    scales = cache_scales(proto, ranges, skip)
    write_calibration_cache(staging / CACHE_NAME, version, scales)
    outputs["calibration_cache"] = str(out / CACHE_NAME)

    # 6. FP32 vs INT8 on the held-out images.
    int8 = open_segmenter(qdq_path, threads=threads)
    if held:
        say(f"comparing FP32 and INT8 on {len(held)} held-out images")
    cmp = compare_models(fp32, int8, held, label_map, runs=runs,
                         on_image=tick("compare", len(held)) if held else None)

    outputs["report"] = str(out / REPORT_NAME)
    report: dict[str, Any] = {
        **{k: cmp[k] for k in ("agreement", "miou_fp32", "miou_int8", "iou_delta_per_class",
                               "latency_ms_fp32", "latency_ms_int8", "speedup")},
        "calibration_images": len(cal),
        "method": settings.method,
        "excluded_ops": list(settings.exclude),
        "outputs": outputs,
        "agreement_min_image": cmp["agreement_min_image"],
        "miou_delta": cmp["miou_delta"],
        "iou_per_class_fp32": cmp["iou_per_class_fp32"],
        "iou_per_class_int8": cmp["iou_per_class_int8"],
        "held_out_images": len(held),
        "labelled_images": cmp["labelled_images"],
        "latency_runs": cmp.get("latency_runs", 0),
        "profile": prof.name,
        "settings": asdict(settings),
        "float_nodes": len(float_nodes),
        "excluded_ops_absent": missing,
        "op_counts": dict(sorted(op_counts.items())),
        "cache": {"trt_version": version, "tensors": len(scales),
                  "for": "TensorRT < 10.1 implicit INT8 with the FP32 ONNX in outputs.fp32_onnx"},
        "model": {"variant": meta.variant, "input_hw": list(meta.input_hw),
                  "fp32": str(fp32_ref), "dcn": meta.extra.get("dcn")},
        "images": {"source": image_set.source, "kind": image_set.kind, "seed": seed,
                   "splits": list(image_set.splits) if image_set.splits else None},
        "runtime": {**int8.describe(), "model": str(out / QDQ_NAME)},
        "calibration_s": round(calib_s, 1),
        "seconds": round(time.perf_counter() - t_start, 1),
        "warnings": warnings,
    }
    record = {**report, "calibration_list": [image_set.rel(p) for p in cal],
              "held_out_list": [image_set.rel(p) for p in held]}
    (staging / REPORT_NAME).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return report


def _commit(staging: Path, out: Path) -> None:
    """Move the finished files into ``out``: the whole folder at once when ``out`` is new,
    else file by file (each an atomic rename, replacing an earlier run's file)."""
    if not out.exists():
        os.replace(staging, out)
        return
    for f in sorted(staging.iterdir()):
        os.replace(f, out / f.name)


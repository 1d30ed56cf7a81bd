"""Calibration images: folders, globs, manifests and Cityscapes roots; sampling, labels and
the onnxruntime data reader that feeds them through the inference preprocessing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runtime.base import Segmenter

__all__ = [
    "DEFAULT_HOLDOUT",
    "IMAGE_SUFFIXES",
    "MANIFEST_NAME",
    "CalibrationReader",
    "ImageSet",
    "check_image_sizes",
    "find_images",
    "find_label",
    "image_size",
    "load_label",
    "read_bgr",
    "read_manifest",
    "sample_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MANIFEST_NAME = "manifest.txt"
DEFAULT_HOLDOUT = 50


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


def load_label(path: Path, is_train_ids: bool, shape: tuple[int, int]) -> np.ndarray:
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

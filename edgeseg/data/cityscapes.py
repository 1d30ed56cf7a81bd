"""Cityscapes: the label table, id <-> trainId lookup tables, and a dataset over the file layout.

The table restates the facts of the official ``cityscapesscripts/helpers/labels.py`` (name, label
id, train id, category, colour) so that nothing at run time depends on cityscapesscripts, which
no longer imports with numpy >= 2.4 (DESIGN.md section 5).

Layout read by :class:`CityscapesDataset`::

    {root}/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    {root}/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png   (preferred)
    {root}/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png        (fallback)

Only numpy is imported at module level; OpenCV loads when the first image is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = [
    "CLASSES",
    "ID_TO_TRAIN_ID",
    "IGNORE_INDEX",
    "LABELS",
    "LABEL_ID_COLORS",
    "NUM_CLASSES",
    "PALETTE",
    "SPLITS",
    "TRAIN_ID_TO_ID",
    "CityscapesDataset",
    "Label",
    "colorize",
    "ids_to_train_ids",
    "train_ids_to_ids",
]

IGNORE_INDEX = 255
SPLITS = ("train", "val", "test", "trainval")


class Label(NamedTuple):
    """One row of the Cityscapes label table."""

    name: str
    id: int  # value in *_gtFine_labelIds.png; -1 for license plate (never in label images)
    train_id: int  # 0..18 for the 19 evaluated classes, 255 ignored, -1 license plate
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]  # RGB


# fmt: off
LABELS: tuple[Label, ...] = (
    Label("unlabeled",              0, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("ego vehicle",            1, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("rectification border",   2, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("out of roi",             3, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("static",                 4, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("dynamic",                5, 255, "void",         0, False, True,  (111, 74, 0)),
    Label("ground",                 6, 255, "void",         0, False, True,  (81, 0, 81)),
    Label("road",                   7,   0, "flat",         1, False, False, (128, 64, 128)),
    Label("sidewalk",               8,   1, "flat",         1, False, False, (244, 35, 232)),
    Label("parking",                9, 255, "flat",         1, False, True,  (250, 170, 160)),
    Label("rail track",            10, 255, "flat",         1, False, True,  (230, 150, 140)),
    Label("building",              11,   2, "construction", 2, False, False, (70, 70, 70)),
    Label("wall",                  12,   3, "construction", 2, False, False, (102, 102, 156)),
    Label("fence",                 13,   4, "construction", 2, False, False, (190, 153, 153)),
    Label("guard rail",            14, 255, "construction", 2, False, True,  (180, 165, 180)),
    Label("bridge",                15, 255, "construction", 2, False, True,  (150, 100, 100)),
    Label("tunnel",                16, 255, "construction", 2, False, True,  (150, 120, 90)),
    Label("pole",                  17,   5, "object",       3, False, False, (153, 153, 153)),
    Label("polegroup",             18, 255, "object",       3, False, True,  (153, 153, 153)),
    Label("traffic light",         19,   6, "object",       3, False, False, (250, 170, 30)),
    Label("traffic sign",          20,   7, "object",       3, False, False, (220, 220, 0)),
    Label("vegetation",            21,   8, "nature",       4, False, False, (107, 142, 35)),
    Label("terrain",               22,   9, "nature",       4, False, False, (152, 251, 152)),
    Label("sky",                   23,  10, "sky",          5, False, False, (70, 130, 180)),
    Label("person",                24,  11, "human",        6, True,  False, (220, 20, 60)),
    Label("rider",                 25,  12, "human",        6, True,  False, (255, 0, 0)),
    Label("car",                   26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    Label("truck",                 27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    Label("bus",                   28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    Label("caravan",               29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    Label("trailer",               30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    Label("train",                 31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    Label("motorcycle",            32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    Label("bicycle",               33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    Label("license plate",         -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
)
# fmt: on

_TRAIN = sorted(
    (lb for lb in LABELS if 0 <= lb.train_id < IGNORE_INDEX), key=lambda lb: lb.train_id
)

NUM_CLASSES = len(_TRAIN)  # 19
CLASSES: tuple[str, ...] = tuple(lb.name for lb in _TRAIN)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(lb.color for lb in _TRAIN)


def _lut(pairs: list[tuple[int, int]], fill: int) -> np.ndarray:
    lut = np.full(256, fill, dtype=np.uint8)
    for src, dst in pairs:
        lut[src] = dst
    lut.setflags(write=False)
    return lut


#: uint8[256]: label id -> train id (255 for ignored ids and any value outside the table).
ID_TO_TRAIN_ID = _lut([(lb.id, lb.train_id) for lb in _TRAIN], IGNORE_INDEX)
#: uint8[256]: train id -> label id, for submissions; 255 (ignore) -> 0 (unlabeled).
TRAIN_ID_TO_ID = _lut([(lb.train_id, lb.id) for lb in _TRAIN], 0)
#: uint8[256, 3]: label id -> official RGB colour (the colour of *_gtFine_color.png).
LABEL_ID_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _lb in LABELS:
    if _lb.id >= 0:
        LABEL_ID_COLORS[_lb.id] = _lb.color
LABEL_ID_COLORS.setflags(write=False)
_TRAIN_ID_COLORS = np.zeros((256, 3), dtype=np.uint8)
_TRAIN_ID_COLORS[:NUM_CLASSES] = PALETTE
_TRAIN_ID_COLORS.setflags(write=False)


def ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Label ids (any integer array with values 0..255) -> uint8 train ids, 255 for ignored."""
    return ID_TO_TRAIN_ID[np.asarray(label_ids).astype(np.uint8, copy=False)]


def train_ids_to_ids(train_ids: np.ndarray) -> np.ndarray:
    """Train ids -> uint8 label ids, as the Cityscapes benchmark expects in a submission."""
    return TRAIN_ID_TO_ID[np.asarray(train_ids).astype(np.uint8, copy=False)]


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Train ids (H, W) -> RGB uint8 (H, W, 3) in the official palette; ignore is black."""
    return _TRAIN_ID_COLORS[np.asarray(train_ids).astype(np.uint8, copy=False)]


class CityscapesDataset:
    """Image/label pairs of one Cityscapes split, read with OpenCV.

    Args:
        root: dataset root holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val``, ``test`` or ``trainval`` (train then val; the paper trains on
            both).
        transform: optional callable ``(image, mask) -> anything``, e.g.
            :func:`edgeseg.data.transforms.build_train_transform`.

    Without a transform an item is ``(image, mask)``: ``image`` a numpy uint8 (H, W, 3) **RGB**
    array, ``mask`` a numpy uint8 (H, W) array of train ids with 255 = ignore. Labels come from
    ``*_gtFine_labelTrainIds.png`` when present, otherwise ``*_gtFine_labelIds.png`` mapped through
    :data:`ID_TO_TRAIN_ID`. Test images have no real labels: a missing label file there gives an
    all-255 mask; in the other splits it is an error.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise EdgesegError(f"unknown Cityscapes split {split!r}: expected one of {SPLITS}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        if not self.root.is_dir():
            raise EdgesegError(f"Cityscapes root not found: {self.root}")
        parts = ("train", "val") if split == "trainval" else (split,)
        self.samples: list[tuple[Path, Path | None, bool]] = []
        for part in parts:
            self.samples.extend(self._scan(part))

    def _scan(self, part: str) -> list[tuple[Path, Path | None, bool]]:
        img_dir = self.root / "leftImg8bit" / part
        if not img_dir.is_dir():
            raise EdgesegError(f"Cityscapes split directory not found: {img_dir}")
        images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise EdgesegError(f"no *_leftImg8bit.png images under {img_dir}")
        out: list[tuple[Path, Path | None, bool]] = []
        for img in images:
            stem = img.name[: -len("_leftImg8bit.png")]
            gt_dir = self.root / "gtFine" / part / img.parent.name
            train_ids = gt_dir / f"{stem}_gtFine_labelTrainIds.png"
            label_ids = gt_dir / f"{stem}_gtFine_labelIds.png"
            if train_ids.is_file():
                out.append((img, train_ids, True))
            elif label_ids.is_file():
                out.append((img, label_ids, False))
            elif part == "test":
                out.append((img, None, False))
            else:
                raise EdgesegError(f"no label for {img.name}: expected {label_ids}")
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, index: int) -> Path:
        """The ``*_leftImg8bit.png`` path of item ``index`` (names a submission file)."""
        return self.samples[index][0]

    def load_label(self, index: int) -> np.ndarray | None:
        """Train ids (uint8 (H, W)) of item ``index`` without decoding its image; None for an
        unlabelled test image."""
        import cv2

        _img, label_path, is_train_ids = self.samples[index]
        if label_path is None:
            return None
        raw = cv2.imread(str(label_path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise EdgesegError(f"cannot read label {label_path}")
        return raw if is_train_ids else ID_TO_TRAIN_ID[raw]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` without the transform: (RGB uint8 (H, W, 3), train ids uint8 (H, W))."""
        import cv2

        img_path, label_path, is_train_ids = self.samples[index]
        bgr = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EdgesegError(f"cannot read image {img_path}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if label_path is None:
            return image, np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        raw = cv2.imread(str(label_path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise EdgesegError(f"cannot read label {label_path}")
        if raw.shape != image.shape[:2]:
            raise EdgesegError(
                f"label {label_path.name} is {raw.shape[1]}x{raw.shape[0]}, "
                f"image is {image.shape[1]}x{image.shape[0]}"
            )
        mask = raw if is_train_ids else ID_TO_TRAIN_ID[raw]
        return image, mask

    def __getitem__(self, index: int) -> Any:
        image, mask = self.load(index)
        if self.transform is not None:
            return self.transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return f"CityscapesDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

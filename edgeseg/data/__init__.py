"""Data for training and evaluation: Cityscapes, synthetic street scenes, augmentation.

- :mod:`edgeseg.data.cityscapes`: the label table, id <-> trainId lookup tables, palette and
  :class:`CityscapesDataset` (numpy only; OpenCV loads on first read).
- :mod:`edgeseg.data.synthetic`: procedural street scenes written in the Cityscapes layout.
- :mod:`edgeseg.data.transforms`: training / evaluation transforms (imports torch).

:data:`MEAN` and :data:`STD` (ImageNet, 0..1 scale) are the one normalisation every model
artifact records. This package stays import-light: the synthetic generator and the transforms
load when first named here (``edgeseg.data.build_train_transform`` imports torch then).
"""

from __future__ import annotations

from typing import Any

from edgeseg.data.cityscapes import (
    CLASSES,
    ID_TO_TRAIN_ID,
    IGNORE_INDEX,
    LABELS,
    NUM_CLASSES,
    PALETTE,
    TRAIN_ID_TO_ID,
    CityscapesDataset,
    colorize,
    ids_to_train_ids,
    train_ids_to_ids,
)

MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


_LAZY = {
    "generate_scene": "edgeseg.data.synthetic",
    "write_synthetic_cityscapes": "edgeseg.data.synthetic",
    "build_train_transform": "edgeseg.data.transforms",
    "build_eval_transform": "edgeseg.data.transforms",
    "GridMask": "edgeseg.data.transforms",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeseg.data' has no attribute {name!r}")


__all__ = [
    "CLASSES",
    "ID_TO_TRAIN_ID",
    "IGNORE_INDEX",
    "LABELS",
    "MEAN",
    "NUM_CLASSES",
    "PALETTE",
    "STD",
    "TRAIN_ID_TO_ID",
    "CityscapesDataset",
    "GridMask",
    "build_eval_transform",
    "build_train_transform",
    "colorize",
    "generate_scene",
    "ids_to_train_ids",
    "train_ids_to_ids",
    "write_synthetic_cityscapes",
]

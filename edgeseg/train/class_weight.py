"""Per-class loss weights from the training labels' pixel frequencies.

Short schedules from random init learn the frequent classes (road, building, sky) first and
leave the rare ones (rider, motorcycle, bus) near zero IoU; weighting the cross-entropy by
inverse log frequency (ENet, Paszke et al. 2016: ``w_c = 1 / ln(c + p_c)``, c = 1.02) lifts
them. Measured in docs/benchmarks.md ("Training recipe at the demo's budget").
"""

from __future__ import annotations

import math

import numpy as np

from edgeseg.data.cityscapes import IGNORE_INDEX, CityscapesDataset

__all__ = ["CLASS_WEIGHTS", "class_frequencies", "class_weights", "enet_weights"]

CLASS_WEIGHTS = ("none", "enet")
ENET_C = 1.02
MAX_LABELS = 200  # an evenly spaced sample: frequencies settle long before 2975 images


def class_frequencies(dataset: CityscapesDataset, num_classes: int,
                      max_labels: int = MAX_LABELS) -> np.ndarray:
    """Fraction of the labelled (non-ignore) pixels of each class, over up to ``max_labels``
    evenly spaced items of ``dataset``."""
    n = len(dataset)
    picks = np.unique(np.linspace(0, n - 1, min(n, max_labels)).round().astype(int))
    counts = np.zeros(num_classes, dtype=np.float64)
    for i in picks:
        mask = dataset.load_label(int(i))
        if mask is not None:
            counts += np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=256)[:num_classes]
    total = counts.sum()
    return counts / total if total else counts


def enet_weights(freq: np.ndarray, c: float = ENET_C) -> np.ndarray:
    """``1 / ln(c + p)``; a class absent from the sample gets the largest weight, 1 / ln(c)."""
    return np.array([1.0 / math.log(c + float(p)) for p in freq], dtype=np.float32)


def class_weights(kind: str, dataset: CityscapesDataset, num_classes: int) -> np.ndarray | None:
    """The weights ``kind`` names (``CLASS_WEIGHTS``), or None for unweighted."""
    if kind == "none":
        return None
    if kind == "enet":
        return enet_weights(class_frequencies(dataset, num_classes))
    raise ValueError(f"class weights: expected one of {CLASS_WEIGHTS}, got {kind!r}")

"""Segmentation metrics: one confusion matrix, per-class IoU, mIoU and pixel accuracy.

numpy only and at the bottom layer, so that evaluation (train/), INT8 comparison (deploy/) and
tuning (tune/) share one definition without deploy/ or tune/ importing train/.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates a (C, C) matrix, rows = ground truth, columns = prediction; 255 ignored."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.n = num_classes
        self.ignore = ignore_index
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        pred = np.asarray(pred).ravel().astype(np.int64)
        target = np.asarray(target).ravel().astype(np.int64)
        keep = (target != self.ignore) & (target < self.n)
        idx = target[keep] * self.n + np.clip(pred[keep], 0, self.n - 1)
        self.mat += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def iou(self) -> np.ndarray:
        """TP / (TP + FP + FN) per class; NaN for a class absent from both GT and prediction."""
        tp = np.diag(self.mat).astype(np.float64)
        denom = self.mat.sum(0) + self.mat.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def summary(self, classes: list[str]) -> dict[str, Any]:
        iou = self.iou()
        total = self.mat.sum()
        return {
            # mean over classes that occur (in GT or prediction); Cityscapes' own script does
            # the same NaN-skipping mean, and on the real val set all 19 occur.
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
            "iou_per_class": {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, iou)},
            "pixel_accuracy": float(np.diag(self.mat).sum() / total) if total else 0.0,
        }

"""One inference interface for every backend: preprocess -> infer -> postprocess.

Calibrate, bench and run talk to a Segmenter and never branch on the backend. A backend only
implements ``infer`` (network in, network out) and says where its artifact's metadata lives;
pre- and post-processing are shared so every backend sees byte-identical inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from edgeseg.artifacts.meta import ModelMeta

__all__ = ["ModelMeta", "Segmenter", "argmax_classes"]


def argmax_classes(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) -> uint8 (H, W) labels; first maximum wins, like numpy's argmax.

    A running maximum over the classes reads each logit plane once and keeps two (H, W)
    buffers hot in cache: ~2.6x faster than ``logits.argmax(0)`` on the 19x512x1024 case.
    """
    best = logits[0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for c in range(1, logits.shape[0]):
        better = logits[c] > best
        np.putmask(labels, better, c)
        np.maximum(best, logits[c], out=best)
    return labels


class Segmenter(ABC):
    """A loaded segmentation model behind one backend.

    ``__call__(bgr)`` runs the whole chain on one OpenCV BGR uint8 frame and returns train-id
    labels (H, W) uint8 at the frame's size.
    """

    backend: str = "?"
    # True when the backend accepts any input size (torch, dynamic ONNX): `native_size=True`
    # then skips the resize, e.g. for evaluation at the dataset's own resolution.
    dynamic_input: bool = False

    def __init__(self, meta: ModelMeta) -> None:
        self.meta = meta
        self._mean = np.asarray(meta.mean, np.float32).reshape(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (np.asarray(meta.std, np.float32).reshape(1, 3, 1, 1) * 255.0)

    def preprocess(self, bgr: np.ndarray, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """BGR uint8 (H, W, 3) -> normalised RGB float32 (1, 3, h, w) at ``size_hw``
        (default: the model's input size)."""
        import cv2

        h, w = size_hw or self.meta.input_hw
        if bgr.shape[:2] != (h, w):
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
        rgb = bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        return (rgb - self._mean) * self._inv_std

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, h, w) float32 -> logits (N, C, h, w) float or labels (N, h, w) integer."""

    def postprocess(self, out: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """Network output -> labels (H, W) uint8 at ``size_hw`` (nearest for labels)."""
        import cv2

        labels = out[0].astype(np.uint8) if out.ndim == 3 else argmax_classes(out[0])
        if labels.shape != tuple(size_hw):
            labels = cv2.resize(labels, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)
        return labels

    def __call__(self, bgr: np.ndarray, *, native_size: bool = False) -> np.ndarray:
        size = bgr.shape[:2] if (native_size and self.dynamic_input) else None
        return self.postprocess(self.infer(self.preprocess(bgr, size)), bgr.shape[:2])

    def describe(self) -> dict[str, Any]:
        """Backend name and versions, for bench reports."""
        return {"backend": self.backend}

"""The shared pre/post-processing every backend uses."""

from __future__ import annotations

import numpy as np

from edgeseg.runtime.base import ModelMeta, Segmenter, argmax_classes


def test_argmax_classes_equals_numpy_including_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((19, 33, 47)).astype(np.float32)
    x[:, 0, 0] = 5.0  # a tie across all classes: the first one wins, as in numpy
    x[7, 1, 1] = x[12, 1, 1] = 9.0
    got = argmax_classes(x)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, x.argmax(0))


class _Identity(Segmenter):
    backend = "identity"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return batch


def test_preprocess_normalises_rgb_and_resizes() -> None:
    meta = ModelMeta("desanet-hn", ["a", "b", "c"], [(0, 0, 0)] * 3, (0.5, 0.25, 0.0),
                     (0.5, 0.5, 1.0), (4, 6))
    seg = _Identity(meta)
    bgr = np.zeros((8, 12, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 255, 128, 0  # B, G, R
    x = seg.preprocess(bgr)
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32
    # channel 0 is R: (0 - 0.5*255) / (0.5*255) = -1; G: (128 - 63.75)/127.5; B: 255/255 = 1
    np.testing.assert_allclose(x[0, :, 0, 0], [-1.0, (128 - 63.75) / 127.5, 1.0], rtol=1e-6)
    labels = seg.postprocess(x, (8, 12))  # argmax over 3 "classes" = the B channel everywhere
    assert labels.shape == (8, 12) and (labels == 2).all()

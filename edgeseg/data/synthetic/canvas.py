"""Label ids, the perspective camera, the canvas (image and label ids drawn together) and
colour helpers shared by the scene painters.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# Label ids used by the generator: every one of the 19 train classes, plus the ego vehicle.
EGO, ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 1, 7, 8, 11, 12, 13, 17
LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER = 19, 20, 21, 22, 23, 24, 25
CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 26, 27, 28, 31, 32, 33

SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
ONE = 1 << SHIFT

Color = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# Camera and drawing helpers
# --------------------------------------------------------------------------------------------


class Camera:
    """Pinhole camera looking along +Z, X right, Y up; the ground is Y = 0."""

    def __init__(self, f: float, height: float, xv: float, yh: float) -> None:
        self.f, self.h, self.xv, self.yh = f, height, xv, yh

    def project(self, x: Any, y: Any, z: Any) -> np.ndarray:
        """World points (broadcastable X, Y, Z) -> (..., 2) pixel coordinates."""
        z = np.maximum(np.asarray(z, dtype=np.float64), 0.05)
        u = self.xv + self.f * np.asarray(x, dtype=np.float64) / z
        v = self.yh + self.f * (self.h - np.asarray(y, dtype=np.float64)) / z
        shape = u.shape if u.shape == v.shape else np.broadcast_shapes(u.shape, v.shape)
        out = np.empty((*shape, 2))  # filled in place: painters call this ~400 times a scene
        out[..., 0] = u
        out[..., 1] = v
        return out

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.f / max(z, 0.05)


class Canvas:
    """An RGB float image and a label-id image painted together."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.lab = np.zeros((h, w), dtype=np.uint8)

    @staticmethod
    def _fix(pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64) * ONE
        np.maximum(p, -1e6, out=p)  # = np.clip, without its Python-level overhead
        np.minimum(p, 1e6, out=p)
        return np.rint(p).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, pts: np.ndarray, color: Color, label: int | None) -> None:
        """Fill one polygon (N, 2) or several (K, N, 2) in colour, and in label unless None."""
        arr = np.asarray(pts, dtype=np.float64)
        polys = [self._fix(p) for p in arr] if arr.ndim == 3 else [self._fix(arr)]
        cv2.fillPoly(self.rgb, polys, color, cv2.LINE_8, SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, polys, int(label), cv2.LINE_8, SHIFT)

    def ellipse(
        self, c: np.ndarray, axes: tuple[float, float], color: Color, label: int | None
    ) -> None:
        center = (round(float(c[0]) * ONE), round(float(c[1]) * ONE))
        ax = (max(round(axes[0] * ONE), ONE // 2), max(round(axes[1] * ONE), ONE // 2))
        cv2.ellipse(self.rgb, center, ax, 0, 0, 360, color, -1, cv2.LINE_8, SHIFT)
        if label is not None:
            cv2.ellipse(self.lab, center, ax, 0, 0, 360, int(label), -1, cv2.LINE_8, SHIFT)

    def strokes(
        self, p0: np.ndarray, p1: np.ndarray, color: Color, label: int, thickness: int = 1
    ) -> None:
        """Thick segments p0[i] -> p1[i] in colour and label (tubes, limbs, tyres seen edge-on)."""
        segs = np.stack([np.asarray(p0, np.float64), np.asarray(p1, np.float64)], -2)
        if segs.size:
            polys = list(self._fix(segs).reshape(-1, 2, 1, 2))
            t = max(int(thickness), 1)
            cv2.polylines(self.rgb, polys, False, color, t, cv2.LINE_8, SHIFT)
            cv2.polylines(self.lab, polys, False, int(label), t, cv2.LINE_8, SHIFT)

    def ring(self, pts: np.ndarray, color: Color, label: int, thickness: int) -> None:
        """A closed outline (N, 2), e.g. a tyre, in colour and label."""
        poly = [self._fix(pts)]
        t = max(int(thickness), 1)
        cv2.polylines(self.rgb, poly, True, color, t, cv2.LINE_8, SHIFT)
        cv2.polylines(self.lab, poly, True, int(label), t, cv2.LINE_8, SHIFT)

    def lines(self, p0: np.ndarray, p1: np.ndarray, color: Color, thickness: int = 1) -> None:
        """Segments p0[i] -> p1[i] on the image only (detail inside an already labelled region)."""
        segs = np.stack([np.asarray(p0, np.float64), np.asarray(p1, np.float64)], -2)
        if segs.size:
            polys = list(self._fix(segs).reshape(-1, 2, 1, 2))
            cv2.polylines(self.rgb, polys, False, color, thickness, cv2.LINE_AA, SHIFT)


def hsv_color(rng: np.random.Generator, h: Any, s: Any, v: Any) -> Color:
    """A colour from HSV ranges (hue in degrees, s and v in 0..1); each arg a (lo, hi) or value."""

    def pick(r: Any) -> float:
        return float(rng.uniform(*r)) if isinstance(r, tuple) else float(r)

    hh, ss, vv = pick(h) % 360.0, pick(s), pick(v)
    c = vv * ss
    x = c * (1 - abs((hh / 60.0) % 2 - 1))
    m = vv - c
    i = int(hh // 60) % 6
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][i]
    return ((r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0)


def any_color(rng: np.random.Generator) -> Color:
    """A colour from the shared 'paint' distribution: often grey, otherwise any hue."""
    if rng.random() < 0.4:
        return hsv_color(rng, (0, 360), (0.0, 0.12), (0.08, 0.9))
    return hsv_color(rng, (0, 360), (0.15, 0.85), (0.15, 0.9))


def shade(c: Color, k: float) -> Color:
    return (c[0] * k, c[1] * k, c[2] * k)


def mix(a: Color, b: Color) -> Color:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2)

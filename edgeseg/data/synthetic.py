"""Procedural street scenes in the Cityscapes layout, for tests, demos and smoke training.

A scene is built in 3-D and painted far to near through a pinhole camera at a random height,
horizon and focal length: sky gradient and clouds, a far skyline or tree line, ground (terrain,
road with lane marks and crossings, kerbed sidewalks), building facades with windows along both
sides (or parks with hedges and fences), then trees, poles with signs and traffic lights,
pedestrians and cars sorted by depth so that nearer things occlude farther ones. Every instance
has its own colour drawn from overlapping distributions (grey cars on grey roads under grey
facades), classes get their own texture statistics, and a global exposure / white balance /
gamma change, cast shadows and sensor noise finish the frame: a network has to learn shape,
position and context rather than one colour per class.

Labels are Cityscapes *label ids* (7 road, 8 sidewalk, 11 building, 13 fence, 17 pole,
19 traffic light, 20 traffic sign, 21 vegetation, 22 terrain, 23 sky, 24 person, 26 car;
1 ego vehicle for the occasional bonnet at the bottom, which training ignores). Twelve of the
nineteen train classes appear; all of them are large enough to learn at 128x256.

About 10-15 ms of CPU per 256x512 scene (cv2 drawing, vectorised numpy noise).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.data.cityscapes import CLASSES, ID_TO_TRAIN_ID, LABEL_ID_COLORS, NUM_CLASSES
from edgeseg.errors import EdgesegError

__all__ = [
    "MARKER",
    "SYNTH_CITIES",
    "generate_scene",
    "scene_rng",
    "write_synthetic_cityscapes",
]

# Label ids used by the generator.
EGO, ROAD, SIDEWALK, BUILDING, FENCE, POLE = 1, 7, 8, 11, 13, 17
LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = 19, 20, 21, 22, 23, 24, 26

#: Fake city names per split; images are dealt to them in consecutive blocks.
SYNTH_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("pixelburg", "rasterdorf", "voxelstadt"),
    "val": ("texelheim",),
}
#: File written at the dataset root; `--overwrite` only replaces directories that carry it.
MARKER = "edgeseg_synthetic.json"
_FRAME = 19  # Cityscapes annotates the 20th frame of each 30-frame snippet
_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_ONE = 1 << _SHIFT

Color = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# Camera and drawing helpers
# --------------------------------------------------------------------------------------------


class _Camera:
    """Pinhole camera looking along +Z, X right, Y up; the ground is Y = 0."""

    def __init__(self, f: float, height: float, xv: float, yh: float) -> None:
        self.f, self.h, self.xv, self.yh = f, height, xv, yh

    def project(self, x: Any, y: Any, z: Any) -> np.ndarray:
        """World points (broadcastable X, Y, Z) -> (..., 2) pixel coordinates."""
        z = np.maximum(np.asarray(z, dtype=np.float64), 0.05)
        u = self.xv + self.f * np.asarray(x, dtype=np.float64) / z
        v = self.yh + self.f * (self.h - np.asarray(y, dtype=np.float64)) / z
        u, v = np.broadcast_arrays(u, v)
        return np.stack([u, v], axis=-1)

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.f / max(z, 0.05)


class _Canvas:
    """An RGB float image and a label-id image painted together."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.lab = np.zeros((h, w), dtype=np.uint8)

    @staticmethod
    def _fix(pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64) * _ONE
        np.clip(p, -1e6, 1e6, out=p)
        return np.rint(p).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, pts: np.ndarray, color: Color, label: int | None) -> None:
        """Fill one polygon (N, 2) or several (K, N, 2) in colour, and in label unless None."""
        arr = np.asarray(pts, dtype=np.float64)
        polys = [self._fix(p) for p in arr] if arr.ndim == 3 else [self._fix(arr)]
        cv2.fillPoly(self.rgb, polys, color, cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, polys, int(label), cv2.LINE_8, _SHIFT)

    def ellipse(
        self, c: np.ndarray, axes: tuple[float, float], color: Color, label: int | None
    ) -> None:
        center = (round(float(c[0]) * _ONE), round(float(c[1]) * _ONE))
        ax = (max(round(axes[0] * _ONE), _ONE // 2), max(round(axes[1] * _ONE), _ONE // 2))
        cv2.ellipse(self.rgb, center, ax, 0, 0, 360, color, -1, cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.ellipse(self.lab, center, ax, 0, 0, 360, int(label), -1, cv2.LINE_8, _SHIFT)

    def lines(self, p0: np.ndarray, p1: np.ndarray, color: Color, thickness: int = 1) -> None:
        """Segments p0[i] -> p1[i] on the image only (detail inside an already labelled region)."""
        segs = np.stack([np.asarray(p0, np.float64), np.asarray(p1, np.float64)], -2)
        if segs.size:
            polys = list(self._fix(segs).reshape(-1, 2, 1, 2))
            cv2.polylines(self.rgb, polys, False, color, thickness, cv2.LINE_AA, _SHIFT)


def _hsv(rng: np.random.Generator, h: Any, s: Any, v: Any) -> Color:
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


def _any_color(rng: np.random.Generator) -> Color:
    """A colour from the shared 'paint' distribution: often grey, otherwise any hue."""
    if rng.random() < 0.4:
        return _hsv(rng, (0, 360), (0.0, 0.12), (0.08, 0.9))
    return _hsv(rng, (0, 360), (0.15, 0.85), (0.15, 0.9))


def _shade(c: Color, k: float) -> Color:
    return (c[0] * k, c[1] * k, c[2] * k)


def _mix(a: Color, b: Color) -> Color:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2)


# --------------------------------------------------------------------------------------------
# Scene elements
# --------------------------------------------------------------------------------------------


def _sky(cv: _Canvas, rng: np.random.Generator, yh: float, noise_c: np.ndarray) -> None:
    kind = rng.random()
    if kind < 0.55:  # blue
        top = _hsv(rng, (195, 230), (0.35, 0.75), (0.55, 0.95))
        bottom = _hsv(rng, (190, 220), (0.05, 0.35), (0.75, 1.0))
    elif kind < 0.85:  # overcast
        top = _hsv(rng, (0, 360), (0.0, 0.08), (0.45, 0.9))
        bottom = _hsv(rng, (0, 360), (0.0, 0.06), (0.6, 1.0))
    else:  # dusk
        top = _hsv(rng, (210, 260), (0.3, 0.6), (0.25, 0.6))
        bottom = _hsv(rng, (10, 45), (0.3, 0.7), (0.6, 1.0))
    rows = max(int(np.ceil(yh)) + 2, 1)
    t = (np.arange(cv.h, dtype=np.float32) / max(rows, 1)).clip(0, 1)[:, None, None]
    grad = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    cv.rgb[:] = grad
    if rng.random() < 0.6:  # clouds: thresholded coarse noise brightens the sky
        amount = np.clip(noise_c * rng.uniform(0.6, 1.4) - rng.uniform(0.0, 0.8), 0, 1)
        cv.rgb += amount[..., None] * rng.uniform(40, 110)
    cv.lab[:] = SKY


def _ground(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, road: tuple[float, float], zfar: float
) -> tuple[float, float]:
    """Terrain everywhere, then road with lane marks and the two kerbed sidewalks."""
    h, w = cv.h, cv.w
    terrain = (
        _hsv(rng, (60, 110), (0.25, 0.6), (0.3, 0.7))
        if rng.random() < 0.7
        else _hsv(rng, (20, 45), (0.2, 0.5), (0.3, 0.6))
    )
    cv.poly(
        np.array([[-w, cam.yh + 0.5], [2 * w, cam.yh + 0.5], [2 * w, 3 * h], [-w, 3 * h]]),
        terrain,
        TERRAIN,
    )

    zn = 0.8
    xl, xr = road

    def strip(x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
        return cam.project(np.array([x0, x1, x1, x0]), 0.0, np.array([z0, z0, z1, z1]))

    # sidewalks (drawn wide, the road covers their inner edge); kerb stones lighter
    sw_l, sw_r = rng.uniform(2.0, 4.5), rng.uniform(2.0, 4.5)
    side = _hsv(rng, (0, 360), (0.0, 0.25), (0.35, 0.75))
    side_r = side if rng.random() < 0.6 else _hsv(rng, (0, 360), (0.0, 0.25), (0.35, 0.75))
    for x0, x1, col in ((xl - sw_l, xl + 0.2, side), (xr - 0.2, xr + sw_r, side_r)):
        cv.poly(strip(x0, x1, zn, zfar), col, SIDEWALK)
        # paving joints: rows of constant depth and lines of constant X
        joint = _shade(col, rng.uniform(0.6, 0.85))
        step = rng.uniform(0.8, 2.0)
        zs = np.arange(zn + step, min(zfar, 40.0), step)
        cv.lines(cam.project(x0, 0.0, zs), cam.project(x1, 0.0, zs), joint)
        xs = np.arange(x0 + step, x1, step)
        cv.lines(cam.project(xs, 0.0, zn), cam.project(xs, 0.0, min(zfar, 60.0)), joint)
    kerb = _hsv(rng, (0, 360), (0.0, 0.1), (0.55, 0.9))
    cv.poly(strip(xl - 0.25, xl, zn, zfar), kerb, SIDEWALK)
    cv.poly(strip(xr, xr + 0.25, zn, zfar), kerb, SIDEWALK)
    # grass verges between kerb and footway
    grass = _hsv(rng, (60, 110), (0.25, 0.6), (0.3, 0.7))
    for x_kerb, sw, sgn in ((xl - 0.25, sw_l, -1), (xr + 0.25, sw_r, 1)):
        if rng.random() < 0.3:
            v = rng.uniform(0.8, 0.45 * sw)
            cv.poly(strip(x_kerb, x_kerb + sgn * v, zn, zfar), grass, TERRAIN)

    # road
    asphalt = _hsv(rng, (0, 360), (0.0, 0.12), (0.18, 0.55))
    cv.poly(strip(xl, xr, zn, 1e4), asphalt, ROAD)
    fresh = (
        _hsv(rng, (0, 360), (0.0, 0.05), (0.75, 0.95))
        if rng.random() < 0.8
        else _hsv(rng, (40, 55), (0.6, 0.9), (0.7, 0.95))
    )
    paint = _mix(fresh, asphalt)  # worn: half way to the asphalt
    lw = rng.uniform(0.12, 0.2)
    if rng.random() < 0.7:  # edge lines
        cv.poly(strip(xl + 0.3, xl + 0.3 + lw, zn, 1e4), paint, ROAD)
        cv.poly(strip(xr - 0.3 - lw, xr - 0.3, zn, 1e4), paint, ROAD)
    lane = rng.uniform(2.8, 3.6)
    dash, gap = rng.uniform(2.0, 4.0), rng.uniform(3.0, 7.0)
    off = rng.uniform(0, dash + gap)
    for xc in np.arange(xl + lane, xr - 1.0, lane):
        zs = np.arange(zn - off, 200.0, dash + gap)
        polys = [strip(xc - lw / 2, xc + lw / 2, max(z, zn), z + dash) for z in zs if z + dash > zn]
        if polys:
            cv.poly(np.stack(polys), paint, ROAD)
    if rng.random() < 0.35:  # zebra crossing
        zc = rng.uniform(8.0, 25.0)
        width = rng.uniform(0.4, 0.6)
        polys = [
            strip(x, x + width, zc, zc + 3.0) for x in np.arange(xl + 0.3, xr - 0.3, 2 * width)
        ]
        cv.poly(np.stack(polys), paint, ROAD)
    return sw_l, sw_r


def _facade(
    cv: _Canvas,
    cam: _Camera,
    rng: np.random.Generator,
    xf: float,
    z0: float,
    z1: float,
    height: float,
) -> None:
    """A building front in the plane X = xf between depths z0 < z1, with a grid of windows."""
    corners = cam.project(
        np.array([xf, xf, xf, xf]), np.array([0, 0, height, height]), np.array([z0, z1, z1, z0])
    )
    wall = _any_color(rng) if rng.random() < 0.5 else _hsv(rng, (10, 50), (0.05, 0.45), (0.3, 0.85))
    cv.poly(corners, wall, BUILDING)
    floor = rng.uniform(2.8, 3.6)
    bay = rng.uniform(2.2, 4.0)
    ww, wh = bay * rng.uniform(0.35, 0.6), floor * rng.uniform(0.35, 0.55)
    glass = _hsv(rng, (180, 240), (0.0, 0.35), (0.05, 0.45))
    ys = np.arange(rng.uniform(2.8, 4.0), height - wh - 0.5, floor)
    zs = np.arange(z0 + rng.uniform(0.4, 1.2), z1 - ww, bay)
    if len(ys) and len(zs):
        zz, yy = np.meshgrid(zs, ys)
        zz, yy = zz.ravel(), yy.ravel()
        quad_z = np.stack([zz, zz + ww, zz + ww, zz], -1)
        quad_y = np.stack([yy, yy, yy + wh, yy + wh], -1)
        polys = cam.project(np.full_like(quad_z, xf), quad_y, quad_z)
        cv.poly(polys, glass, None)
        if rng.random() < 0.5:  # a few lit or open windows
            pick = rng.random(len(polys)) < 0.25
            if pick.any():
                cv.poly(polys[pick], _hsv(rng, (20, 60), (0.1, 0.5), (0.4, 0.9)), None)
    if rng.random() < 0.5:  # ground-floor shop front or door
        zd = rng.uniform(z0, max(z0 + 0.1, z1 - 3.0))
        door = cam.project(
            np.full(4, xf),
            np.array([0, 0, 2.4, 2.4]),
            np.array([zd, zd + rng.uniform(1.2, 3.0), zd + 3.0, zd]),
        )
        door[2] = cam.project(xf, 2.4, min(zd + 3.0, z1))
        cv.poly(door, _shade(glass, 0.8), None)


def _skyline(cv: _Canvas, cam: _Camera, rng: np.random.Generator, z: float) -> None:
    """Far buildings and tree lines across the end of the street at depth z."""
    half = (cv.w * 0.8) * z / cam.f
    x = -half - rng.uniform(0, 10)
    while x < half:
        bw = rng.uniform(8, 25)
        if rng.random() < 0.65:
            bh = rng.uniform(8, 40)
            quad = cam.project(np.array([x, x + bw, x + bw, x]), np.array([0, 0, bh, bh]), z)
            cv.poly(quad, _any_color(rng), BUILDING)
        else:
            _tree_line(cv, cam, rng, x, x + bw, z, rng.uniform(5, 14))
        x += bw


def _tree_line(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, x0: float, x1: float, z: float, h: float
) -> None:
    n = 14
    xs = np.linspace(x0, x1, n)
    top = h * (1 + 0.25 * rng.standard_normal(n)).clip(0.4, 1.6)
    pts = np.concatenate([cam.project(xs, top, z), cam.project(np.array([x1, x0]), 0.0, z)])
    cv.poly(pts, _hsv(rng, (70, 130), (0.3, 0.7), (0.15, 0.5)), VEGETATION)


def _hedge(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z0: float, z1: float, h: float
) -> None:
    """Vegetation in the plane X = x with a ragged top."""
    n = max(int((z1 - z0) / 1.5), 4)
    zs = np.geomspace(z0, z1, n)
    top = h * (1 + 0.2 * rng.standard_normal(n)).clip(0.5, 1.5)
    pts = np.concatenate([cam.project(x, top, zs), cam.project(x, 0.0, np.array([z1, z0]))])
    cv.poly(pts, _hsv(rng, (65, 140), (0.3, 0.75), (0.15, 0.55)), VEGETATION)


def _fence(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z0: float, z1: float, h: float
) -> None:
    quad = cam.project(np.full(4, x), np.array([0, 0, h, h]), np.array([z0, z1, z1, z0]))
    base = _any_color(rng)
    cv.poly(quad, _shade(base, rng.uniform(0.5, 0.9)), FENCE)
    bar = _shade(base, rng.uniform(1.1, 1.5))
    step = rng.uniform(0.25, 0.6)
    thick = 1 + int(cam.scale(z0) * 0.06)
    zs = np.arange(z0, z1, step)
    cv.lines(cam.project(x, 0.0, zs), cam.project(x, h, zs), bar, thick)
    ys = np.array([0.15 * h, 0.92 * h])
    cv.lines(cam.project(x, ys, z0), cam.project(x, ys, z1), bar, thick)


def _tree(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float) -> None:
    """Trunk and crown; Cityscapes labels both as vegetation."""
    trunk_h, trunk_w, r = rng.uniform(1.8, 3.5), rng.uniform(0.25, 0.5), rng.uniform(1.4, 3.0)
    bark = _hsv(rng, (15, 40), (0.2, 0.6), (0.12, 0.4))
    quad = cam.project(
        np.array([x - trunk_w / 2, x + trunk_w / 2, x + trunk_w / 2, x - trunk_w / 2]),
        np.array([0, 0, trunk_h + r, trunk_h + r]),
        z,
    )
    cv.poly(quad, bark, VEGETATION)
    leaf = (
        _hsv(rng, (70, 140), (0.35, 0.8), (0.2, 0.6))
        if rng.random() < 0.85
        else _hsv(rng, (20, 60), (0.5, 0.9), (0.35, 0.75))
    )
    s = cam.scale(z)
    for _ in range(int(rng.integers(3, 7))):
        cx = x + rng.uniform(-0.6, 0.6) * r
        cy = trunk_h + r * rng.uniform(0.5, 1.3)
        c = cam.project(cx, cy, z)
        ax = (r * rng.uniform(0.55, 0.9) * s, r * rng.uniform(0.45, 0.8) * s)
        cv.ellipse(c, ax, _shade(leaf, rng.uniform(0.75, 1.2)), VEGETATION)


def _pole(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float, side: int
) -> None:
    """A pole carrying a traffic sign, a traffic light, both, or a street lamp."""
    kind = rng.choice(["sign", "light", "both", "lamp"], p=[0.4, 0.3, 0.15, 0.15])
    s = cam.scale(z)
    pw = max(rng.uniform(0.18, 0.32), 2.2 / s)  # at least ~2 px wide
    ph = rng.uniform(3.5, 5.5) if kind != "lamp" else rng.uniform(6.0, 9.0)
    metal = _hsv(rng, (0, 360), (0.0, 0.3), (0.2, 0.7))
    quad = cam.project(
        np.array([x - pw / 2, x + pw / 2, x + pw / 2, x - pw / 2]), np.array([0, 0, ph, ph]), z
    )
    cv.poly(quad, metal, POLE)
    if kind == "lamp":
        arm = rng.uniform(1.0, 2.5) * -side  # towards the road
        a = cam.project(
            np.array([x, x + arm, x + arm, x]), np.array([ph - 0.15, ph, ph + 0.12, ph]), z
        )
        cv.poly(a, metal, POLE)
        head = cam.project(
            np.array([x + arm - 0.3, x + arm + 0.3, x + arm + 0.2, x + arm - 0.2]),
            np.array([ph - 0.05, ph - 0.05, ph - 0.25, ph - 0.25]),
            z,
        )
        cv.poly(head, _shade(metal, 1.3), POLE)
        return
    if kind in ("light", "both"):
        bw, bh = rng.uniform(0.4, 0.55), rng.uniform(1.0, 1.3)
        y0 = ph - bh - rng.uniform(0.0, 0.3)
        body = (
            _hsv(rng, (0, 360), (0.0, 0.2), (0.05, 0.3))
            if rng.random() < 0.8
            else _hsv(rng, (45, 60), (0.7, 0.9), (0.6, 0.9))
        )
        box = cam.project(
            np.array([x - bw / 2, x + bw / 2, x + bw / 2, x - bw / 2]),
            np.array([y0, y0, y0 + bh, y0 + bh]),
            z,
        )
        cv.poly(box, body, LIGHT)
        lit = int(rng.integers(3))
        for i, hue in enumerate((0, 45, 130)):  # red, amber, green from the top
            c = cam.project(x, y0 + bh * (0.8 - 0.3 * i), z)
            on = i == lit
            col = _hsv(rng, hue, 0.8 if on else 0.4, 1.0 if on else 0.25)
            cv.ellipse(c, (bw * 0.32 * s, bw * 0.32 * s), col, LIGHT)
    if kind in ("sign", "both"):
        sz = rng.uniform(0.7, 1.0)
        yc = rng.uniform(2.2, 3.0) if kind == "sign" else rng.uniform(2.0, 2.4)
        xc = x + (rng.uniform(-0.3, 0.3) if rng.random() < 0.7 else -side * sz * 0.6)
        c = cam.project(xc, yc, z)
        face = _hsv(rng, rng.choice([0, 215, 50, 0]), (0.0, 0.9), (0.5, 0.95))
        rim = _hsv(rng, rng.choice([0, 215, 0]), (0.0, 0.9), (0.3, 0.95))
        shape = rng.integers(4)
        r = sz / 2 * s
        if shape == 0:  # round
            cv.ellipse(c, (r, r), rim, SIGN)
            cv.ellipse(c, (r * 0.75, r * 0.75), face, SIGN)
        else:
            n = (3, 4, 8)[shape - 1]
            start = -np.pi / 2 if n == 3 else np.pi / n
            ang = start + np.arange(n) * 2 * np.pi / n
            if n == 3 and rng.random() < 0.5:
                ang = ang + np.pi
            pts = c + r * np.stack([np.cos(ang), np.sin(ang)], -1) * (1.2 if n == 3 else 1.0)
            cv.poly(pts, rim, SIGN)
            cv.poly(c + (pts - c) * 0.72, face, SIGN)


def _person(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float) -> None:
    """A pedestrian seen from the front or back: legs, torso, arms, head."""
    h = rng.uniform(1.55, 1.95)
    s = cam.scale(z)
    skin = _hsv(rng, (15, 35), (0.25, 0.6), (0.3, 0.95))
    shirt, trousers = _any_color(rng), _any_color(rng)
    hair = _hsv(rng, (10, 40), (0.2, 0.7), (0.05, 0.6))
    stride = rng.uniform(0.0, 0.18) * h
    hip_y, sh_y = 0.5 * h, 0.81 * h
    lw = 0.075 * h
    for sgn in (-1, 1):
        foot = x + sgn * stride / 2 + rng.uniform(-0.02, 0.02)
        hip = x + sgn * 0.055 * h
        leg = cam.project(
            np.array([hip - lw, hip + lw, foot + lw * 0.7, foot - lw * 0.7]),
            np.array([hip_y, hip_y, 0.0, 0.0]),
            z,
        )
        cv.poly(leg, _shade(trousers, rng.uniform(0.85, 1.1)), PERSON)
    coat = rng.random() < 0.3
    bottom = hip_y - (0.15 * h if coat else -0.02 * h)
    torso = cam.project(
        np.array([x - 0.12 * h, x + 0.12 * h, x + 0.14 * h, x - 0.14 * h]),
        np.array([bottom, bottom, sh_y, sh_y]),
        z,
    )
    cv.poly(torso, shirt, PERSON)
    for sgn in (-1, 1):
        swing = rng.uniform(-0.08, 0.08) * h
        top = x + sgn * 0.145 * h
        hand = top + sgn * 0.03 * h + swing
        arm = cam.project(
            np.array([top - 0.035 * h, top + 0.035 * h, hand + 0.03 * h, hand - 0.03 * h]),
            np.array([sh_y, sh_y, 0.45 * h, 0.45 * h]),
            z,
        )
        cv.poly(arm, _shade(shirt, 0.9), PERSON)
    neck = cam.project(
        np.array([x - 0.03 * h, x + 0.03 * h, x + 0.03 * h, x - 0.03 * h]),
        np.array([sh_y, sh_y, 0.88 * h, 0.88 * h]),
        z,
    )
    cv.poly(neck, skin, PERSON)
    head = cam.project(x, 0.92 * h, z)
    cv.ellipse(head, (0.06 * h * s, 0.075 * h * s), skin, PERSON)
    if rng.random() < 0.8:
        cv.ellipse(head - np.array([0, 0.03 * h * s]), (0.062 * h * s, 0.05 * h * s), hair, PERSON)


def _car(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float, oncoming: bool
) -> None:
    """A car as a body box and a cabin; the faces the camera sees are shaded differently."""
    w, length = rng.uniform(1.65, 1.95), rng.uniform(3.8, 4.8)
    top, roof = rng.uniform(0.85, 1.05), rng.uniform(1.35, 1.6)
    paint = _any_color(rng)
    x0, x1, z0, z1 = x - w / 2, x + w / 2, z, z + length
    tyre = _hsv(rng, 0, 0, (0.03, 0.15))
    glass = _hsv(rng, (180, 230), (0.05, 0.35), (0.08, 0.4))

    def box(
        xa: float, xb: float, ya: float, yb: float, za: float, zb: float, color: Color, inset: float
    ) -> None:
        # visible faces of an axis-aligned box: back (Z = za), side facing the camera, top
        back = cam.project(np.array([xa, xb, xb, xa]), np.array([ya, ya, yb, yb]), za)
        faces = [(back, 1.0)]
        if xb < 0 or xa > 0:
            xs = xb if xb < 0 else xa
            faces.append(
                (
                    cam.project(xs, np.array([ya, ya, yb, yb]), np.array([za, zb, zb, za])),
                    rng.uniform(0.7, 0.9),
                )
            )
        if cam.h > yb:
            faces.append(
                (
                    cam.project(
                        np.array([xa, xb, xb - inset, xa + inset]), yb, np.array([za, za, zb, zb])
                    ),
                    rng.uniform(1.05, 1.25),
                )
            )
        for pts, k in faces:
            cv.poly(pts, _shade(color, k), CAR)

    # wheels under the body, on the visible side and at the back corners
    for zw in (z0 + 0.75, z1 - 0.8):
        for xw in (x0 + 0.12, x1 - 0.12):
            ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            pts = cam.project(xw, 0.33 + 0.33 * np.sin(ang), zw + 0.33 * np.cos(ang))
            cv.poly(pts, tyre, CAR)
            back = cam.project(
                np.array([xw - 0.12, xw + 0.12, xw + 0.12, xw - 0.12]),
                np.array([0, 0, 0.4, 0.4]),
                zw,
            )
            cv.poly(back, tyre, CAR)
    box(x0, x1, 0.3, top, z0, z1, paint, 0.0)
    cz0, cz1 = z0 + length * rng.uniform(0.15, 0.3), z1 - length * rng.uniform(0.25, 0.4)
    box(x0 + 0.08, x1 - 0.08, top, roof, cz0, cz1, paint, 0.1)
    # rear/front window and lights on the face towards the camera
    win = cam.project(
        np.array([x0 + 0.18, x1 - 0.18, x1 - 0.25, x0 + 0.25]),
        np.array([top + 0.05, top + 0.05, roof - 0.06, roof - 0.06]),
        cz0,
    )
    cv.poly(win, glass, None)
    lamp = (
        _hsv(rng, (40, 60), (0.0, 0.3), (0.8, 1.0))
        if oncoming
        else _hsv(rng, (0, 10), (0.7, 0.95), (0.5, 0.9))
    )
    for xa in (x0 + 0.08, x1 - 0.38):
        q = cam.project(
            np.array([xa, xa + 0.3, xa + 0.3, xa]), np.array([0.62, 0.62, 0.78, 0.78]), z0
        )
        cv.poly(q, lamp, None)
    plate = cam.project(
        np.array([x - 0.25, x + 0.25, x + 0.25, x - 0.25]), np.array([0.4, 0.4, 0.52, 0.52]), z0
    )
    cv.poly(plate, (215.0, 215.0, 205.0), None)


def _ego(cv: _Canvas, rng: np.random.Generator) -> None:
    """The bonnet of the recording car at the bottom (Cityscapes 'ego vehicle', ignored)."""
    h, w = cv.h, cv.w
    top = h * rng.uniform(0.9, 0.96)
    xs = np.linspace(-0.05 * w, 1.05 * w, 16)
    ys = top + (h - top) * 1.6 * ((xs / w - 0.5) ** 2)
    pts = np.concatenate([np.stack([xs, ys], -1), [[1.05 * w, h + 2], [-0.05 * w, h + 2]]])
    cv.poly(pts, _any_color(rng), EGO)


# --------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------

# Per-label texture amplitude (grey levels per unit noise) for fine and coarse noise.
_FINE = np.zeros(256, np.float32)
_COARSE = np.zeros(256, np.float32)
for _lab, _f, _c in (
    (ROAD, 7, 10),
    (SIDEWALK, 6, 8),
    (BUILDING, 4, 12),
    (FENCE, 5, 6),
    (POLE, 3, 4),
    (LIGHT, 3, 3),
    (SIGN, 3, 3),
    (VEGETATION, 22, 26),
    (TERRAIN, 16, 20),
    (SKY, 1.5, 4),
    (PERSON, 5, 6),
    (CAR, 3, 5),
    (EGO, 3, 3),
):
    _FINE[_lab], _COARSE[_lab] = _f, _c


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one image: depends on (seed, split, index) only, not on split sizes."""
    return np.random.default_rng([int(seed), {"train": 0, "val": 1, "test": 2}[split], int(index)])


def generate_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (RGB uint8 (height, width, 3), Cityscapes label ids uint8 (height, width))."""
    if height < 16 or width < 16:
        raise EdgesegError(f"scene size {width}x{height} is too small: at least 16x16")
    h, w = int(height), int(width)
    cv = _Canvas(h, w)
    cam = _Camera(
        f=w * rng.uniform(0.55, 0.8),
        height=rng.uniform(1.6, 2.5),
        xv=w * rng.uniform(0.38, 0.62),
        yh=h * rng.uniform(0.36, 0.48),
    )
    # noise fields shared by sky clouds and textures
    noise_f = rng.random((h, w), dtype=np.float32)  # uniform, unit variance after centring
    noise_f -= 0.5
    noise_f *= 3.46
    small = rng.standard_normal((max(h // 12, 2), max(w // 12, 2)), dtype=np.float32)
    noise_c = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    _sky(cv, rng, cam.yh, noise_c)

    # street geometry (metres, camera at X = 0)
    xl, xr = -rng.uniform(1.5, 5.5), rng.uniform(1.5, 5.5)
    z_end = rng.uniform(60.0, 160.0)
    sw_l, sw_r = _ground(cv, cam, rng, (xl, xr), z_end)
    if rng.random() < 0.8:  # the end of the street: far buildings, or a tree line
        _skyline(cv, cam, rng, z_end + rng.uniform(10, 40))
    else:
        _tree_line(cv, cam, rng, -300, 300, z_end + 50, rng.uniform(6, 14))

    # (depth, painter, arguments after (cv, cam, rng)); painted far to near, facades first
    objects: list[tuple[float, Callable[..., None], tuple[Any, ...]]] = []

    for side, edge, sw in ((-1, xl, sw_l), (1, xr, sw_r)):
        outer = edge + side * sw  # outer edge of the sidewalk
        kind = rng.choice(["buildings", "garden", "park"], p=[0.55, 0.25, 0.2])
        front = outer + side * (rng.uniform(1.5, 5.0) if kind == "garden" else 0.0)
        if kind in ("buildings", "garden"):
            z = rng.uniform(0.5, 3.0)
            while z < z_end:
                zb = min(z + rng.uniform(8.0, 30.0), z_end)
                objects.append((zb + 1000.0, _facade, (front, z, zb, rng.uniform(8.0, 30.0))))
                z = zb
        else:
            for _ in range(int(rng.integers(2, 5))):
                tz = rng.uniform(12.0, z_end)
                objects.append((tz, _tree, (outer + side * rng.uniform(2.0, 12.0), tz)))
            if rng.random() < 0.7:
                hx = outer + side * rng.uniform(12.0, 25.0)
                objects.append((999.0, _hedge, (hx, 3.0, z_end, rng.uniform(4.0, 9.0))))
        if kind in ("garden", "park"):
            # boundary of the plot: a fence or a hedge along the sidewalk
            bx = outer + side * 0.15
            z0, z1 = rng.uniform(1.0, 6.0), rng.uniform(25.0, z_end)
            if rng.random() < 0.55:
                objects.append((z1, _fence, (bx, z0, z1, rng.uniform(1.0, 1.9))))
            else:
                objects.append((z1, _hedge, (bx, z0, z1, rng.uniform(1.0, 2.2))))
        elif rng.random() < 0.35:  # a fence between sidewalk and road side of a building row
            bx = edge + side * rng.uniform(0.5, 1.0)
            z0 = rng.uniform(3.0, 20.0)
            z1 = z0 + rng.uniform(8.0, 25.0)
            objects.append((z1, _fence, (bx, z0, z1, rng.uniform(0.9, 1.3))))
        # street furniture, trees and pedestrians on the sidewalk
        for _ in range(int(rng.integers(1, 4))):
            pz = rng.uniform(5.0, 35.0)
            objects.append((pz, _pole, (edge + side * rng.uniform(0.4, 0.9), pz, side)))
        for _ in range(int(rng.integers(0, 4))):
            tz = rng.uniform(6.0, 50.0)
            objects.append((tz, _tree, (edge + side * rng.uniform(1.0, max(1.2, sw - 0.5)), tz)))
        for _ in range(int(rng.integers(0, 4))):
            pz = rng.uniform(5.0, 30.0)
            objects.append((pz, _person, (edge + side * rng.uniform(0.6, max(0.7, sw - 0.4)), pz)))

    # traffic on the road, and the occasional pedestrian crossing it
    lanes = np.arange(xl + 1.6, xr - 1.0, rng.uniform(2.8, 3.4))
    busy = int(rng.integers(len(lanes)))  # at least one car in this lane
    for k, cx in enumerate(lanes + rng.uniform(-0.3, 0.3, len(lanes))):
        cz = rng.uniform(4.0, 30.0)
        oncoming = bool(cx < 0 and rng.random() < 0.5)
        for _ in range(int(rng.integers(1 if k == busy else 0, 4))):
            objects.append((cz, _car, (cx, cz, oncoming)))
            cz += rng.uniform(6.0, 25.0)
    if rng.random() < 0.3:
        pz = rng.uniform(6.0, 20.0)
        objects.append((pz, _person, (rng.uniform(xl + 0.5, xr - 0.5), pz)))

    for _, paint, args in sorted(objects, key=lambda t: -t[0]):
        paint(cv, cam, rng, *args)
    if rng.random() < 0.4:
        _ego(cv, rng)

    return _finish(cv, cam, rng, noise_f, noise_c)


def _finish(
    cv: _Canvas, cam: _Camera, rng: np.random.Generator, noise_f: np.ndarray, noise_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Class textures, cast shadow, exposure, white balance, gamma, sensor noise -> uint8."""
    h, w = cv.h, cv.w
    lab = cv.lab
    k_f, k_c = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
    tex = _FINE[lab] * (k_f * noise_f) + _COARSE[lab] * (k_c * noise_c)
    img = cv.rgb
    img += tex[..., None]
    if rng.random() < 0.5:  # shadow of the buildings on one side, over everything below it
        gain = np.ones((h, w), np.float32)
        x0 = rng.uniform(0.0, 0.6) * w
        y0 = cam.yh + rng.uniform(0.05, 0.3) * (h - cam.yh)
        pts = np.array(
            [
                [x0, y0],
                [w * 1.2, y0 + rng.uniform(-0.1, 0.2) * h],
                [w * 1.2, h * 1.2],
                [x0 + rng.uniform(-0.5, 0.2) * w, h * 1.2],
            ]
        )
        if rng.random() < 0.5:
            pts[:, 0] = w - pts[:, 0]
        cv2.fillPoly(gain, [np.round(pts).astype(np.int32)], float(rng.uniform(0.45, 0.75)))
        img *= cv2.blur(gain, (5, 5))[..., None]
    img *= rng.uniform(0.85, 1.15, 3).astype(np.float32) * np.float32(rng.uniform(0.55, 1.3))
    np.clip(img, 0, 255, out=img)
    gamma = rng.uniform(0.8, 1.25)
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
    out = cv2.LUT(img.astype(np.uint8), lut)
    # sensor noise: difference of two uniform byte fields (triangular, zero mean), saturating
    amp = int(rng.integers(3, 10))
    to_amp = (np.arange(256) * (amp + 1) // 256).astype(np.uint8)
    up = cv2.LUT(np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3), to_amp)
    down = cv2.LUT(np.frombuffer(rng.bytes(h * w * 3), np.uint8).reshape(h, w, 3), to_amp)
    out = cv2.subtract(cv2.add(out, up), down)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out, lab.copy()


# --------------------------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------------------------


def write_synthetic_cityscapes(
    out: str | Path,
    train: int = 200,
    val: int = 50,
    height: int = 256,
    width: int = 512,
    seed: int = 0,
    progress_cb: Callable[[str, int, int], None] | None = None,
    *,
    overwrite: bool = False,
    color: bool = True,
) -> dict[str, Any]:
    """Write a synthetic dataset in the exact Cityscapes layout and naming under ``out``.

    For each image: ``leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png`` and
    ``gtFine/{split}/{city}/..._gtFine_labelIds.png``, ``..._gtFine_labelTrainIds.png`` and (with
    ``color``) ``..._gtFine_color.png``. Image ``i`` of a split depends only on ``(seed, split,
    i)``. The dataset is written to a temporary sibling directory and renamed into place, so
    ``out`` is never half-written. ``out`` must not exist or be empty; with ``overwrite`` it may
    be an earlier synthetic dataset (it carries ``edgeseg_synthetic.json``), which is replaced.

    ``progress_cb(split, done, total)`` is called after each image. Returns a summary: counts,
    size, seed, seconds, ms per scene and the fraction of pixels of each train class.
    """
    out = Path(out)
    if train < 1 or val < 0:
        raise EdgesegError(f"need train >= 1 and val >= 0 images, got train={train} val={val}")
    if height < 16 or width < 16:
        raise EdgesegError(f"image size {width}x{height} is too small: at least 16x16")
    if out.exists() and not out.is_dir():
        raise EdgesegError(f"output exists and is not a directory: {out}")
    replace = out.is_dir() and any(out.iterdir())
    if replace and not overwrite:
        raise EdgesegError(f"output directory is not empty: {out} (use --overwrite to replace it)")
    if replace and not (out / MARKER).is_file():
        raise EdgesegError(
            f"refusing to replace {out}: not a synthetic dataset written by edgeseg (no {MARKER})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # honours the umask, unlike mkdtemp's 0700
    t0 = time.perf_counter()
    gen_s = 0.0
    hist = np.zeros(256, np.int64)
    total = train + val
    done = 0
    try:
        for split, n in (("train", train), ("val", val)):
            cities = SYNTH_CITIES[split]
            for i in range(n):
                city = cities[min(i * len(cities) // max(n, 1), len(cities) - 1)]
                stem = f"{city}_{i:06d}_{_FRAME:06d}"
                t = time.perf_counter()
                rgb, ids = generate_scene(scene_rng(seed, split, i), height, width)
                gen_s += time.perf_counter() - t
                train_ids = ID_TO_TRAIN_ID[ids]
                hist += np.bincount(train_ids.ravel(), minlength=256)
                img_dir = tmp / "leftImg8bit" / split / city
                gt_dir = tmp / "gtFine" / split / city
                img_dir.mkdir(parents=True, exist_ok=True)
                gt_dir.mkdir(parents=True, exist_ok=True)
                _imwrite(img_dir / f"{stem}_leftImg8bit.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                _imwrite(gt_dir / f"{stem}_gtFine_labelIds.png", ids)
                _imwrite(gt_dir / f"{stem}_gtFine_labelTrainIds.png", train_ids)
                if color:
                    bgr = cv2.cvtColor(LABEL_ID_COLORS[ids], cv2.COLOR_RGB2BGR)
                    _imwrite(gt_dir / f"{stem}_gtFine_color.png", bgr)
                done += 1
                if progress_cb is not None:
                    progress_cb(split, done, total)
        seconds = time.perf_counter() - t0
        counted = hist[:NUM_CLASSES]
        summary: dict[str, Any] = {
            "out": str(out.resolve()),
            "splits": {"train": train, "val": val},
            "cities": {k: list(v) for k, v in SYNTH_CITIES.items() if (train, val)[k == "val"] > 0},
            "height": height,
            "width": width,
            "seed": seed,
            "seconds": round(seconds, 3),
            "ms_per_scene": round(1000.0 * gen_s / total, 2),
            "class_fraction": {
                name: round(float(c) / max(int(hist.sum()), 1), 5)
                for name, c in zip(CLASSES, counted)
                if c > 0
            },
            "ignored_fraction": round(float(hist[255]) / max(int(hist.sum()), 1), 5),
        }
        meta = {k: summary[k] for k in ("splits", "height", "width", "seed", "cities")}
        (tmp / MARKER).write_text(
            json.dumps({"generator": "edgeseg.data.synthetic", **meta}, indent=2)
        )
        if replace:
            old = tmp.with_suffix(".old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.is_dir():
                out.rmdir()  # empty
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _imwrite(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise EdgesegError(f"cannot write {path}")

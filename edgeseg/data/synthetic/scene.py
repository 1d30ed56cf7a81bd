"""One street scene: layout of the elements, per-label texture, lighting and camera noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edgeseg.data.synthetic.canvas import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    EGO,
    FENCE,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRAIN,
    TRUCK,
    VEGETATION,
    WALL,
    Camera,
    Canvas,
)
from edgeseg.data.synthetic.painters import (
    draw_facade,
    draw_fence,
    draw_ground,
    draw_hedge,
    draw_person,
    draw_pole,
    draw_sky,
    draw_skyline,
    draw_tree,
    draw_tree_line,
    draw_wall,
)
from edgeseg.data.synthetic.traffic import (
    draw_bus,
    draw_rails,
    draw_tram,
    draw_truck,
    draw_two_wheeler,
)
from edgeseg.data.synthetic.vehicles import draw_car, draw_ego
from edgeseg.errors import EdgesegError

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
    (WALL, 5, 9),
    (RIDER, 5, 6),
    (TRUCK, 3, 5),
    (BUS, 3, 5),
    (TRAIN, 3, 5),
    (MOTORCYCLE, 3, 4),
    (BICYCLE, 2, 3),
):
    _FINE[_lab], _COARSE[_lab] = _f, _c


class _Road:
    """Footprints (x0, x1, z0, z1) of the vehicles on the road, so that none overlap."""

    def __init__(self) -> None:
        self.taken: list[tuple[float, float, float, float]] = []

    def take(self, x: float, half: float, z0: float, z1: float) -> None:
        self.taken.append((x - half, x + half, z0 - 0.5, z1 + 0.5))

    def free(self, x: float, half: float, z0: float, z1: float) -> bool:
        a0, a1, b0, b1 = x - half, x + half, z0 - 0.5, z1 + 0.5
        return all(a1 <= xa or a0 >= xb or b1 <= za or b0 >= zb for xa, xb, za, zb in self.taken)

    def place(
        self, rng: np.random.Generator, x: float, half: float, length: float, lo: float, hi: float
    ) -> float | None:
        """A free depth in [lo, hi] for a vehicle of this half width and length, or None."""
        for _ in range(6):
            z = float(rng.uniform(lo, hi))
            if self.free(x, half, z, z + length):
                self.take(x, half, z, z + length)
                return z
        return None


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one image: depends on (seed, split, index) only, not on split sizes."""
    return np.random.default_rng([int(seed), {"train": 0, "val": 1, "test": 2}[split], int(index)])


def generate_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: RGB uint8 (height, width, 3) and Cityscapes label ids uint8 (height,
    width)."""
    if height < 16 or width < 16:
        raise EdgesegError(f"scene size {width}x{height} is too small: at least 16x16")
    h, w = int(height), int(width)
    cv = Canvas(h, w)
    cam = Camera(
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

    draw_sky(cv, rng, cam.yh, noise_c)

    # street geometry (metres, camera at X = 0)
    xl, xr = -rng.uniform(1.5, 5.5), rng.uniform(1.5, 5.5)
    z_end = rng.uniform(60.0, 160.0)
    sw_l, sw_r = draw_ground(cv, cam, rng, (xl, xr), z_end)
    if rng.random() < 0.8:  # the end of the street: far buildings, or a tree line
        draw_skyline(cv, cam, rng, z_end + rng.uniform(10, 40))
    else:
        draw_tree_line(cv, cam, rng, -300, 300, z_end + 50, rng.uniform(6, 14))

    # (depth, painter, arguments after (cv, cam, rng)); painted far to near, facades first
    objects: list[tuple[float, Callable[..., None], tuple[Any, ...]]] = []

    for side, edge, sw in ((-1, xl, sw_l), (1, xr, sw_r)):
        outer = edge + side * sw  # outer edge of the sidewalk
        kind = rng.choice(["buildings", "garden", "park"], p=[0.55, 0.25, 0.2])
        front = outer + side * (rng.uniform(1.5, 5.0) if kind == "garden" else 0.0)
        if kind in ("buildings", "garden"):
            z = rng.uniform(0.5, 3.0)
            while z < z_end:
                if rng.random() < 0.1:  # a yard wall between two buildings, a tree behind it
                    zb = min(z + rng.uniform(4.0, 12.0), z_end)
                    wall = (front, z, zb, rng.uniform(1.8, 3.2), side)
                    objects.append((zb + 1000.0, draw_wall, wall))
                    if rng.random() < 0.6:
                        tz = (z + zb) / 2
                        tree = (front + side * rng.uniform(2.0, 5.0), tz)
                        objects.append((zb + 1000.5, draw_tree, tree))
                    z = zb
                    continue
                zb = min(z + rng.uniform(8.0, 30.0), z_end)
                objects.append((zb + 1000.0, draw_facade, (front, z, zb, rng.uniform(8.0, 30.0))))
                z = zb
        else:
            for _ in range(int(rng.integers(2, 5))):
                tz = rng.uniform(12.0, z_end)
                objects.append((tz, draw_tree, (outer + side * rng.uniform(2.0, 12.0), tz)))
            if rng.random() < 0.7:
                hx = outer + side * rng.uniform(12.0, 25.0)
                objects.append((999.0, draw_hedge, (hx, 3.0, z_end, rng.uniform(4.0, 9.0))))
        if kind in ("garden", "park"):
            # boundary of the plot: a fence or a hedge along the sidewalk
            bx = outer + side * 0.15
            z0, z1 = rng.uniform(1.0, 6.0), rng.uniform(25.0, z_end)
            u = rng.random()
            if u < 0.5:
                objects.append((z1, draw_fence, (bx, z0, z1, rng.uniform(1.0, 1.9))))
            elif u < 0.72:
                objects.append((z1, draw_wall, (bx, z0, z1, rng.uniform(0.6, 1.8), side)))
            else:
                objects.append((z1, draw_hedge, (bx, z0, z1, rng.uniform(1.0, 2.2))))
        elif rng.random() < 0.35:  # a fence between sidewalk and road side of a building row
            bx = edge + side * rng.uniform(0.5, 1.0)
            z0 = rng.uniform(3.0, 20.0)
            z1 = z0 + rng.uniform(8.0, 25.0)
            objects.append((z1, draw_fence, (bx, z0, z1, rng.uniform(0.9, 1.3))))
        # street furniture, trees and pedestrians on the sidewalk
        for _ in range(int(rng.integers(1, 4))):
            pz = rng.uniform(5.0, 35.0)
            objects.append((pz, draw_pole, (edge + side * rng.uniform(0.4, 0.9), pz, side)))
        for _ in range(int(rng.integers(0, 4))):
            tz = rng.uniform(6.0, 50.0)
            x = edge + side * rng.uniform(1.0, max(1.2, sw - 0.5))
            objects.append((tz, draw_tree, (x, tz)))
        for _ in range(int(rng.integers(0, 4))):
            pz = rng.uniform(5.0, 30.0)
            x = edge + side * rng.uniform(0.6, max(0.7, sw - 0.4))
            objects.append((pz, draw_person, (x, pz)))
        if rng.random() < 0.3:  # parked bicycles (now and then a motorcycle) side by side
            bz = rng.uniform(5.0, 25.0)
            x = edge + side * rng.uniform(0.7, max(0.8, sw - 0.6))
            for k in range(int(rng.integers(1, 4))):
                head = side * np.pi / 2 + rng.uniform(-0.4, 0.4)
                motor = bool(rng.random() < 0.15)
                objects.append((bz, draw_two_wheeler, (x, bz, head, motor, False)))
                bz += rng.uniform(0.6, 0.9)

    # traffic on the road, and the occasional pedestrian crossing it
    lanes = np.arange(xl + 1.6, xr - 1.0, rng.uniform(2.8, 3.4))
    busy = int(rng.integers(len(lanes)))  # at least one car in this lane
    tram = int(rng.integers(len(lanes)))  # a tram line down this lane if it is not the busy one
    if tram == busy or rng.random() < 0.45:
        tram = -1
    road = _Road()
    ways: list[tuple[float, bool]] = []  # (centre, oncoming) of each lane
    for k, cx in enumerate(lanes + rng.uniform(-0.3, 0.3, len(lanes))):
        cz = rng.uniform(4.0, 30.0)
        oncoming = bool(cx < 0 and rng.random() < 0.5)
        ways.append((float(cx), oncoming))
        if k == tram:
            continue
        for _ in range(int(rng.integers(1 if k == busy else 0, 4))):
            objects.append((cz, draw_car, (cx, cz, oncoming)))
            road.take(cx, 1.1, cz, cz + 4.8)
            cz += rng.uniform(6.0, 25.0)
    if tram >= 0:
        draw_rails(cv, cam, rng, float(lanes[tram]), z_end)
        if rng.random() < 0.85:
            tram_z = road.place(rng, float(lanes[tram]), 1.4, 36.0, 8.0, 40.0)
            if tram_z is not None:
                objects.append((tram_z, draw_tram, (float(lanes[tram]), tram_z, ways[tram][1])))
    motor_ways = [w for k, w in enumerate(ways) if k != tram]
    for paint, p, length in ((draw_bus, 0.25, 12.5), (draw_truck, 0.3, 10.8)):
        if motor_ways and rng.random() < p:
            cx, oncoming = motor_ways[int(rng.integers(len(motor_ways)))]
            vz = road.place(rng, cx, 1.35, length, 8.0, 50.0)
            if vz is not None:
                objects.append((vz, paint, (cx, vz, oncoming)))
    if motor_ways and rng.random() < 0.3:  # a motorcyclist in a lane
        cx, oncoming = motor_ways[int(rng.integers(len(motor_ways)))]
        mx = cx + rng.uniform(-0.5, 0.5)
        mz = road.place(rng, mx, 0.5, 2.4, 5.0, 35.0)
        if mz is not None:
            head = (np.pi if oncoming else 0.0) + rng.uniform(-0.1, 0.1)
            objects.append((mz + 1.2, draw_two_wheeler, (mx, mz + 1.2, head, True, True)))
    if rng.random() < 0.5:  # a cyclist by the kerb, away on the right, towards us on the left
        right = bool(rng.random() < 0.65)
        bx = xr - rng.uniform(0.5, 0.9) if right else xl + rng.uniform(0.5, 0.9)
        kerb_z = road.place(rng, bx, 0.4, 1.8, 5.0, 30.0)
        if kerb_z is not None:
            head = (0.0 if right else np.pi) + rng.uniform(-0.12, 0.12)
            objects.append((kerb_z + 0.9, draw_two_wheeler, (bx, kerb_z + 0.9, head, False, True)))
    if rng.random() < 0.12:  # a cyclist crossing the street
        bx = rng.uniform(xl + 1.0, xr - 1.0)
        cross_z = road.place(rng, bx, 1.0, 0.8, 6.0, 20.0)
        if cross_z is not None:
            head = float(rng.choice([-1.0, 1.0])) * np.pi / 2 + rng.uniform(-0.3, 0.3)
            objects.append((cross_z + 0.4, draw_two_wheeler, (bx, cross_z + 0.4, head, False, True)))
    if rng.random() < 0.3:
        pz = rng.uniform(6.0, 20.0)
        objects.append((pz, draw_person, (rng.uniform(xl + 0.5, xr - 0.5), pz)))

    for _, paint, args in sorted(objects, key=lambda t: -t[0]):
        paint(cv, cam, rng, *args)
    if rng.random() < 0.4:
        draw_ego(cv, rng)

    return _finish(cv, cam, rng, noise_f, noise_c)


def _finish(
    cv: Canvas, cam: Camera, rng: np.random.Generator, noise_f: np.ndarray, noise_c: np.ndarray
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

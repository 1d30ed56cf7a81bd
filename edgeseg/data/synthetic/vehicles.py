"""Cars as boxes with wheels, and the ego vehicle's bonnet; :func:`box_faces` and :func:`wheel`
are shared with the buses, trucks and trams of traffic.py.
"""

from __future__ import annotations

import numpy as np

from edgeseg.data.synthetic.canvas import (
    CAR,
    EGO,
    Camera,
    Canvas,
    Color,
    any_color,
    hsv_color,
    shade,
)


def box_faces(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float, float, float],
    color: Color,
    label: int,
    inset: float = 0.0,
) -> None:
    """The faces of an axis-aligned box (xa, xb, ya, yb, za, zb) the camera sees: the face
    towards it (Z = za), the side facing it and the top when the camera is higher; each side
    shaded its own way. ``inset`` narrows the top's far edge (a cabin's sloping roof)."""
    xa, xb, ya, yb, za, zb = bounds
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
        cv.poly(pts, shade(color, k), label)


def wheel(
    cv: Canvas, cam: Camera, x: float, z: float, r: float, half: float, tyre: Color, label: int
) -> None:
    """A road wheel in the plane X = x (its side) and its tread facing the camera at Z = z."""
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    cv.poly(cam.project(x, r + r * np.sin(ang), z + r * np.cos(ang)), tyre, label)
    tread = cam.project(
        np.array([x - half, x + half, x + half, x - half]), np.array([0, 0, r + 0.07, r + 0.07]), z
    )
    cv.poly(tread, tyre, label)


def tyre_color(rng: np.random.Generator) -> Color:
    """Near-black rubber, a little lighter or darker per vehicle."""
    return hsv_color(rng, 0, 0, (0.03, 0.15))


def wheels(cv: Canvas, cam: Camera, xs: tuple[float, ...], zs: tuple[float, ...], r: float,
           half: float, tyre: Color, label: int) -> None:
    """A wheel at every (x, z) of ``xs`` x ``zs`` (axle positions along the vehicle)."""
    for z in zs:
        for x in xs:
            wheel(cv, cam, x, z, r, half, tyre, label)


def draw_car(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float, oncoming: bool
) -> None:
    """A car as a body box and a cabin; the faces the camera sees are shaded differently."""
    w, length = rng.uniform(1.65, 1.95), rng.uniform(3.8, 4.8)
    top, roof = rng.uniform(0.85, 1.05), rng.uniform(1.35, 1.6)
    paint = any_color(rng)
    x0, x1, z0, z1 = x - w / 2, x + w / 2, z, z + length
    tyre = tyre_color(rng)
    glass = hsv_color(rng, (180, 230), (0.05, 0.35), (0.08, 0.4))

    # wheels under the body, on the visible side and at the back corners
    wheels(cv, cam, (x0 + 0.12, x1 - 0.12), (z0 + 0.75, z1 - 0.8), 0.33, 0.12, tyre, CAR)
    box_faces(cv, cam, rng, (x0, x1, 0.3, top, z0, z1), paint, CAR)
    cz0, cz1 = z0 + length * rng.uniform(0.15, 0.3), z1 - length * rng.uniform(0.25, 0.4)
    box_faces(cv, cam, rng, (x0 + 0.08, x1 - 0.08, top, roof, cz0, cz1), paint, CAR, 0.1)
    # rear/front window and lights on the face towards the camera
    win = cam.project(
        np.array([x0 + 0.18, x1 - 0.18, x1 - 0.25, x0 + 0.25]),
        np.array([top + 0.05, top + 0.05, roof - 0.06, roof - 0.06]),
        cz0,
    )
    cv.poly(win, glass, None)
    lamp = (
        hsv_color(rng, (40, 60), (0.0, 0.3), (0.8, 1.0))
        if oncoming
        else hsv_color(rng, (0, 10), (0.7, 0.95), (0.5, 0.9))
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


def draw_ego(cv: Canvas, rng: np.random.Generator) -> None:
    """The bonnet of the recording car at the bottom (Cityscapes 'ego vehicle', ignored)."""
    h, w = cv.h, cv.w
    top = h * rng.uniform(0.9, 0.96)
    xs = np.linspace(-0.05 * w, 1.05 * w, 16)
    ys = top + (h - top) * 1.6 * ((xs / w - 0.5) ** 2)
    pts = np.concatenate([np.stack([xs, ys], -1), [[1.05 * w, h + 2], [-0.05 * w, h + 2]]])
    cv.poly(pts, any_color(rng), EGO)

"""The other road users: buses, trucks, a tram on its rails, bicycles and motorcycles with
their riders (Cityscapes labels the person on a two-wheeler 'rider' and the vehicle below).

Buses, trucks and trams drive along the street (axis-aligned boxes like the cars); a
two-wheeler has a heading, so the same model is seen from behind (a thin wheel and the
handlebar under the rider's back) or from the side (two wheels and the frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg.data.synthetic.canvas import (
    BICYCLE,
    BUS,
    MOTORCYCLE,
    RIDER,
    ROAD,
    TRAIN,
    TRUCK,
    Camera,
    Canvas,
    Color,
    any_color,
    hsv_color,
    shade,
)
from edgeseg.data.synthetic.vehicles import box_faces, tyre_color, wheels

GAUGE = 1.435  # standard-gauge tram rails (metres between rail heads)


def _vivid(rng: np.random.Generator) -> Color:
    """Livery of public transport: mostly a strong colour, sometimes white or grey."""
    if rng.random() < 0.65:
        return hsv_color(rng, (0, 360), (0.45, 0.9), (0.45, 0.9))
    return any_color(rng)


def _quad_x(cam: Camera, xa: float, xb: float, ya: float, yb: float, z: float) -> np.ndarray:
    """A rectangle in the plane Z = z (a face towards the camera)."""
    return cam.project(np.array([xa, xb, xb, xa]), np.array([ya, ya, yb, yb]), z)


def _side_panes(
    cv: Canvas,
    cam: Camera,
    xs: float,
    ya: float,
    yb: float,
    za: float,
    zb: float,
    pane: float,
    color: Color,
) -> None:
    """A row of windows along a side face X = xs (image only: glass belongs to the vehicle)."""
    z = np.arange(za, zb - pane, pane + 0.18)
    if len(z):
        quad_z = np.stack([z, z + pane, z + pane, z], -1)
        quad_y = np.broadcast_to(np.array([ya, ya, yb, yb]), quad_z.shape)
        cv.poly(cam.project(np.full_like(quad_z, xs), quad_y, quad_z), color, None)


def _visible_side(cam: Camera, x0: float, x1: float) -> float | None:
    return x1 if x1 < 0 else (x0 if x0 > 0 else None)


def _lamps(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x0: float,
    x1: float,
    y: float,
    z: float,
    oncoming: bool,
) -> None:
    lamp = (
        hsv_color(rng, (40, 60), (0.0, 0.3), (0.8, 1.0))
        if oncoming
        else hsv_color(rng, (0, 10), (0.7, 0.95), (0.5, 0.9))
    )
    for xa in (x0 + 0.1, x1 - 0.4):
        cv.poly(_quad_x(cam, xa, xa + 0.3, y, y + 0.2, z), lamp, None)


def draw_bus(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float, oncoming: bool
) -> None:
    """A city bus: one tall box with a band of side windows and a windscreen or rear window."""
    w, length, h = rng.uniform(2.45, 2.55), rng.uniform(10.5, 12.5), rng.uniform(2.9, 3.3)
    x0, x1, z0, z1 = x - w / 2, x + w / 2, z, z + length
    paint = _vivid(rng)
    tyre = tyre_color(rng)
    glass = hsv_color(rng, (180, 230), (0.05, 0.35), (0.05, 0.35))
    wheels(cv, cam, (x0 + 0.2, x1 - 0.2), (z0 + 2.8, z1 - 2.6), 0.5, 0.15, tyre, BUS)
    box_faces(cv, cam, rng, (x0, x1, 0.3, h, z0, z1), paint, BUS)
    xs = _visible_side(cam, x0, x1)
    if xs is not None:
        _side_panes(cv, cam, xs, 1.15, h - 0.35, z0 + 0.6, z1 - 0.4, rng.uniform(1.1, 1.6), glass)
        skirt = cam.project(xs, np.array([0.3, 0.3, 0.7, 0.7]), np.array([z0, z1, z1, z0]))
        cv.poly(skirt, shade(paint, rng.uniform(0.4, 0.7)), None)
    if oncoming:  # windscreen and destination display
        cv.poly(_quad_x(cam, x0 + 0.12, x1 - 0.12, 1.0, h - 0.45, z0), glass, None)
        sign = hsv_color(rng, (30, 60), (0.6, 1.0), (0.7, 1.0))
        cv.poly(_quad_x(cam, x0 + 0.3, x1 - 0.3, h - 0.38, h - 0.1, z0), shade(glass, 0.5), None)
        cv.poly(_quad_x(cam, x0 + 0.5, x0 + 0.5 + w * 0.5, h - 0.33, h - 0.15, z0), sign, None)
    else:
        cv.poly(_quad_x(cam, x0 + 0.3, x1 - 0.3, 1.7, h - 0.5, z0), glass, None)
    _lamps(cv, cam, rng, x0, x1, 0.7, z0, oncoming)


def draw_truck(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float, oncoming: bool
) -> None:
    """A lorry: a cab and a taller cargo box behind it, painted far part first."""
    wc, lc, hc = rng.uniform(2.3, 2.45), rng.uniform(1.8, 2.4), rng.uniform(2.5, 3.0)
    wb, lb, hb = rng.uniform(2.45, 2.55), rng.uniform(4.5, 8.0), rng.uniform(3.0, 3.8)
    cab_paint = any_color(rng)
    box_paint = (
        hsv_color(rng, (0, 360), (0.0, 0.08), (0.6, 0.95)) if rng.random() < 0.5 else any_color(rng)
    )
    tyre = tyre_color(rng)
    glass = hsv_color(rng, (180, 230), (0.05, 0.35), (0.08, 0.4))
    if oncoming:
        cab_z, box_z = z, z + lc + 0.3
    else:
        box_z, cab_z = z, z + lb + 0.3
    wheels(cv, cam, (x - wb / 2 + 0.2, x + wb / 2 - 0.2),
           (cab_z + lc * 0.5, box_z + lb * 0.25, box_z + lb * 0.75), 0.5, 0.15, tyre, TRUCK)
    cab = (x - wc / 2, x + wc / 2, 0.45, hc, cab_z, cab_z + lc)
    cargo = (x - wb / 2, x + wb / 2, 0.9, hb, box_z, box_z + lb)
    for bounds, paint in sorted(((cab, cab_paint), (cargo, box_paint)), key=lambda t: -t[0][4]):
        box_faces(cv, cam, rng, bounds, paint, TRUCK)
    x0, x1 = x - wb / 2, x + wb / 2
    if oncoming:  # the cab's windscreen and grille
        cv.poly(_quad_x(cam, x0 + 0.2, x1 - 0.2, 1.6, hc - 0.2, z), glass, None)
        cv.poly(_quad_x(cam, x0 + 0.4, x1 - 0.4, 0.7, 1.35, z), shade(cab_paint, 0.5), None)
        _lamps(cv, cam, rng, x0 + 0.05, x1 - 0.05, 0.6, z, oncoming)
    else:  # rear doors of the cargo box, underrun bar, lamps
        door = shade(box_paint, rng.uniform(0.7, 0.85))
        xm = np.array([x0 + 0.1, x, x1 - 0.1])
        cv.lines(cam.project(xm, 0.95, z), cam.project(xm, hb - 0.1, z), door, 1)
        cv.poly(_quad_x(cam, x0 + 0.1, x1 - 0.1, 0.45, 0.6, z), tyre, TRUCK)
        _lamps(cv, cam, rng, x0, x1, 0.95, z, oncoming)


def draw_rails(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, zfar: float) -> None:
    """Grooved tram rails set into the road (Cityscapes labels them road)."""
    steel = hsv_color(rng, (0, 360), (0.0, 0.08), (0.45, 0.8))
    groove = hsv_color(rng, 0, 0, (0.03, 0.12))
    for xr in (x - GAUGE / 2, x + GAUGE / 2):
        for xa, xb, col in ((xr - 0.04, xr + 0.03, groove), (xr + 0.03, xr + 0.08, steel)):
            strip = cam.project(np.array([xa, xb, xb, xa]), 0.0, np.array([0.8, 0.8, zfar, zfar]))
            cv.poly(strip, col, ROAD)


def draw_tram(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float, oncoming: bool
) -> None:
    """A low-floor tram (Cityscapes 'train') of 2-4 sections with a pantograph on the roof."""
    w, h = rng.uniform(2.3, 2.65), rng.uniform(3.3, 3.6)
    sections = rng.uniform(6.5, 9.0, int(rng.integers(2, 5)))
    x0, x1, z0 = x - w / 2, x + w / 2, z
    z1 = z0 + float(sections.sum())
    paint, trim = _vivid(rng), _vivid(rng)
    glass = hsv_color(rng, (180, 230), (0.05, 0.3), (0.05, 0.3))
    box_faces(cv, cam, rng, (x0, x1, 0.2, h, z0, z1), paint, TRAIN)
    joints = z0 + np.cumsum(sections)[:-1]
    xs = _visible_side(cam, x0, x1)
    if xs is not None:
        _side_panes(cv, cam, xs, 1.0, 2.45, z0 + 1.2, z1 - 0.8, rng.uniform(1.0, 1.8), glass)
        skirt = cam.project(xs, np.array([0.2, 0.2, 0.65, 0.65]), np.array([z0, z1, z1, z0]))
        cv.poly(skirt, trim, None)
        for zj in joints:  # articulation bellows
            bellows = cam.project(
                xs, np.array([0.2, 0.2, h, h]), np.array([zj - 0.2, zj + 0.2, zj + 0.2, zj - 0.2])
            )
            cv.poly(bellows, shade(paint, 0.35), None)
    cv.poly(_quad_x(cam, x0 + 0.15, x1 - 0.15, 1.1, h - 0.55, z0), glass, None)  # cab window
    cv.poly(_quad_x(cam, x0, x1, 0.2, 0.65, z0), trim, None)
    display = hsv_color(rng, (30, 60), (0.6, 1.0), (0.7, 1.0))
    cv.poly(_quad_x(cam, x0 + 0.4, x1 - 0.4, h - 0.45, h - 0.2, z0), display, None)
    _lamps(cv, cam, rng, x0, x1, 0.8, z0, oncoming)
    # pantograph on the roof: a folded arm and the collector bar, thin lines
    zp = z0 + float(sections[0]) * rng.uniform(0.3, 0.7)
    rise = rng.uniform(0.8, 1.3)
    arm = np.stack(
        [
            cam.project(
                x,
                np.array([h, h + rise * 0.55, h + rise * 0.55]),
                np.array([zp - 0.8, zp + 0.1, zp + 0.1]),
            ),
            cam.project(
                x,
                np.array([h + rise * 0.55, h + rise, h]),
                np.array([zp + 0.1, zp - 0.3, zp + 0.7]),
            ),
        ],
        1,
    )
    t = max(1, round(0.05 * cam.scale(zp)))
    metal = hsv_color(rng, (0, 360), (0.0, 0.1), (0.1, 0.35))
    cv.strokes(arm[:, 0], arm[:, 1], metal, TRAIN, t)
    cv.strokes(
        cam.project(x - 0.8, h + rise, zp - 0.3)[None],
        cam.project(x + 0.8, h + rise, zp - 0.3)[None],
        metal,
        TRAIN,
        t,
    )


def draw_two_wheeler(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x: float,
    z: float,
    heading: float,
    motor: bool,
    ridden: bool,
) -> None:
    """A bicycle or a motorcycle at (x, z) heading ``heading`` radians from +Z (0: away from
    the camera, pi/2: to the right), with a rider sitting on it when ``ridden``."""
    d = np.array([np.sin(heading), 0.0, np.cos(heading)])  # forward
    p = np.array([np.cos(heading), 0.0, -np.sin(heading)])  # to the vehicle's right
    c = np.array([x, 0.0, z])
    s = cam.scale(z)
    label = MOTORCYCLE if motor else BICYCLE

    def at(along: Any, up: Any, right: Any = 0.0) -> np.ndarray:
        """Points in the vehicle's frame (scalars or arrays) -> pixels, in one projection."""
        along, right = np.asarray(along), np.asarray(right)
        return cam.project(x + along * d[0] + right * p[0], up, z + along * d[2] + right * p[2])

    tyre = tyre_color(rng)
    frame = any_color(rng)
    r = rng.uniform(0.3, 0.34)
    half_base = rng.uniform(0.65, 0.75) if motor else rng.uniform(0.5, 0.55)
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    tube = max(1, round((0.09 if motor else 0.04) * s))
    for a0 in (-half_base, half_base):  # wheels in the vehicle's vertical plane
        rim = at(a0 + r * np.cos(ang), r + r * np.sin(ang))
        cv.ring(rim, tyre, label, max(1, round((0.12 if motor else 0.05) * s)))
    bar_y = rng.uniform(1.0, 1.1)
    bar = rng.uniform(0.3, 0.4) if motor else rng.uniform(0.22, 0.3)
    if motor:  # engine, tank and seat as a solid block between the wheels, then the fork
        body = [(-0.5, 0.4), (0.45, 0.4), (0.45, 0.85), (-0.6, 0.8)]
        seat = [(-0.6, 0.8), (0.05, 0.85), (0.05, 0.95), (-0.55, 0.9)]
        for outline, width, col in ((body, 0.22, frame), (seat, 0.16, shade(tyre, 2.0))):
            a, y = np.array(outline).T
            corners = at(np.repeat(a, 2), np.repeat(y, 2), np.tile([-width, width], len(a)))
            cv.poly(_hull(corners), col, label)
        fork = shade(frame, 0.7)
        cv.strokes(at(half_base, r)[None], at(half_base - 0.2, bar_y)[None], fork, label, tube)
        lamp = hsv_color(rng, (0, 10), (0.7, 0.95), (0.5, 0.9))
        cv.ellipse(at(-half_base - 0.05, 0.8), (0.06 * s, 0.05 * s), lamp, label)
    else:  # diamond frame: rear triangle, seat tube, top and down tube, fork
        rear, bb = at(-half_base, r), at(-0.05, 0.3)
        seat_top, head = at(-0.2, 0.95), at(0.38, 0.95)
        front = at(half_base, r)
        a = np.stack([rear, rear, seat_top, seat_top, bb, head])
        b = np.stack([bb, seat_top, bb, head, head, front])
        cv.strokes(a, b, frame, label, tube)
        saddle = at(-0.22, 1.0)
        cv.ellipse(saddle, (0.1 * s, 0.03 * s), shade(tyre, 1.5), label)
        cv.strokes(head[None], at(half_base - 0.2, bar_y)[None], frame, label, tube)
    # handlebar across the vehicle
    grip_l, grip_r = at(half_base - 0.2, bar_y, -bar), at(half_base - 0.2, bar_y, bar)
    cv.strokes(grip_l[None], grip_r[None], shade(tyre, 1.2), label, max(1, round(0.04 * s)))
    if ridden:
        draw_rider(cv, cam, rng, c, d, p, motor, half_base - 0.2, bar_y, bar)


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex outline of projected points (the silhouette of a box)."""
    import cv2

    hull = cv2.convexHull(np.asarray(pts, np.float32).reshape(-1, 1, 2))
    return hull.reshape(-1, 2).astype(np.float64)


def draw_rider(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    c: np.ndarray,
    d: np.ndarray,
    p: np.ndarray,
    motor: bool,
    bar_along: float,
    bar_y: float,
    bar: float,
) -> None:
    """A person sitting on a two-wheeler: legs to the pedals or footrests, a forward-leaning
    torso facing the camera, arms to the handlebar, a head (a helmet on a motorcycle)."""
    s = cam.scale(float(c[2]))
    size = rng.uniform(0.9, 1.1)

    def pt(along: float, up: float, right: float = 0.0) -> np.ndarray:
        q = c + along * d + right * p
        return np.array([q[0], up, q[2]])

    def proj(q: np.ndarray) -> np.ndarray:
        return cam.project(q[0], q[1], q[2])

    shirt, trousers = any_color(rng), any_color(rng)
    skin = hsv_color(rng, (15, 35), (0.25, 0.6), (0.3, 0.95))
    hip = pt(-0.2 if not motor else -0.25, (0.95 if not motor else 0.85) + 0.05)
    lean = rng.uniform(0.15, 0.35)
    shoulder = hip + np.array([0, 0.55 * size, 0]) + lean * d
    limb = max(1, round(0.11 * size * s))
    crank = rng.uniform(0, 2 * np.pi)
    for sgn in (-1, 1):  # legs: thigh forward to the knee, shin down to the pedal or footrest
        if motor:
            knee, foot = pt(0.2, 0.7, sgn * 0.2), pt(-0.1, 0.35, sgn * 0.18)
        else:
            phase = crank + (0 if sgn < 0 else np.pi)
            knee = pt(0.12, 0.75 + 0.08 * np.sin(phase), sgn * 0.14)
            foot = pt(-0.05 + 0.17 * np.cos(phase), 0.3 + 0.17 * np.sin(phase), sgn * 0.12)
        hip_s = hip + sgn * 0.1 * p
        leg = shade(trousers, rng.uniform(0.85, 1.1))
        cv.strokes(
            np.stack([proj(hip_s), proj(knee)]),
            np.stack([proj(knee), proj(foot)]),
            leg,
            RIDER,
            limb,
        )
    # torso: a billboard between hip and shoulder, facing the camera
    half = 0.17 * size
    hq, sq = proj(hip), proj(shoulder)
    hw, sw = half * cam.scale(float(hip[2])), (half + 0.02) * cam.scale(float(shoulder[2]))
    torso = np.array(
        [[hq[0] - hw, hq[1]], [hq[0] + hw, hq[1]], [sq[0] + sw, sq[1]], [sq[0] - sw, sq[1]]]
    )
    cv.poly(torso, shirt, RIDER)
    for sgn in (-1, 1):  # arms to the grips
        grip = pt(bar_along, bar_y, sgn * bar)
        sh = shoulder + sgn * 0.15 * size * p
        cv.strokes(
            proj(sh)[None],
            proj(grip)[None],
            shade(shirt, 0.9),
            RIDER,
            max(1, round(0.08 * size * s)),
        )
    head_c = proj(shoulder + np.array([0, 0.15 * size, 0]) + 0.05 * d)
    if motor:  # full-face helmet
        cv.ellipse(head_c, (0.14 * size * s, 0.15 * size * s), any_color(rng), RIDER)
    else:
        cv.ellipse(head_c, (0.1 * size * s, 0.12 * size * s), skin, RIDER)
        if rng.random() < 0.5:  # cycle helmet
            cv.ellipse(
                head_c - np.array([0, 0.04 * size * s]),
                (0.11 * size * s, 0.08 * size * s),
                any_color(rng),
                RIDER,
            )

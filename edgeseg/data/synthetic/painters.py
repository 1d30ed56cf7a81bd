"""The scene elements: sky, ground, facades, trees, fences, walls, poles with signs and
lights and people (cars and the ego bonnet are in vehicles.py, the other road users in
traffic.py).
"""

from __future__ import annotations

import numpy as np

from edgeseg.data.synthetic.canvas import (
    BUILDING,
    FENCE,
    LIGHT,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    VEGETATION,
    WALL,
    Camera,
    Canvas,
    any_color,
    hsv_color,
    mix,
    shade,
)

# --------------------------------------------------------------------------------------------
# Scene elements
# --------------------------------------------------------------------------------------------


def draw_sky(cv: Canvas, rng: np.random.Generator, yh: float, noise_c: np.ndarray) -> None:
    kind = rng.random()
    if kind < 0.55:  # blue
        top = hsv_color(rng, (195, 230), (0.35, 0.75), (0.55, 0.95))
        bottom = hsv_color(rng, (190, 220), (0.05, 0.35), (0.75, 1.0))
    elif kind < 0.85:  # overcast
        top = hsv_color(rng, (0, 360), (0.0, 0.08), (0.45, 0.9))
        bottom = hsv_color(rng, (0, 360), (0.0, 0.06), (0.6, 1.0))
    else:  # dusk
        top = hsv_color(rng, (210, 260), (0.3, 0.6), (0.25, 0.6))
        bottom = hsv_color(rng, (10, 45), (0.3, 0.7), (0.6, 1.0))
    rows = max(int(np.ceil(yh)) + 2, 1)
    t = (np.arange(cv.h, dtype=np.float32) / max(rows, 1)).clip(0, 1)[:, None, None]
    grad = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    cv.rgb[:] = grad
    if rng.random() < 0.6:  # clouds: thresholded coarse noise brightens the sky
        amount = np.clip(noise_c * rng.uniform(0.6, 1.4) - rng.uniform(0.0, 0.8), 0, 1)
        cv.rgb += amount[..., None] * rng.uniform(40, 110)
    cv.lab[:] = SKY


def draw_ground(
    cv: Canvas, cam: Camera, rng: np.random.Generator, road: tuple[float, float], zfar: float
) -> tuple[float, float]:
    """Terrain everywhere, then road with lane marks and the two kerbed sidewalks."""
    h, w = cv.h, cv.w
    terrain = (
        hsv_color(rng, (60, 110), (0.25, 0.6), (0.3, 0.7))
        if rng.random() < 0.7
        else hsv_color(rng, (20, 45), (0.2, 0.5), (0.3, 0.6))
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
    side = hsv_color(rng, (0, 360), (0.0, 0.25), (0.35, 0.75))
    side_r = side if rng.random() < 0.6 else hsv_color(rng, (0, 360), (0.0, 0.25), (0.35, 0.75))
    for x0, x1, col in ((xl - sw_l, xl + 0.2, side), (xr - 0.2, xr + sw_r, side_r)):
        cv.poly(strip(x0, x1, zn, zfar), col, SIDEWALK)
        # paving joints: rows of constant depth and lines of constant X
        joint = shade(col, rng.uniform(0.6, 0.85))
        step = rng.uniform(0.8, 2.0)
        zs = np.arange(zn + step, min(zfar, 40.0), step)
        cv.lines(cam.project(x0, 0.0, zs), cam.project(x1, 0.0, zs), joint)
        xs = np.arange(x0 + step, x1, step)
        cv.lines(cam.project(xs, 0.0, zn), cam.project(xs, 0.0, min(zfar, 60.0)), joint)
    kerb = hsv_color(rng, (0, 360), (0.0, 0.1), (0.55, 0.9))
    cv.poly(strip(xl - 0.25, xl, zn, zfar), kerb, SIDEWALK)
    cv.poly(strip(xr, xr + 0.25, zn, zfar), kerb, SIDEWALK)
    # grass verges between kerb and footway
    grass = hsv_color(rng, (60, 110), (0.25, 0.6), (0.3, 0.7))
    for x_kerb, sw, sgn in ((xl - 0.25, sw_l, -1), (xr + 0.25, sw_r, 1)):
        if rng.random() < 0.3:
            v = rng.uniform(0.8, 0.45 * sw)
            cv.poly(strip(x_kerb, x_kerb + sgn * v, zn, zfar), grass, TERRAIN)

    # road
    asphalt = hsv_color(rng, (0, 360), (0.0, 0.12), (0.18, 0.55))
    cv.poly(strip(xl, xr, zn, 1e4), asphalt, ROAD)
    fresh = (
        hsv_color(rng, (0, 360), (0.0, 0.05), (0.75, 0.95))
        if rng.random() < 0.8
        else hsv_color(rng, (40, 55), (0.6, 0.9), (0.7, 0.95))
    )
    paint = mix(fresh, asphalt)  # worn: half way to the asphalt
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


def draw_facade(
    cv: Canvas,
    cam: Camera,
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
    if rng.random() < 0.5:
        wall = any_color(rng)
    else:
        wall = hsv_color(rng, (10, 50), (0.05, 0.45), (0.3, 0.85))
    cv.poly(corners, wall, BUILDING)
    floor = rng.uniform(2.8, 3.6)
    bay = rng.uniform(2.2, 4.0)
    ww, wh = bay * rng.uniform(0.35, 0.6), floor * rng.uniform(0.35, 0.55)
    glass = hsv_color(rng, (180, 240), (0.0, 0.35), (0.05, 0.45))
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
                cv.poly(polys[pick], hsv_color(rng, (20, 60), (0.1, 0.5), (0.4, 0.9)), None)
    if rng.random() < 0.5:  # ground-floor shop front or door
        zd = rng.uniform(z0, max(z0 + 0.1, z1 - 3.0))
        door = cam.project(
            np.full(4, xf),
            np.array([0, 0, 2.4, 2.4]),
            np.array([zd, zd + rng.uniform(1.2, 3.0), zd + 3.0, zd]),
        )
        door[2] = cam.project(xf, 2.4, min(zd + 3.0, z1))
        cv.poly(door, shade(glass, 0.8), None)


def draw_skyline(cv: Canvas, cam: Camera, rng: np.random.Generator, z: float) -> None:
    """Far buildings and tree lines across the end of the street at depth z."""
    half = (cv.w * 0.8) * z / cam.f
    x = -half - rng.uniform(0, 10)
    while x < half:
        bw = rng.uniform(8, 25)
        if rng.random() < 0.65:
            bh = rng.uniform(8, 40)
            quad = cam.project(np.array([x, x + bw, x + bw, x]), np.array([0, 0, bh, bh]), z)
            cv.poly(quad, any_color(rng), BUILDING)
        else:
            draw_tree_line(cv, cam, rng, x, x + bw, z, rng.uniform(5, 14))
        x += bw


def draw_tree_line(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x0: float, x1: float, z: float, h: float
) -> None:
    n = 14
    xs = np.linspace(x0, x1, n)
    top = h * (1 + 0.25 * rng.standard_normal(n)).clip(0.4, 1.6)
    pts = np.concatenate([cam.project(xs, top, z), cam.project(np.array([x1, x0]), 0.0, z)])
    cv.poly(pts, hsv_color(rng, (70, 130), (0.3, 0.7), (0.15, 0.5)), VEGETATION)


def draw_hedge(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z0: float, z1: float, h: float
) -> None:
    """Vegetation in the plane X = x with a ragged top."""
    n = max(int((z1 - z0) / 1.5), 4)
    zs = np.geomspace(z0, z1, n)
    top = h * (1 + 0.2 * rng.standard_normal(n)).clip(0.5, 1.5)
    pts = np.concatenate([cam.project(x, top, zs), cam.project(x, 0.0, np.array([z1, z0]))])
    cv.poly(pts, hsv_color(rng, (65, 140), (0.3, 0.75), (0.15, 0.55)), VEGETATION)


def draw_fence(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z0: float, z1: float, h: float
) -> None:
    quad = cam.project(np.full(4, x), np.array([0, 0, h, h]), np.array([z0, z1, z1, z0]))
    base = any_color(rng)
    cv.poly(quad, shade(base, rng.uniform(0.5, 0.9)), FENCE)
    bar = shade(base, rng.uniform(1.1, 1.5))
    step = rng.uniform(0.25, 0.6)
    thick = 1 + int(cam.scale(z0) * 0.06)
    zs = np.arange(z0, z1, step)
    cv.lines(cam.project(x, 0.0, zs), cam.project(x, h, zs), bar, thick)
    ys = np.array([0.15 * h, 0.92 * h])
    cv.lines(cam.project(x, ys, z0), cam.project(x, ys, z1), bar, thick)


def draw_wall(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x: float,
    z0: float,
    z1: float,
    h: float,
    side: int,
) -> None:
    """A free-standing wall in the plane X = x (Cityscapes 'wall': not part of a building):
    concrete, brick or stone, with block courses, a coping and, seen from above, its top."""
    kind = rng.random()
    if kind < 0.4:  # concrete
        base = hsv_color(rng, (0, 360), (0.0, 0.1), (0.35, 0.8))
    elif kind < 0.7:  # brick
        base = hsv_color(rng, (0, 25), (0.35, 0.7), (0.3, 0.65))
    else:  # stone, rendered
        base = (
            any_color(rng)
            if rng.random() < 0.4
            else hsv_color(rng, (25, 50), (0.1, 0.4), (0.4, 0.85))
        )
    quad = cam.project(np.full(4, x), np.array([0, 0, h, h]), np.array([z0, z1, z1, z0]))
    cv.poly(quad, base, WALL)
    thick = rng.uniform(0.2, 0.4)
    if cam.h > h:  # the top, towards the camera's side of the wall
        top = cam.project(
            np.array([x, x, x + side * thick, x + side * thick]), h, np.array([z0, z1, z1, z0])
        )
        cv.poly(top, shade(base, rng.uniform(1.1, 1.3)), WALL)
    if z0 > 0.5:  # the end face, when the wall starts in front of us
        end = cam.project(
            np.array([x, x + side * thick, x + side * thick, x]), np.array([0, 0, h, h]), z0
        )
        cv.poly(end, shade(base, rng.uniform(0.75, 0.9)), WALL)
    coping = cam.project(
        np.full(4, x), np.array([h - 0.12, h - 0.12, h, h]), np.array([z0, z1, z1, z0])
    )
    cv.poly(coping, shade(base, rng.uniform(0.8, 1.25)), WALL)
    if kind >= 0.4:  # block courses and staggered joints
        joint = shade(base, rng.uniform(0.6, 0.8))
        course = rng.uniform(0.2, 0.45)
        ys = np.arange(course, h - 0.12, course)
        cv.lines(cam.project(x, ys, z0), cam.project(x, ys, z1), joint)
        step = course * rng.uniform(1.5, 2.5)
        zs = np.arange(z0 + step / 2, min(z1, z0 + 30.0), step)
        for k, y in enumerate(ys[:6]):
            zk = zs + (step / 2) * (k % 2)
            cv.lines(cam.project(x, y - course, zk), cam.project(x, y, zk), joint)


def draw_tree(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float) -> None:
    """Trunk and crown; Cityscapes labels both as vegetation."""
    trunk_h, trunk_w, r = rng.uniform(1.8, 3.5), rng.uniform(0.25, 0.5), rng.uniform(1.4, 3.0)
    bark = hsv_color(rng, (15, 40), (0.2, 0.6), (0.12, 0.4))
    quad = cam.project(
        np.array([x - trunk_w / 2, x + trunk_w / 2, x + trunk_w / 2, x - trunk_w / 2]),
        np.array([0, 0, trunk_h + r, trunk_h + r]),
        z,
    )
    cv.poly(quad, bark, VEGETATION)
    leaf = (
        hsv_color(rng, (70, 140), (0.35, 0.8), (0.2, 0.6))
        if rng.random() < 0.85
        else hsv_color(rng, (20, 60), (0.5, 0.9), (0.35, 0.75))
    )
    s = cam.scale(z)
    for _ in range(int(rng.integers(3, 7))):
        cx = x + rng.uniform(-0.6, 0.6) * r
        cy = trunk_h + r * rng.uniform(0.5, 1.3)
        c = cam.project(cx, cy, z)
        ax = (r * rng.uniform(0.55, 0.9) * s, r * rng.uniform(0.45, 0.8) * s)
        cv.ellipse(c, ax, shade(leaf, rng.uniform(0.75, 1.2)), VEGETATION)


def draw_pole(
    cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float, side: int
) -> None:
    """A pole carrying a traffic sign, a traffic light, both, or a street lamp."""
    kind = rng.choice(["sign", "light", "both", "lamp"], p=[0.4, 0.3, 0.15, 0.15])
    s = cam.scale(z)
    pw = max(rng.uniform(0.18, 0.32), 2.2 / s)  # at least ~2 px wide
    ph = rng.uniform(3.5, 5.5) if kind != "lamp" else rng.uniform(6.0, 9.0)
    metal = hsv_color(rng, (0, 360), (0.0, 0.3), (0.2, 0.7))
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
        cv.poly(head, shade(metal, 1.3), POLE)
        return
    if kind in ("light", "both"):
        bw, bh = rng.uniform(0.4, 0.55), rng.uniform(1.0, 1.3)
        y0 = ph - bh - rng.uniform(0.0, 0.3)
        body = (
            hsv_color(rng, (0, 360), (0.0, 0.2), (0.05, 0.3))
            if rng.random() < 0.8
            else hsv_color(rng, (45, 60), (0.7, 0.9), (0.6, 0.9))
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
            col = hsv_color(rng, hue, 0.8 if on else 0.4, 1.0 if on else 0.25)
            cv.ellipse(c, (bw * 0.32 * s, bw * 0.32 * s), col, LIGHT)
    if kind in ("sign", "both"):
        sz = rng.uniform(0.7, 1.0)
        yc = rng.uniform(2.2, 3.0) if kind == "sign" else rng.uniform(2.0, 2.4)
        xc = x + (rng.uniform(-0.3, 0.3) if rng.random() < 0.7 else -side * sz * 0.6)
        c = cam.project(xc, yc, z)
        face = hsv_color(rng, rng.choice([0, 215, 50, 0]), (0.0, 0.9), (0.5, 0.95))
        rim = hsv_color(rng, rng.choice([0, 215, 0]), (0.0, 0.9), (0.3, 0.95))
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


def draw_person(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float) -> None:
    """A pedestrian seen from the front or back: legs, torso, arms, head."""
    h = rng.uniform(1.55, 1.95)
    s = cam.scale(z)
    skin = hsv_color(rng, (15, 35), (0.25, 0.6), (0.3, 0.95))
    shirt, trousers = any_color(rng), any_color(rng)
    hair = hsv_color(rng, (10, 40), (0.2, 0.7), (0.05, 0.6))
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
        cv.poly(leg, shade(trousers, rng.uniform(0.85, 1.1)), PERSON)
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
        cv.poly(arm, shade(shirt, 0.9), PERSON)
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

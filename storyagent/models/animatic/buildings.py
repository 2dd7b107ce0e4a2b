"""Outdoor places people built: town, city street, market, house, haunted house, castle, farm.

Windows light up at dusk and night; every drawer takes (draw, spec, w, h, horizon, rng).
"""

from __future__ import annotations

import numpy as np

from storyagent.models.animatic.scenery import clouds, hills, sun

LIT = (255, 215, 110, 255)
DARK_PANE = (70, 90, 120, 255)


def _lit(spec) -> bool:
    return spec.time in ("night", "dusk")


def _windows(draw, rng, spec, box, step=(14, 16), size=(7, 9), chance=0.6):
    x0, y0, x1, y1 = box
    for wy in np.arange(y0 + 8, y1 - size[1] - 2, step[1]):
        for wx in np.arange(x0 + 6, x1 - size[0] - 1, step[0]):
            on = _lit(spec) and rng.random() < chance
            draw.rectangle([wx, wy, wx + size[0], wy + size[1]], fill=LIT if on else DARK_PANE)


def town(draw, spec, w, h, horizon, rng):
    """Low, colourful houses along a road."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    x, ground = -10.0, horizon + 0.15 * h
    while x < w:
        bw, bh = rng.uniform(0.08, 0.16) * w, rng.uniform(0.2, 0.45) * h
        draw.rectangle([x, ground - bh, x + bw, ground], fill=tuple(int(c) for c in rng.integers(120, 200, 3)) + (255,))
        _windows(draw, rng, spec, (x, ground - bh, x + bw, ground - 10))
        x += bw + rng.uniform(2, 10)
    draw.rectangle([0, ground, w, h], fill=(150, 150, 150, 255))
    draw.rectangle([0, horizon + 0.3 * h, w, h], fill=(95, 95, 100, 255))
    for x0 in range(0, w, 60):
        draw.rectangle([x0, horizon + 0.38 * h, x0 + 30, horizon + 0.39 * h], fill=(235, 235, 220, 255))


def city(draw, spec, w, h, horizon, rng):
    """Tall grey towers, a pavement with street lamps, a dark road with a zebra crossing."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    x, ground = -5.0, horizon + 0.1 * h
    while x < w:
        bw, bh = rng.uniform(0.07, 0.12) * w, rng.uniform(0.45, 0.8) * h
        grey = int(rng.integers(70, 130))
        draw.rectangle([x, ground - bh, x + bw, ground], fill=(grey, grey, grey + 15, 255))
        _windows(draw, rng, spec, (x, ground - bh, x + bw, ground), step=(9, 11), size=(5, 6), chance=0.5)
        x += bw + rng.uniform(1, 4)
    draw.rectangle([0, ground, w, ground + 0.1 * h], fill=(175, 170, 165, 255))
    draw.rectangle([0, ground + 0.1 * h, w, h], fill=(55, 55, 60, 255))
    for k in range(8):
        x0 = 0.3 * w + k * 0.05 * w
        draw.rectangle([x0, ground + 0.2 * h, x0 + 0.025 * w, h], fill=(230, 230, 230, 255))
    for lx in np.arange(0.1 * w, w, 0.3 * w):
        draw.rectangle([lx - 1.5, ground - 0.25 * h, lx + 1.5, ground + 0.05 * h], fill=(40, 40, 45, 255))
        glow = LIT if _lit(spec) else (200, 200, 190, 255)
        draw.ellipse([lx - 5, ground - 0.27 * h, lx + 5, ground - 0.24 * h], fill=glow)


def market(draw, spec, w, h, horizon, rng):
    """A row of stalls under striped awnings, crates of fruit, cobbles."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    ground = horizon + 0.2 * h
    draw.rectangle([0, horizon - 0.1 * h, w, ground], fill=(190, 160, 120, 255))
    stripes = [((220, 60, 60), (250, 245, 235)), ((50, 120, 200), (250, 245, 235)), ((60, 160, 80), (250, 240, 200))]
    n = 4
    for i in range(n):
        x0, x1 = (i + 0.08) * w / n, (i + 0.92) * w / n
        a, b = stripes[i % 3]
        draw.rectangle([x0 + 3, ground - 0.28 * h, x0 + 6, ground], fill=(100, 70, 40, 255))
        draw.rectangle([x1 - 6, ground - 0.28 * h, x1 - 3, ground], fill=(100, 70, 40, 255))
        for k in range(6):
            sx = x0 + (x1 - x0) * k / 6
            draw.rectangle([sx, ground - 0.34 * h, sx + (x1 - x0) / 6, ground - 0.26 * h], fill=(a if k % 2 else b) + (255,))
        draw.rectangle([x0, ground - 0.1 * h, x1, ground], fill=(150, 105, 60, 255))
        for _ in range(10):
            fx, fy = rng.uniform(x0 + 4, x1 - 4), ground - rng.uniform(0.1, 0.14) * h
            c = [(240, 140, 30), (220, 40, 50), (250, 220, 60), (120, 190, 60)][rng.integers(0, 4)]
            draw.ellipse([fx - 3, fy - 3, fx + 3, fy + 3], fill=c + (255,))
    draw.rectangle([0, ground, w, h], fill=(160, 150, 140, 255))
    for y in np.arange(ground + 6, h, 10):
        for x0 in np.arange((y % 20) / 2, w, 16):
            draw.rounded_rectangle([x0, y, x0 + 13, y + 7], radius=3, outline=(125, 118, 110, 255))


def _house(draw, x, ground, bw, bh, wall, roof, spec, crooked=0.0):
    draw.rectangle([x, ground - bh, x + bw, ground], fill=wall)
    draw.polygon([(x - 0.08 * bw, ground - bh), (x + bw / 2 + crooked, ground - bh - 0.6 * bh),
                  (x + 1.08 * bw, ground - bh)], fill=roof)
    draw.rectangle([x + 0.42 * bw, ground - 0.45 * bh, x + 0.58 * bw, ground], fill=(110, 65, 40, 255))
    pane = LIT if _lit(spec) else (150, 190, 220, 255)
    for wx in (0.12, 0.7):
        draw.rectangle([x + wx * bw, ground - 0.8 * bh, x + (wx + 0.18) * bw, ground - 0.55 * bh], fill=pane,
                       outline=(250, 250, 250, 255), width=2)


def house(draw, spec, w, h, horizon, rng):
    """A cottage with a red roof, a path to its door, a picket fence and a lawn."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    ground = horizon + 0.15 * h
    hills(draw, w, h, horizon + 0.05 * h, 0.05 * h, (120, 175, 95, 255), rng, waves=1.0)
    _house(draw, 0.3 * w, ground, 0.4 * w, 0.3 * h, (240, 225, 190, 255), (180, 60, 50, 255), spec)
    draw.rectangle([0, ground, w, h], fill=(100, 165, 80, 255))
    draw.polygon([(0.47 * w, ground), (0.53 * w, ground), (0.62 * w, h), (0.38 * w, h)], fill=(200, 185, 160, 255))
    for fx in np.arange(0, w, 12):
        if 0.36 * w < fx < 0.62 * w:
            continue
        draw.polygon([(fx, ground + 0.12 * h), (fx + 4, ground + 0.06 * h), (fx + 8, ground + 0.12 * h),
                      (fx + 8, ground + 0.2 * h), (fx, ground + 0.2 * h)], fill=(250, 250, 250, 255))


def haunted(draw, spec, w, h, horizon, rng):
    """A crooked dark mansion with a tower, a bare tree, gravestones and bats; gloomy even by day."""
    if spec.time != "night":
        draw.rectangle([0, 0, w, horizon], fill=(90, 80, 120, 110))
    sun(draw, spec, w, horizon)
    ground = horizon + 0.18 * h
    _house(draw, 0.35 * w, ground, 0.35 * w, 0.35 * h, (70, 60, 75, 255), (40, 30, 45, 255), spec, crooked=0.03 * w)
    draw.rectangle([0.66 * w, ground - 0.6 * h, 0.76 * w, ground], fill=(60, 50, 68, 255))
    draw.polygon([(0.64 * w, ground - 0.6 * h), (0.71 * w, ground - 0.8 * h), (0.78 * w, ground - 0.6 * h)], fill=(35, 25, 40, 255))
    draw.rectangle([0.69 * w, ground - 0.52 * h, 0.73 * w, ground - 0.44 * h], fill=LIT if _lit(spec) else (30, 30, 40, 255))
    draw.rectangle([0, ground, w, h], fill=(55, 70, 50, 255))
    tx = 0.14 * w
    draw.polygon([(tx - 6, ground), (tx - 2, ground - 0.45 * h), (tx + 3, ground - 0.45 * h), (tx + 7, ground)], fill=(35, 28, 25, 255))
    for dx, dy in ((-0.08, -0.55), (0.07, -0.6), (-0.04, -0.65), (0.1, -0.48)):
        draw.line([(tx, ground - 0.4 * h), (tx + dx * w, ground + dy * h)], fill=(35, 28, 25, 255), width=3)
    for gx in (0.08, 0.25, 0.82, 0.92):
        draw.rounded_rectangle([gx * w, ground + 0.1 * h, gx * w + 0.04 * w, ground + 0.2 * h], radius=5, fill=(140, 140, 150, 255))
    for _ in range(5):
        bx, by, s = rng.uniform(0.2, 0.9) * w, rng.uniform(0.1, 0.4) * horizon, 0.015 * w
        draw.polygon([(bx - 2 * s, by - s), (bx, by), (bx + 2 * s, by - s), (bx, by + 0.5 * s)], fill=(20, 15, 25, 255))


def castle(draw, spec, w, h, horizon, rng):
    """Grey stone walls with battlements, two towers with pointed roofs and flags, a gate, a moat."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    ground = horizon + 0.15 * h
    hills(draw, w, h, ground - 0.02 * h, 0.04 * h, (100, 150, 80, 255), rng, waves=0.8)
    stone, dark = (150, 150, 158, 255), (110, 110, 120, 255)
    draw.rectangle([0.2 * w, ground - 0.3 * h, 0.8 * w, ground], fill=stone)
    for mx in np.arange(0.2 * w, 0.8 * w, 0.04 * w):
        draw.rectangle([mx, ground - 0.34 * h, mx + 0.02 * w, ground - 0.3 * h], fill=stone)
    for tx in (0.12, 0.78):
        draw.rectangle([tx * w, ground - 0.5 * h, (tx + 0.1) * w, ground], fill=dark)
        draw.polygon([((tx - 0.01) * w, ground - 0.5 * h), ((tx + 0.05) * w, ground - 0.68 * h),
                      ((tx + 0.11) * w, ground - 0.5 * h)], fill=(60, 70, 140, 255))
        draw.line([((tx + 0.05) * w, ground - 0.68 * h), ((tx + 0.05) * w, ground - 0.76 * h)], fill=(60, 50, 40, 255), width=2)
        draw.polygon([((tx + 0.05) * w, ground - 0.76 * h), ((tx + 0.09) * w, ground - 0.74 * h),
                      ((tx + 0.05) * w, ground - 0.72 * h)], fill=(220, 40, 40, 255))
        draw.rectangle([(tx + 0.035) * w, ground - 0.4 * h, (tx + 0.065) * w, ground - 0.34 * h],
                       fill=LIT if _lit(spec) else (40, 40, 50, 255))
    draw.chord([0.43 * w, ground - 0.22 * h, 0.57 * w, ground + 0.1 * h], 180, 360, fill=(60, 45, 35, 255))
    draw.rectangle([0.43 * w, ground - 0.06 * h, 0.57 * w, ground], fill=(60, 45, 35, 255))
    draw.rectangle([0, ground, w, h], fill=(90, 140, 70, 255))
    draw.rectangle([0, ground + 0.04 * h, w, ground + 0.1 * h], fill=(60, 100, 140, 255))
    draw.rectangle([0.43 * w, ground, 0.57 * w, ground + 0.12 * h], fill=(120, 85, 55, 255))


def farm(draw, spec, w, h, horizon, rng):
    """A red barn with a white-crossed door, a silo, hay bales and a wooden fence by the fields."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    ground = horizon + 0.12 * h
    hills(draw, w, h, horizon + 0.04 * h, 0.06 * h, (170, 190, 90, 255), rng, waves=1.1)
    bx, bw, bh = 0.5 * w, 0.3 * w, 0.28 * h
    draw.rectangle([bx, ground - bh, bx + bw, ground], fill=(180, 40, 35, 255))
    draw.polygon([(bx - 0.02 * w, ground - bh), (bx + bw / 2, ground - bh - 0.15 * h), (bx + bw + 0.02 * w, ground - bh)],
                 fill=(120, 30, 30, 255))
    d = [bx + 0.35 * bw, ground - 0.6 * bh, bx + 0.65 * bw, ground]
    draw.rectangle(d, fill=(150, 30, 30, 255), outline=(250, 250, 250, 255), width=3)
    draw.line([(d[0], d[1]), (d[2], d[3])], fill=(250, 250, 250, 255), width=3)
    draw.line([(d[0], d[3]), (d[2], d[1])], fill=(250, 250, 250, 255), width=3)
    draw.rectangle([0.83 * w, ground - 0.4 * h, 0.9 * w, ground], fill=(170, 175, 180, 255))
    draw.ellipse([0.83 * w, ground - 0.44 * h, 0.9 * w, ground - 0.36 * h], fill=(140, 145, 150, 255))
    draw.rectangle([0, ground, w, h], fill=(120, 165, 70, 255))
    for k in range(0, int(h - ground), 8):
        draw.line([(0, ground + k), (w, ground + k)], fill=(105, 150, 60, 255), width=2)
    for hx in (0.15, 0.3):
        draw.ellipse([hx * w, ground + 0.02 * h, hx * w + 0.1 * w, ground + 0.12 * h], fill=(225, 190, 90, 255))
    fy = ground + 0.2 * h
    draw.line([(0, fy), (w, fy)], fill=(140, 95, 55, 255), width=3)
    draw.line([(0, fy + 0.05 * h), (w, fy + 0.05 * h)], fill=(140, 95, 55, 255), width=3)
    for fx in np.arange(5, w, 30):
        draw.rectangle([fx, fy - 0.03 * h, fx + 4, fy + 0.1 * h], fill=(120, 80, 45, 255))

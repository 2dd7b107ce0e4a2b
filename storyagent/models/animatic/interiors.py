"""Rooms drawn from the inside: a room at home, a kitchen, a bakery, a classroom.

The window shows the time of day and the weather outside; at night a lamp hangs lit (the
lamp-lit dim palette itself is the scene's tint). `horizon` is where the wall meets the floor.
"""

from __future__ import annotations

import numpy as np

from storyagent.models.animatic.scene_words import SKY

WOOD, DARK_WOOD = (160, 115, 75, 255), (110, 75, 45, 255)


def window(draw, spec, box, rng) -> None:
    """A window pane showing the sky of the time of day, with rain, snow or fog outside."""
    x0, y0, x1, y1 = box
    top, bottom, _ = SKY[spec.time]
    height = max(int(y1 - y0), 1)
    for i in range(height):
        t = i / height
        draw.line([(x0, y0 + i), (x1, y0 + i)], fill=tuple(int(a * (1 - t) + b * t) for a, b in zip(top, bottom)) + (255,))
    if spec.time == "night" and spec.weather == "fair":
        r = (x1 - x0) * 0.08
        draw.ellipse([x0 + (x1 - x0) * 0.7 - r, y0 + height * 0.25 - r, x0 + (x1 - x0) * 0.7 + r, y0 + height * 0.25 + r],
                     fill=(245, 245, 225, 255))
    if spec.weather in ("rain", "storm"):
        for _ in range(int((x1 - x0) * height / 60)):
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            draw.line([(x, y), (x - 2, y + 7)], fill=(200, 210, 230, 200), width=1)
    elif spec.weather == "snowfall":
        for _ in range(int((x1 - x0) * height / 50)):
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 255, 230))
    elif spec.weather == "fog":
        draw.rectangle(box, fill=(220, 220, 225, 150))
    draw.rectangle(box, outline=(250, 250, 250, 255), width=5)
    draw.line([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)], fill=(250, 250, 250, 255), width=4)


def lamp(draw, spec, x: float, y: float, r: float) -> None:
    """A hanging lamp; lit, with a warm halo, only when it is dark outside."""
    draw.line([(x, 0), (x, y - r)], fill=(40, 40, 40, 255), width=2)
    draw.chord([x - r, y - r, x + r, y + r], 180, 360, fill=(60, 90, 70, 255))
    if spec.time in ("night", "dusk"):
        draw.ellipse([x - 4 * r, y - 2 * r, x + 4 * r, y + 5 * r], fill=(255, 220, 140, 45))
        draw.ellipse([x - 0.5 * r, y - 0.3 * r, x + 0.5 * r, y + 0.5 * r], fill=(255, 240, 180, 255))


def _floor(draw, w, h, horizon, colour=WOOD, line=(130, 90, 55, 255)) -> None:
    draw.rectangle([0, horizon, w, h], fill=colour)
    for y in np.arange(horizon, h, 14):
        draw.line([(0, y), (w, y)], fill=line, width=1)


def room(draw, spec, w, h, horizon, rng):
    """A living room: plain wall, a picture, the window, a wooden floor and a round rug."""
    draw.rectangle([0, 0, w, horizon], fill=tuple(int(c) for c in rng.integers(170, 230, 3)) + (255,))
    window(draw, spec, (0.6 * w, 0.12 * h, 0.85 * w, 0.42 * h), rng)
    draw.rectangle([0.1 * w, 0.2 * h, 0.25 * w, 0.4 * h], fill=(120, 80, 60, 255), outline=(80, 50, 30, 255), width=3)
    lamp(draw, spec, 0.4 * w, 0.15 * h, 0.04 * w)
    _floor(draw, w, h, horizon)
    draw.ellipse([0.25 * w, horizon + 0.15 * h, 0.75 * w, h + 0.05 * h], fill=(170, 60, 60, 200))


def kitchen(draw, spec, w, h, horizon, rng):
    """Tiled wall, upper cupboards, the window over the sink, a counter, lower cupboards and an oven."""
    draw.rectangle([0, 0, w, h], fill=(235, 235, 225, 255))
    for y in np.arange(0.3 * h, horizon, 10):
        draw.line([(0, y), (w, y)], fill=(205, 210, 205, 255))
    for x in np.arange(0, w, 10):
        draw.line([(x, 0.3 * h), (x, horizon)], fill=(205, 210, 205, 255))
    for cx in np.arange(0.02 * w, w, 0.16 * w):
        if 0.36 * w < cx + 0.07 * w < 0.64 * w:
            continue
        draw.rectangle([cx, 0.05 * h, cx + 0.14 * w, 0.27 * h], fill=(120, 170, 160, 255), outline=(90, 130, 120, 255), width=2)
        draw.ellipse([cx + 0.11 * w, 0.2 * h, cx + 0.125 * w, 0.22 * h], fill=(230, 200, 120, 255))
    window(draw, spec, (0.38 * w, 0.08 * h, 0.62 * w, 0.36 * h), rng)
    lamp(draw, spec, 0.2 * w, 0.34 * h, 0.035 * w)
    top = horizon - 0.06 * h
    draw.rectangle([0, top, w, top + 0.04 * h], fill=(200, 190, 175, 255))
    draw.rectangle([0, top + 0.04 * h, w, h], fill=(120, 170, 160, 255))
    for cx in np.arange(0, w, 0.16 * w):
        draw.rectangle([cx + 3, top + 0.07 * h, cx + 0.16 * w - 3, top + 0.3 * h], outline=(90, 130, 120, 255), width=2)
    ox = 0.68 * w
    draw.rectangle([ox, top + 0.06 * h, ox + 0.2 * w, top + 0.32 * h], fill=(60, 60, 65, 255))
    draw.rectangle([ox + 0.02 * w, top + 0.12 * h, ox + 0.18 * w, top + 0.28 * h], fill=(250, 140, 50, 160))
    draw.ellipse([0.1 * w, top - 0.07 * h, 0.2 * w, top], fill=(180, 60, 40, 255))
    draw.rectangle([0, top + 0.34 * h, w, h], fill=(200, 200, 195, 255))


def bakery(draw, spec, w, h, horizon, rng):
    """Brick wall, a domed bread oven glowing orange, shelves of loaves, a glass counter of cakes."""
    draw.rectangle([0, 0, w, horizon], fill=(185, 110, 80, 255))
    for row, y in enumerate(np.arange(0, horizon, 9)):
        draw.line([(0, y), (w, y)], fill=(150, 85, 60, 255))
        for x in np.arange((row % 2) * 10, w, 20):
            draw.line([(x, y), (x, y + 9)], fill=(150, 85, 60, 255))
    draw.chord([0.04 * w, 0.1 * h, 0.34 * w, 0.6 * h], 180, 360, fill=(120, 110, 105, 255))
    draw.rectangle([0.04 * w, 0.35 * h, 0.34 * w, horizon], fill=(120, 110, 105, 255))
    draw.chord([0.12 * w, 0.3 * h, 0.26 * w, 0.56 * h], 180, 360, fill=(255, 140, 40, 255))
    draw.rectangle([0.12 * w, 0.43 * h, 0.26 * w, 0.5 * h], fill=(255, 140, 40, 255))
    for sy in (0.18 * h, 0.34 * h):
        draw.rectangle([0.4 * w, sy, 0.95 * w, sy + 0.02 * h], fill=DARK_WOOD)
        for lx in np.arange(0.42 * w, 0.92 * w, 0.07 * w):
            draw.ellipse([lx, sy - 0.06 * h, lx + 0.06 * w, sy + 0.005 * h], fill=(200, 140, 60, 255), outline=(150, 95, 40, 255))
    window(draw, spec, (0.7 * w, 0.42 * h, 0.92 * w, horizon - 0.04 * h), rng)
    lamp(draw, spec, 0.55 * w, 0.08 * h, 0.035 * w)
    _floor(draw, w, h, horizon, (205, 190, 160, 255), (180, 165, 135, 255))
    ct = horizon + 0.05 * h
    draw.rectangle([0.3 * w, ct, 0.95 * w, ct + 0.3 * h], fill=DARK_WOOD)
    draw.rectangle([0.32 * w, ct + 0.03 * h, 0.93 * w, ct + 0.16 * h], fill=(215, 235, 240, 255))
    for cx in np.arange(0.34 * w, 0.9 * w, 0.08 * w):
        c = [(250, 200, 210), (240, 230, 200), (140, 90, 60)][int(cx) % 3]
        draw.rectangle([cx, ct + 0.09 * h, cx + 0.05 * w, ct + 0.15 * h], fill=c + (255,))


def school(draw, spec, w, h, horizon, rng):
    """A classroom: green blackboard with chalk writing, a clock, a window, rows of desks."""
    draw.rectangle([0, 0, w, horizon], fill=(235, 220, 170, 255))
    bx0, bx1 = 0.1 * w, 0.55 * w
    draw.rectangle([bx0, 0.1 * h, bx1, 0.42 * h], fill=(45, 85, 60, 255), outline=(140, 100, 60, 255), width=5)
    for k in range(4):
        y = 0.16 * h + k * 0.06 * h
        draw.line([(bx0 + 0.04 * w, y), (bx0 + rng.uniform(0.15, 0.38) * w, y)], fill=(235, 240, 235, 255), width=2)
    cx, cy, r = 0.65 * w, 0.14 * h, 0.035 * w
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(250, 250, 250, 255), outline=(40, 40, 40, 255), width=2)
    draw.line([(cx, cy), (cx, cy - 0.7 * r)], fill=(40, 40, 40, 255), width=2)
    draw.line([(cx, cy), (cx + 0.5 * r, cy)], fill=(40, 40, 40, 255), width=2)
    window(draw, spec, (0.72 * w, 0.08 * h, 0.95 * w, 0.4 * h), rng)
    lamp(draw, spec, 0.35 * w, 0.04 * h, 0.03 * w)
    _floor(draw, w, h, horizon, (175, 165, 150, 255), (150, 140, 125, 255))
    for row, y in enumerate((horizon + 0.08 * h, horizon + 0.22 * h)):
        dw = 0.16 * w * (1 + 0.25 * row)
        for x in np.arange(0.04 * w, w - dw, dw * 1.35):
            draw.polygon([(x, y), (x + dw, y), (x + dw * 1.05, y + 0.05 * h), (x - dw * 0.05, y + 0.05 * h)], fill=(180, 130, 80, 255))
            draw.rectangle([x + 2, y + 0.05 * h, x + 5, y + 0.12 * h], fill=(90, 90, 95, 255))
            draw.rectangle([x + dw - 5, y + 0.05 * h, x + dw - 2, y + 0.12 * h], fill=(90, 90, 95, 255))

"""Outdoor landscapes, drawn procedurally: the sky, and nature from the beach to the moon.

Every drawer takes (draw, spec, w, h, horizon, rng) and paints over the sky already on the image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import ImageDraw

from storyagent.models.animatic.scene_words import SKY, SceneSpec

Draw = ImageDraw.ImageDraw


def sky(spec: SceneSpec, w: int, h: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """The sky gradient for the time of day, stars at night; a grey lid under rain or storm."""
    top, bottom, _ = SKY["night"] if spec.place == "space" else SKY[spec.time]
    if spec.weather in ("rain", "storm", "fog", "snowfall") and spec.place != "space":
        grey = 70 if spec.time == "night" else {"storm": 150, "snowfall": 205}.get(spec.weather, 175)
        top = tuple((a + grey) // 2 for a in top)
        bottom = tuple((a + grey + 20) // 2 for a in bottom)
    t = np.clip(np.linspace(0, 1, h) / max(horizon / h, 1e-3), 0, 1)[:, None, None]
    # One colour per row, repeated along it (the gradient is vertical).
    rows = (np.array(top) * (1 - t) + np.array(bottom) * t).astype(np.uint8)
    out = np.ascontiguousarray(np.broadcast_to(rows, (h, w, 3)))
    if (spec.time == "night" and spec.weather == "fair") or spec.place == "space":
        n = int(w * h / 900)
        ys, xs = rng.integers(0, max(horizon, 1), n), rng.integers(0, w, n)
        out[ys, xs] = rng.uniform(180, 255, (n, 1)).astype(np.uint8)
    return out


def sun(draw: Draw, spec: SceneSpec, w: int, horizon: int) -> None:
    """The sun (or the moon at night) where the time of day puts it; hidden behind rain clouds."""
    if spec.weather in ("rain", "storm", "fog", "snowfall"):
        return
    pos = {"dawn": (0.15, 0.85), "morning": (0.25, 0.45), "noon": (0.5, 0.18), "afternoon": (0.72, 0.35),
           "dusk": (0.85, 0.85), "night": (0.78, 0.25)}[spec.time]
    r = max(8, w // 28)
    x, y = pos[0] * w, pos[1] * horizon
    colour = (245, 245, 230, 255) if spec.time == "night" else (255, 235, 150, 255)
    draw.ellipse([x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r], fill=colour[:3] + (40,))
    draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def clouds(draw: Draw, spec: SceneSpec, w: int, horizon: int, rng: np.random.Generator) -> None:
    if spec.time == "night":
        return
    grey = spec.weather in ("rain", "storm")
    n = rng.integers(5, 8) if grey else rng.integers(2, 5)
    colour = (150, 150, 160, 255) if grey else (250, 250, 252, 255)
    for _ in range(n):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0.1, 0.6) * horizon, rng.uniform(0.04, 0.08) * w
        for dx in (-1.2, -0.4, 0.4, 1.2):
            r = s * rng.uniform(0.6, 1.0)
            draw.ellipse([cx + dx * s - r, cy - r * 0.7, cx + dx * s + r, cy + r * 0.7], fill=colour)


def hills(draw: Draw, w, h, base, amp, colour, rng, waves=2.0) -> None:
    phase = rng.uniform(0, 2 * math.pi)
    pts = [(x, base - amp * (0.5 + 0.5 * math.sin(waves * 2 * math.pi * x / w + phase))) for x in range(0, w + 8, 8)]
    draw.polygon(pts + [(w, h), (0, h)], fill=colour)


def pine(draw: Draw, x: float, base: float, height: float, colour=(30, 85, 45)) -> None:
    draw.rectangle([x - height * 0.03, base - height * 0.25, x + height * 0.03, base], fill=(90, 60, 35, 255))
    draw.polygon([(x, base - height), (x - height * 0.3, base - height * 0.2), (x + height * 0.3, base - height * 0.2)],
                 fill=colour + (255,))


def sea(draw, spec, w, h, horizon, rng):
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    shore = int(horizon + 0.2 * h)
    draw.rectangle([0, horizon, w, shore], fill=(40, 110, 170, 255))
    for i in range(12):
        y = horizon + (shore - horizon) * (i + 0.5) / 12
        for x0 in range(int(rng.uniform(-30, 0)), w, 46):
            draw.arc([x0, y - 3, x0 + 30, y + 3], 200, 340, fill=(210, 235, 250, 160), width=1)
    draw.polygon([(0, shore), (w, shore - 0.03 * h), (w, h), (0, h)], fill=(232, 210, 160, 255))
    draw.line([(0, shore), (w, shore - 0.03 * h)], fill=(250, 250, 245, 220), width=3)
    for _ in range(40):
        draw.point((rng.uniform(0, w), rng.uniform(shore, h)), fill=(190, 165, 120, 255))


def lake(draw, spec, w, h, horizon, rng):
    """Green far shore with trees, still water with the sky's reflection, reeds on the near bank."""
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    hills(draw, w, h, horizon + 0.02 * h, 0.1 * h, (70, 120, 75, 255), rng, waves=1.3)
    for _ in range(14):
        pine(draw, rng.uniform(0, w), horizon + 0.03 * h, rng.uniform(0.08, 0.14) * h, (35, 90, 50))
    water = int(horizon + 0.04 * h)
    draw.rectangle([0, water, w, horizon + 0.36 * h], fill=(70, 130, 150, 255))
    for i in range(8):
        y = water + (0.32 * h) * (i + 0.5) / 8
        draw.line([(rng.uniform(0, w / 2), y), (rng.uniform(w / 2, w), y)], fill=(150, 195, 210, 140), width=1)
    bank = horizon + 0.36 * h
    hills(draw, w, h, bank + 0.04 * h, 0.05 * h, (95, 150, 70, 255), rng, waves=0.8)
    for _ in range(25):
        x = rng.uniform(0, w)
        draw.line([(x, bank + 0.06 * h), (x + rng.uniform(-4, 4), bank - 0.04 * h)], fill=(60, 110, 45, 255), width=2)


def forest(draw, spec, w, h, horizon, rng):
    sun(draw, spec, w, horizon)
    hills(draw, w, h, horizon + 0.05 * h, 0.12 * h, (60, 110, 70, 255), rng)
    for layer, (shade, scale) in enumerate([((30, 80, 45), 0.8), ((25, 95, 50), 1.0), ((20, 70, 35), 1.3)]):
        for _ in range(7 + 3 * layer):
            pine(draw, rng.uniform(-20, w + 20), horizon + (0.08 + 0.12 * layer) * h,
                 scale * rng.uniform(0.25, 0.4) * h, shade)
    draw.rectangle([0, horizon + 0.4 * h, w, h], fill=(70, 120, 55, 255))


def mountain(draw, spec, w, h, horizon, rng):
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    for _ in range(5):
        cx, mh = rng.uniform(0, w), rng.uniform(0.3, 0.5) * h
        half = rng.uniform(0.15, 0.3) * w
        draw.polygon([(cx - half, horizon + 0.1 * h), (cx, horizon - mh), (cx + half, horizon + 0.1 * h)], fill=(110, 115, 130, 255))
        draw.polygon([(cx - half * 0.25, horizon - mh * 0.75), (cx, horizon - mh), (cx + half * 0.25, horizon - mh * 0.75)],
                     fill=(245, 245, 250, 255))
    draw.rectangle([0, horizon + 0.1 * h, w, h], fill=(80, 125, 65, 255))
    hills(draw, w, h, horizon + 0.2 * h, 0.1 * h, (90, 140, 70, 255), rng)


def meadow(draw, spec, w, h, horizon, rng):
    sun(draw, spec, w, horizon)
    clouds(draw, spec, w, horizon, rng)
    hills(draw, w, h, horizon + 0.05 * h, 0.1 * h, (110, 170, 90, 255), rng, waves=1.5)
    hills(draw, w, h, horizon + 0.2 * h, 0.08 * h, (90, 160, 70, 255), rng, waves=1.0)
    for _ in range(70):
        x, y = rng.uniform(0, w), rng.uniform(horizon + 0.25 * h, h)
        c = [(250, 240, 90), (240, 120, 160), (255, 255, 255), (180, 120, 230)][rng.integers(0, 4)]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c + (255,))


def snow(draw, spec, w, h, horizon, rng):
    sun(draw, spec, w, horizon)
    hills(draw, w, h, horizon + 0.05 * h, 0.1 * h, (230, 235, 245, 255), rng)
    for _ in range(8):
        x, base, th = rng.uniform(0, w), horizon + rng.uniform(0.05, 0.2) * h, rng.uniform(0.2, 0.35) * h
        draw.polygon([(x, base - th), (x - th * 0.3, base), (x + th * 0.3, base)], fill=(40, 90, 70, 255))
        draw.polygon([(x, base - th), (x - th * 0.12, base - th * 0.6), (x + th * 0.12, base - th * 0.6)], fill=(245, 245, 250, 255))
    draw.rectangle([0, horizon + 0.25 * h, w, h], fill=(240, 243, 250, 255))
    for _ in range(120):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 255, 220))


def desert(draw, spec, w, h, horizon, rng):
    sun(draw, spec, w, horizon)
    hills(draw, w, h, horizon + 0.05 * h, 0.12 * h, (225, 180, 110, 255), rng, waves=1.2)
    hills(draw, w, h, horizon + 0.25 * h, 0.1 * h, (235, 195, 125, 255), rng, waves=0.8)
    for _ in range(3):
        x, base, ch = rng.uniform(0, w), horizon + rng.uniform(0.15, 0.3) * h, rng.uniform(0.12, 0.2) * h
        draw.rounded_rectangle([x - 6, base - ch, x + 6, base], radius=6, fill=(60, 130, 70, 255))
        draw.rounded_rectangle([x - 20, base - ch * 0.7, x - 6, base - ch * 0.55], radius=4, fill=(60, 130, 70, 255))


def space(draw, spec, w, h, horizon, rng):
    px, py, pr = rng.uniform(0.6, 0.85) * w, rng.uniform(0.15, 0.35) * h, rng.uniform(0.06, 0.1) * w
    draw.ellipse([px - pr, py - pr, px + pr, py + pr], fill=(200, 120, 80, 255))
    draw.arc([px - 1.8 * pr, py - 0.4 * pr, px + 1.8 * pr, py + 0.4 * pr], 0, 360, fill=(230, 200, 150, 255), width=3)
    hills(draw, w, h, horizon + 0.15 * h, 0.06 * h, (150, 150, 160, 255), rng, waves=0.7)
    for _ in range(10):
        x, y, r = rng.uniform(0, w), rng.uniform(horizon + 0.2 * h, h), rng.uniform(4, 18)
        draw.ellipse([x - r, y - r * 0.4, x + r, y + r * 0.4], fill=(115, 115, 125, 255))


def cave(draw, spec, w, h, horizon, rng):
    """Rock walls all round, a bright mouth showing the sky outside, stalactites and crystals."""
    mouth = [0.35 * w, 0.12 * h, 0.7 * w, horizon + 0.12 * h]
    rock = (72, 58, 50, 255)
    draw.rectangle([0, 0, w, h], fill=rock)
    for _ in range(30):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.08) * w
        shade = int(rng.integers(50, 95))
        draw.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=(shade, int(shade * 0.82), int(shade * 0.7), 255))
    top, bottom, _ = SKY[spec.time]
    draw.ellipse(mouth, fill=bottom + (255,))
    draw.ellipse([mouth[0] + 0.05 * w, mouth[1] + 0.04 * h, mouth[2] - 0.05 * w, mouth[1] + 0.25 * h], fill=top + (200,))
    draw.rectangle([0, horizon + 0.12 * h, w, h], fill=(95, 80, 68, 255))
    for _ in range(12):
        x, length = rng.uniform(0, w), rng.uniform(0.06, 0.2) * h
        draw.polygon([(x - 0.02 * w, 0), (x + 0.02 * w, 0), (x, length)], fill=(110, 95, 85, 255))
    for _ in range(5):
        x, y = rng.uniform(0, w), horizon + rng.uniform(0.15, 0.4) * h
        draw.polygon([(x, y - 0.08 * h), (x - 0.015 * w, y), (x + 0.015 * w, y)], fill=(150, 110, 220, 255))


def underwater(draw, spec, w, h, horizon, rng):
    """Blue water lightening towards the surface, light rays, sand, weeds, coral, fish and bubbles."""
    top = (30, 120, 190) if spec.time != "night" else (10, 30, 70)
    deep = (10, 50, 110) if spec.time != "night" else (4, 14, 40)
    for y in range(h):
        t = y / max(h - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a * (1 - t) + b * t) for a, b in zip(top, deep)) + (255,))
    for _ in range(4):
        x = rng.uniform(0, w)
        draw.polygon([(x, 0), (x + 0.06 * w, 0), (x + 0.18 * w, h * 0.8), (x + 0.1 * w, h * 0.8)], fill=(200, 235, 255, 28))
    hills(draw, w, h, horizon + 0.3 * h, 0.05 * h, (200, 180, 130, 255), rng, waves=1.0)
    for _ in range(9):
        x, base = rng.uniform(0, w), horizon + rng.uniform(0.28, 0.45) * h
        for k in range(6):
            y0, y1 = base - k * 0.05 * h, base - (k + 1) * 0.05 * h
            draw.line([(x + 4 * math.sin(k), y0), (x + 4 * math.sin(k + 1), y1)], fill=(40, 140, 70, 255), width=3)
    for _ in range(5):
        x, y, r = rng.uniform(0, w), horizon + rng.uniform(0.32, 0.48) * h, rng.uniform(0.03, 0.05) * w
        draw.ellipse([x - r, y - r, x + r, y + r * 0.5], fill=(240, 110, 120, 255))
    for _ in range(4):
        x, y, s = rng.uniform(0, w), rng.uniform(0.1, 0.6) * h, rng.uniform(0.02, 0.035) * w
        draw.ellipse([x - s, y - s * 0.5, x + s, y + s * 0.5], fill=(250, 170, 40, 255))
        draw.polygon([(x + s, y), (x + 1.6 * s, y - 0.5 * s), (x + 1.6 * s, y + 0.5 * s)], fill=(250, 170, 40, 255))
    for _ in range(30):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1.5, 4)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(220, 245, 255, 200), width=1)


def leaf(draw: Draw, x: float, y: float, length: float, width: float, angle: float, colour, rib=None) -> None:
    """A broad pointed leaf from its stalk end (x, y), pointing along `angle` (radians), with a midrib."""
    ca, sa = math.cos(angle), math.sin(angle)
    side_a, side_b = [], []
    for k in range(9):
        t = k / 8
        along, half = t * length, 0.5 * width * math.sin(math.pi * t) ** 0.8
        side_a.append((x + along * ca - half * sa, y + along * sa + half * ca))
        side_b.append((x + along * ca + half * sa, y + along * sa - half * ca))
    draw.polygon(side_a + side_b[::-1], fill=tuple(colour) + (255,))
    if rib is not None:
        draw.line([(x, y), (x + length * ca, y + length * sa)], fill=tuple(rib) + (255,), width=1)


def jungle(draw, spec, w, h, horizon, rng):
    """Dense broad-leaved green under a closed canopy: buttressed trunks, hanging vines, giant leaves,
    shafts of light through warm humid air; only specks of sky show (unlike the open pine forest)."""
    for y in range(h):
        t = y / max(h - 1, 1)
        shade = (int(40 + 25 * (1 - t)), int(95 + 40 * (1 - t)), int(40 + 10 * (1 - t)), 255)
        draw.line([(0, y), (w, y)], fill=shade)
    # Canopy: overlapping crowns across the top, a few gaps left where the sky shows through.
    for _ in range(int(w / 6)):
        x, y, r = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.08, 0.3) * h, rng.uniform(0.06, 0.14) * w
        g = int(rng.integers(90, 150))
        draw.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=(int(g * 0.35), g, int(g * 0.3), 255))
    top, bottom, _ = SKY[spec.time]
    for _ in range(5):
        x, y, r = rng.uniform(0.05, 0.95) * w, rng.uniform(0.02, 0.12) * h, rng.uniform(0.01, 0.025) * w
        draw.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=top + (255,))
    # Trunks with flared roots, some far (thin, pale) and some near (thick, dark).
    for near in (False, True):
        for _ in range(3 if near else 5):
            x, half = rng.uniform(0, w), (rng.uniform(0.025, 0.04) if near else rng.uniform(0.008, 0.016)) * w
            colour = (85, 62, 40, 255) if near else (110, 100, 75, 255)
            ground = h * (0.95 if near else 0.8)
            draw.rectangle([x - half, 0, x + half, ground], fill=colour)
            draw.polygon([(x - half, ground - 0.12 * h), (x - 3 * half, ground), (x + 3 * half, ground),
                          (x + half, ground - 0.12 * h)], fill=colour)
    # Forest floor: dark humus, ferns.
    draw.rectangle([0, 0.8 * h, w, h], fill=(55, 70, 30, 255))
    for _ in range(int(w / 8)):
        x, y = rng.uniform(0, w), rng.uniform(0.78, 1.0) * h
        g = int(rng.integers(110, 170))
        leaf(draw, x, y, rng.uniform(0.04, 0.08) * w, rng.uniform(0.015, 0.03) * w, rng.uniform(-2.8, -0.4),
             (int(g * 0.4), g, int(g * 0.3)))
    # Vines hang from the canopy, with small leaves along them.
    for _ in range(int(w / 25) + 3):
        x0, length, sway = rng.uniform(0, w), rng.uniform(0.35, 0.75) * h, rng.uniform(4, 12)
        phase = rng.uniform(0, 2 * math.pi)
        pts = [(x0 + sway * math.sin(phase + 6 * t), t * length) for t in np.linspace(0, 1, 24)]
        draw.line(pts, fill=(50, 90, 35, 255), width=2)
        for px, py in pts[3::4]:
            leaf(draw, px, py, 0.02 * w, 0.012 * w, rng.uniform(0.3, 2.8), (70, 150, 50))
    # Giant broad leaves in the middle ground and framing the corners in front.
    for _ in range(int(w / 14)):
        x, y = rng.uniform(0, w), rng.uniform(0.4, 0.95) * h
        g = int(rng.integers(120, 190))
        leaf(draw, x, y, rng.uniform(0.08, 0.16) * w, rng.uniform(0.04, 0.07) * w, rng.uniform(-3.0, -0.1),
             (int(g * 0.45), g, int(g * 0.25)), rib=(int(g * 0.7), min(255, g + 40), int(g * 0.5)))
    for corner_x, direction in ((0, -0.6), (w, -2.5)):
        for k in range(3):
            leaf(draw, corner_x, h * (0.75 + 0.1 * k), rng.uniform(0.22, 0.3) * w, rng.uniform(0.08, 0.11) * w,
                 direction + rng.uniform(-0.3, 0.3), (30, 105, 35), rib=(80, 160, 70))
    # Humid light: soft warm shafts slanting down through the leaves, and a faint green-gold haze.
    if spec.time not in ("night",):
        for _ in range(3):
            x = rng.uniform(0.1, 0.8) * w
            draw.polygon([(x, 0), (x + 0.05 * w, 0), (x + 0.22 * w, h), (x + 0.12 * w, h)], fill=(255, 245, 170, 26))
    draw.rectangle([0, 0, w, h], fill=(200, 225, 160, 22))



def open_sky(draw, spec, w, h, horizon, rng):
    """High up among the clouds: big sunlit (or moonlit) clouds drifting at every height, birds, and the
    land far below as a thin hazy strip."""
    sun(draw, spec, w, horizon)
    night = spec.time == "night"
    light, shadow = ((120, 130, 165), (80, 88, 125)) if night else ((252, 252, 255), (205, 212, 228))
    if spec.time in ("dawn", "dusk"):
        light, shadow = (255, 225, 205), (215, 170, 170)
    far = (95, 130, 150) if not night else (30, 40, 60)
    hills(draw, w, h, horizon + 0.06 * h, 0.04 * h, far + (255,), rng, waves=2.5)
    hills(draw, w, h, horizon + 0.1 * h, 0.03 * h, tuple(int(c * 0.85) for c in far) + (255,), rng, waves=1.5)
    for _ in range(int(rng.integers(7, 11))):
        cx, cy, s = rng.uniform(-0.1, 1.1) * w, rng.uniform(0.15, 1.0) * h, rng.uniform(0.06, 0.12) * w
        for dx in (-1.3, -0.5, 0.3, 1.1):
            r = s * rng.uniform(0.6, 1.0)
            draw.ellipse([cx + dx * s - r, cy - r * 0.55 + 0.12 * r, cx + dx * s + r, cy + r * 0.55 + 0.12 * r],
                         fill=shadow + (255,))
            draw.ellipse([cx + dx * s - r, cy - r * 0.55, cx + dx * s + r, cy + r * 0.45], fill=light + (255,))
    if not night:
        for _ in range(4):
            x, y, s = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.4) * h, rng.uniform(0.01, 0.02) * w
            draw.line([(x - s, y - s * 0.6), (x, y), (x + s, y - s * 0.6)], fill=(60, 60, 70, 255), width=1)

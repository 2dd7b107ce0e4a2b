"""Procedural backgrounds drawn from a shot's background text: no weights, a few ms each.

The text is read for a place (sea, forest, town, room, mountain, meadow, snow, desert, space)
and a time of day (dawn, morning, noon, afternoon, dusk, night); the same text and seed always
draw the same picture.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PLACE_WORDS: dict[str, tuple[str, ...]] = {
    "sea": ("sea", "seaside", "beach", "ocean", "coast", "shore", "wave", "island", "harbour", "harbor", "boat", "sail", "lake"),
    "forest": ("forest", "wood", "woods", "jungle", "tree", "trees", "camp", "grove"),
    "town": ("town", "city", "street", "market", "village", "shop", "square", "station", "cafe"),
    "room": ("room", "home", "house", "kitchen", "bedroom", "bed", "indoors", "inside", "library", "attic"),
    "mountain": ("mountain", "mountains", "hill", "hills", "peak", "cliff", "climb", "valley"),
    "meadow": ("meadow", "park", "field", "garden", "farm", "flower", "flowers", "picnic", "grass"),
    "snow": ("snow", "snowy", "winter", "ice", "icy", "frozen", "ski", "christmas"),
    "desert": ("desert", "dune", "dunes", "cactus", "canyon"),
    "space": ("space", "moon", "planet", "rocket", "stars", "galaxy", "orbit"),
}
TIME_WORDS: dict[str, tuple[str, ...]] = {
    "dawn": ("dawn", "sunrise", "daybreak", "early morning"),
    "morning": ("morning",),
    "noon": ("noon", "midday", "day", "daytime", "sunny"),
    "afternoon": ("afternoon",),
    "dusk": ("dusk", "sunset", "evening", "twilight"),
    "night": ("night", "midnight", "moonlight", "moonlit", "dark"),
}
# Sky top colour, horizon colour, and the tint multiplied over everything (lighting).
SKY: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[float, float, float]]] = {
    "dawn": ((120, 130, 190), (250, 190, 150), (1.0, 0.92, 0.88)),
    "morning": ((110, 170, 235), (200, 225, 245), (1.0, 1.0, 1.0)),
    "noon": ((70, 140, 230), (180, 215, 245), (1.0, 1.0, 1.0)),
    "afternoon": ((90, 150, 220), (230, 220, 190), (1.0, 0.97, 0.92)),
    "dusk": ((70, 60, 130), (250, 140, 90), (1.0, 0.82, 0.72)),
    "night": ((8, 12, 40), (35, 45, 90), (0.55, 0.6, 0.85)),
}


@dataclass(frozen=True)
class SceneSpec:
    """What a background shows, read from its text."""

    place: str
    """A key of PLACE_WORDS ("meadow" when the text names none)."""
    time: str
    """A key of TIME_WORDS ("noon" when the text names none)."""

    @classmethod
    def from_text(cls, text: str) -> SceneSpec:
        words = re.findall(r"[\w']+", text.lower())
        joined = " ".join(words)

        def first_match(table: dict[str, tuple[str, ...]], default: str) -> str:
            best, best_pos = default, len(joined) + 1
            for key, keys in table.items():
                for k in keys:
                    m = re.search(rf"\b{re.escape(k)}\b", joined)
                    if m and m.start() < best_pos:
                        best, best_pos = key, m.start()
            return best

        return cls(place=first_match(PLACE_WORDS, "meadow"), time=first_match(TIME_WORDS, "noon"))

    @property
    def tint(self) -> tuple[float, float, float]:
        return SKY[self.time][2]


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def draw_background(text: str, width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB background for `text` of size `height`×`width`; horizon at about 55 % height."""
    spec = SceneSpec.from_text(text)
    rng = np.random.default_rng(stable_seed(text, seed))
    horizon = int(height * (0.5 if spec.place != "room" else 0.62))
    img = Image.fromarray(_sky(spec, width, height, horizon, rng))
    draw = ImageDraw.Draw(img, "RGBA")
    SCENES.get(spec.place, _meadow)(draw, spec, width, height, horizon, rng)
    arr = np.asarray(img.filter(ImageFilter.SMOOTH)).astype(np.float32)
    if spec.place != "space":
        arr *= np.array(spec.tint, dtype=np.float32)
    # Film grain keeps flat colours from banding in H.264.
    arr += rng.normal(0, 2.0, arr.shape[:2])[..., None]
    return np.clip(arr, 0, 255).astype(np.uint8)


def _sky(spec: SceneSpec, w: int, h: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    top, bottom, _ = SKY["night"] if spec.place == "space" else SKY[spec.time]
    t = np.clip(np.linspace(0, 1, h) / max(horizon / h, 1e-3), 0, 1)[:, None, None]
    sky = (np.array(top) * (1 - t) + np.array(bottom) * t) * np.ones((1, w, 1))
    if spec.time == "night" or spec.place == "space":
        n = int(w * h / 900)
        ys, xs = rng.integers(0, max(horizon, 1), n), rng.integers(0, w, n)
        sky[ys, xs] = rng.uniform(180, 255, (n, 1))
    return sky.astype(np.uint8)


def _sun(draw: ImageDraw.ImageDraw, spec: SceneSpec, w: int, horizon: int) -> None:
    pos = {"dawn": (0.15, 0.85), "morning": (0.25, 0.45), "noon": (0.5, 0.18), "afternoon": (0.72, 0.35),
           "dusk": (0.85, 0.85), "night": (0.78, 0.25)}[spec.time]
    r = max(8, w // 28)
    x, y = pos[0] * w, pos[1] * horizon
    colour = (245, 245, 230, 255) if spec.time == "night" else (255, 235, 150, 255)
    draw.ellipse([x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r], fill=colour[:3] + (40,))
    draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _clouds(draw: ImageDraw.ImageDraw, spec: SceneSpec, w: int, horizon: int, rng: np.random.Generator) -> None:
    if spec.time == "night":
        return
    for _ in range(rng.integers(2, 5)):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0.1, 0.6) * horizon, rng.uniform(0.04, 0.08) * w
        for dx in (-1.2, -0.4, 0.4, 1.2):
            r = s * rng.uniform(0.6, 1.0)
            draw.ellipse([cx + dx * s - r, cy - r * 0.7, cx + dx * s + r, cy + r * 0.7], fill=(250, 250, 252, 255))


def _hills(draw, w, h, base, amp, colour, rng, waves=2.0):
    phase = rng.uniform(0, 2 * math.pi)
    pts = [(x, base - amp * (0.5 + 0.5 * math.sin(waves * 2 * math.pi * x / w + phase))) for x in range(0, w + 8, 8)]
    draw.polygon(pts + [(w, h), (0, h)], fill=colour)


def _sea(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _clouds(draw, spec, w, horizon, rng)
    shore = int(horizon + 0.2 * h)
    draw.rectangle([0, horizon, w, shore], fill=(40, 110, 170, 255))
    for i in range(12):
        y = horizon + (shore - horizon) * (i + 0.5) / 12
        for x0 in range(int(rng.uniform(-30, 0)), w, 46):
            draw.arc([x0, y - 3, x0 + 30, y + 3], 200, 340, fill=(210, 235, 250, 160), width=1)
    draw.polygon([(0, shore), (w, shore - 0.03 * h), (w, h), (0, h)], fill=(232, 210, 160, 255))
    draw.line([(0, shore), (w, shore - 0.03 * h)], fill=(250, 250, 245, 220), width=3)
    for _ in range(40):
        x, y = rng.uniform(0, w), rng.uniform(shore, h)
        draw.point((x, y), fill=(190, 165, 120, 255))


def _forest(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _hills(draw, w, h, horizon + 0.05 * h, 0.12 * h, (60, 110, 70, 255), rng)
    for layer, (shade, scale) in enumerate([((30, 80, 45), 0.8), ((25, 95, 50), 1.0), ((20, 70, 35), 1.3)]):
        for _ in range(7 + 3 * layer):
            x = rng.uniform(-20, w + 20)
            base = horizon + (0.08 + 0.12 * layer) * h
            th = scale * rng.uniform(0.25, 0.4) * h
            draw.rectangle([x - 3 * scale, base - th * 0.3, x + 3 * scale, base], fill=(90, 60, 35, 255))
            draw.polygon([(x, base - th), (x - th * 0.3, base - th * 0.25), (x + th * 0.3, base - th * 0.25)],
                         fill=shade + (255,))
    draw.rectangle([0, horizon + 0.4 * h, w, h], fill=(70, 120, 55, 255))


def _town(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _clouds(draw, spec, w, horizon, rng)
    x = -10
    lit = spec.time in ("night", "dusk")
    while x < w:
        bw, bh = rng.uniform(0.08, 0.16) * w, rng.uniform(0.2, 0.45) * h
        colour = tuple(int(c) for c in rng.integers(120, 200, 3)) + (255,)
        draw.rectangle([x, horizon + 0.15 * h - bh, x + bw, horizon + 0.15 * h], fill=colour)
        for wy in np.arange(horizon + 0.15 * h - bh + 8, horizon + 0.15 * h - 10, 16):
            for wx in np.arange(x + 6, x + bw - 8, 14):
                on = lit and rng.random() < 0.6
                draw.rectangle([wx, wy, wx + 7, wy + 9], fill=(255, 220, 120, 255) if on else (70, 90, 120, 255))
        x += bw + rng.uniform(2, 10)
    draw.rectangle([0, horizon + 0.15 * h, w, h], fill=(150, 150, 150, 255))
    draw.rectangle([0, horizon + 0.3 * h, w, h], fill=(95, 95, 100, 255))
    for x0 in range(0, w, 60):
        draw.rectangle([x0, horizon + 0.38 * h, x0 + 30, horizon + 0.39 * h], fill=(235, 235, 220, 255))


def _room(draw, spec, w, h, horizon, rng):
    wall = tuple(int(c) for c in rng.integers(170, 230, 3)) + (255,)
    draw.rectangle([0, 0, w, horizon], fill=wall)
    # The window shows the time of day outside.
    top, bottom, _ = SKY[spec.time]
    wx, wy, ww, wh = 0.6 * w, 0.12 * h, 0.25 * w, 0.3 * h
    for i in range(int(wh)):
        t = i / wh
        draw.line([(wx, wy + i), (wx + ww, wy + i)], fill=tuple(int(a * (1 - t) + b * t) for a, b in zip(top, bottom)) + (255,))
    draw.rectangle([wx, wy, wx + ww, wy + wh], outline=(250, 250, 250, 255), width=5)
    draw.line([(wx + ww / 2, wy), (wx + ww / 2, wy + wh)], fill=(250, 250, 250, 255), width=4)
    draw.rectangle([0.1 * w, 0.2 * h, 0.25 * w, 0.4 * h], fill=(120, 80, 60, 255), outline=(80, 50, 30, 255), width=3)
    draw.rectangle([0, horizon, w, h], fill=(160, 115, 75, 255))
    for y in np.arange(horizon, h, 14):
        draw.line([(0, y), (w, y)], fill=(130, 90, 55, 255), width=1)
    draw.ellipse([0.25 * w, horizon + 0.15 * h, 0.75 * w, h + 0.05 * h], fill=(170, 60, 60, 200))


def _mountain(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _clouds(draw, spec, w, horizon, rng)
    for i in range(5):
        cx, mh = rng.uniform(0, w), rng.uniform(0.3, 0.5) * h
        half = rng.uniform(0.15, 0.3) * w
        draw.polygon([(cx - half, horizon + 0.1 * h), (cx, horizon - mh), (cx + half, horizon + 0.1 * h)], fill=(110, 115, 130, 255))
        draw.polygon([(cx - half * 0.25, horizon - mh * 0.75), (cx, horizon - mh), (cx + half * 0.25, horizon - mh * 0.75)],
                     fill=(245, 245, 250, 255))
    draw.rectangle([0, horizon + 0.1 * h, w, h], fill=(80, 125, 65, 255))
    _hills(draw, w, h, horizon + 0.2 * h, 0.1 * h, (90, 140, 70, 255), rng)


def _meadow(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _clouds(draw, spec, w, horizon, rng)
    _hills(draw, w, h, horizon + 0.05 * h, 0.1 * h, (110, 170, 90, 255), rng, waves=1.5)
    _hills(draw, w, h, horizon + 0.2 * h, 0.08 * h, (90, 160, 70, 255), rng, waves=1.0)
    for _ in range(70):
        x, y = rng.uniform(0, w), rng.uniform(horizon + 0.25 * h, h)
        c = [(250, 240, 90), (240, 120, 160), (255, 255, 255), (180, 120, 230)][rng.integers(0, 4)]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c + (255,))


def _snow(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _hills(draw, w, h, horizon + 0.05 * h, 0.1 * h, (230, 235, 245, 255), rng)
    for _ in range(8):
        x, base, th = rng.uniform(0, w), horizon + rng.uniform(0.05, 0.2) * h, rng.uniform(0.2, 0.35) * h
        draw.polygon([(x, base - th), (x - th * 0.3, base), (x + th * 0.3, base)], fill=(40, 90, 70, 255))
        draw.polygon([(x, base - th), (x - th * 0.12, base - th * 0.6), (x + th * 0.12, base - th * 0.6)], fill=(245, 245, 250, 255))
    draw.rectangle([0, horizon + 0.25 * h, w, h], fill=(240, 243, 250, 255))
    for _ in range(120):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 255, 220))


def _desert(draw, spec, w, h, horizon, rng):
    _sun(draw, spec, w, horizon)
    _hills(draw, w, h, horizon + 0.05 * h, 0.12 * h, (225, 180, 110, 255), rng, waves=1.2)
    _hills(draw, w, h, horizon + 0.25 * h, 0.1 * h, (235, 195, 125, 255), rng, waves=0.8)
    for _ in range(3):
        x, base, ch = rng.uniform(0, w), horizon + rng.uniform(0.15, 0.3) * h, rng.uniform(0.12, 0.2) * h
        draw.rounded_rectangle([x - 6, base - ch, x + 6, base], radius=6, fill=(60, 130, 70, 255))
        draw.rounded_rectangle([x - 20, base - ch * 0.7, x - 6, base - ch * 0.55], radius=4, fill=(60, 130, 70, 255))


def _space(draw, spec, w, h, horizon, rng):
    px, py, pr = rng.uniform(0.6, 0.85) * w, rng.uniform(0.15, 0.35) * h, rng.uniform(0.06, 0.1) * w
    draw.ellipse([px - pr, py - pr, px + pr, py + pr], fill=(200, 120, 80, 255))
    draw.arc([px - 1.8 * pr, py - 0.4 * pr, px + 1.8 * pr, py + 0.4 * pr], 0, 360, fill=(230, 200, 150, 255), width=3)
    _hills(draw, w, h, horizon + 0.15 * h, 0.06 * h, (150, 150, 160, 255), rng, waves=0.7)
    for _ in range(10):
        x, y, r = rng.uniform(0, w), rng.uniform(horizon + 0.2 * h, h), rng.uniform(4, 18)
        draw.ellipse([x - r, y - r * 0.4, x + r, y + r * 0.4], fill=(115, 115, 125, 255))


SCENES = {"sea": _sea, "forest": _forest, "town": _town, "room": _room, "mountain": _mountain,
          "meadow": _meadow, "snow": _snow, "desert": _desert, "space": _space}

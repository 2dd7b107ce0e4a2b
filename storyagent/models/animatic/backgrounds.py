"""Procedural backgrounds drawn from a shot's background text: no weights, a few ms each.

The text is read (`SceneSpec.from_text`) for a place (kitchen, bakery, classroom, house,
haunted house, castle, city street, market, town, sea, lake, forest, jungle, mountain, snow,
desert, farm, cave, space, sky, underwater, room, meadow), a time of day (dawn ... night) and the weather
(rain, storm, snow falling, fog, sunny); the same text and seed always draw the same picture.
Night is drawn dark: a night sky outdoors, a lamp-lit dim room indoors.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from storyagent.models.animatic import buildings, interiors, scenery
from storyagent.models.animatic.scene_words import (
    INDOOR,
    PLACE_WORDS,
    SHELTERED,
    SKY,
    TIME_WORDS,
    WEATHER_WORDS,
    SceneSpec,
    stable_seed,
)

__all__ = ["PLACE_WORDS", "SCENES", "SKY", "TIME_WORDS", "WEATHER_WORDS", "SceneSpec", "draw_background", "stable_seed"]

SCENES = {
    "sea": scenery.sea, "lake": scenery.lake, "forest": scenery.forest, "mountain": scenery.mountain,
    "meadow": scenery.meadow, "snow": scenery.snow, "desert": scenery.desert, "space": scenery.space,
    "cave": scenery.cave, "underwater": scenery.underwater, "jungle": scenery.jungle, "sky": scenery.open_sky,
    "town": buildings.town, "city": buildings.city, "market": buildings.market, "house": buildings.house,
    "haunted": buildings.haunted, "castle": buildings.castle, "farm": buildings.farm,
    "room": interiors.room, "kitchen": interiors.kitchen, "bakery": interiors.bakery, "school": interiors.school,
}
# Where the ground (or the floor) meets the sky (or the wall), as a fraction of the height.
HORIZON = {place: 0.62 for place in INDOOR} | {"cave": 0.55, "underwater": 0.5, "sky": 0.85}


def draw_background(text: str, width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB background for `text` of size `height`×`width`; horizon at about half height."""
    spec = SceneSpec.from_text(text)
    rng = np.random.default_rng(stable_seed(text, seed))
    horizon = int(height * HORIZON.get(spec.place, 0.5))
    img = Image.fromarray(scenery.sky(spec, width, height, horizon, rng))
    draw = ImageDraw.Draw(img, "RGBA")
    SCENES.get(spec.place, scenery.meadow)(draw, spec, width, height, horizon, rng)
    if spec.place not in SHELTERED:
        _weather(draw, spec, width, height, rng)
    arr = np.asarray(img.filter(ImageFilter.SMOOTH)).astype(np.float32)
    if spec.place != "space":
        arr *= np.array(spec.tint, dtype=np.float32)
    # Film grain keeps flat colours from banding in H.264.
    arr += rng.normal(0, 2.0, arr.shape[:2])[..., None]
    return np.clip(arr, 0, 255).astype(np.uint8)


def _weather(draw: ImageDraw.ImageDraw, spec: SceneSpec, w: int, h: int, rng: np.random.Generator) -> None:
    """Rain streaks, a lightning bolt, falling snow or a veil of fog over the whole outdoor scene."""
    if spec.weather in ("rain", "storm"):
        for _ in range(int(w * h / (150 if spec.weather == "storm" else 250))):
            x, y = rng.uniform(-10, w), rng.uniform(-10, h)
            draw.line([(x, y), (x - 3, y + 12)], fill=(205, 215, 235, 150), width=1)
    if spec.weather == "storm":
        x, y = rng.uniform(0.3, 0.7) * w, 0.0
        points = [(x, y)]
        while y < 0.45 * h:
            x, y = x + rng.uniform(-0.04, 0.04) * w, y + rng.uniform(0.05, 0.1) * h
            points.append((x, y))
        draw.line(points, fill=(255, 255, 220, 255), width=3)
    elif spec.weather == "snowfall":
        for _ in range(int(w * h / 200)):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1.0, 2.5)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255, 230))
    elif spec.weather == "fog":
        draw.rectangle([0, 0, w, h], fill=(215, 218, 225, 120))

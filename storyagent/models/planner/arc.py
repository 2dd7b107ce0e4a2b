"""The offline planner's vocabulary: where shots happen, at what time, in what weather, and framing by beat.

Every place phrase starts with its preposition ("in the warm kitchen") so narration can say
where; a shot's background is the phrase without it ("the warm kitchen at dusk"), and the
animatic's scene reader maps it back to the place (a test holds every phrase to that).
"""

from __future__ import annotations

import random

from storyagent.models.animatic.backgrounds import PLACE_WORDS
from storyagent.models.animatic.scene_words import place_in, time_in

PLACE_PHRASES: dict[str, list[str]] = {
    "kitchen": ["in the warm kitchen", "at the kitchen table", "by the kitchen window", "at the kitchen counter"],
    "bakery": ["in the little bakery", "behind the bakery counter", "beside the bakery's glowing oven", "among the shelves of the bakery"],
    "school": ["in the bright classroom", "at a desk in the classroom", "by the blackboard of the classroom", "in the school hall"],
    "haunted": ["in front of the haunted house", "on the haunted house's creaky porch", "by the gate of the haunted house",
                "among the gravestones of the haunted house"],
    "house": ["in front of the little house", "on the porch of the house", "by the gate of the little house", "on the doorstep of the house"],
    "room": ["in a cosy room at home", "in the bedroom by the window", "in the living room at home", "up in the attic room"],
    "castle": ["in front of the castle", "on the castle walls", "by the castle gate", "below the tall castle tower"],
    "city": ["on a busy city street", "at a street corner in the city", "on a wide city avenue", "among the tall city buildings"],
    "town": ["on a quiet lane in the old town", "in the town square", "at the town station", "outside a cafe in town"],
    "market": ["at the busy market", "by a fruit stall at the market", "among the stalls of the market", "at the edge of the market square"],
    "underwater": ["among the coral of the reef", "over the sandy seabed", "beside a tall coral reef", "among swaying kelp on the reef"],
    "sea": ["on a sandy beach by the sea", "at the edge of the waves on the shore", "by a rock pool on the beach", "on the harbour wall by the sea"],
    "lake": ["on the lakeside path", "on a wooden jetty over the lake", "by the reeds of the lake", "on the bank of the river"],
    "forest": ["in a tall pine forest", "in a mossy clearing in the forest", "on a winding path through the woods", "by an old tree in the forest"],
    "mountain": ["on a rocky mountain path", "on the mountain top", "in a valley between the mountains", "on a grassy hill below the mountains"],
    "snow": ["on a snowy slope", "by a frozen pond in the snow", "in a snowy pine wood", "beside a snowy mountain hut"],
    "desert": ["among golden desert dunes", "in a cactus garden in the desert", "in a canyon in the desert", "by an oasis in the desert"],
    "farm": ["in the farmyard", "by the red barn on the farm", "at the fence of the farm", "beside a haystack on the farm"],
    "cave": ["at the mouth of the cave", "deep inside the cave", "by glittering crystals in the cave", "in a tunnel of the cave"],
    "space": ["on the grey surface of the moon", "at the rim of a crater on the moon", "on a rocky planet in space", "at a landing pad on the moon"],
    "meadow": ["in a flowery meadow", "in a green park", "in a vegetable garden", "on the grassy fields"],
}
# How the story names its main setting in a sentence ("all over the kitchen").
SETTING_NAME: dict[str, str] = {
    "kitchen": "the kitchen", "bakery": "the bakery", "school": "school", "haunted": "the haunted house",
    "house": "the house", "room": "home", "castle": "the castle", "city": "the city", "town": "the town",
    "market": "the market", "underwater": "the reef", "sea": "the seaside", "lake": "the lake", "forest": "the forest",
    "mountain": "the mountains", "snow": "the snowy hills", "desert": "the desert", "farm": "the farm", "cave": "the cave",
    "space": "the moon", "meadow": "the park",
}
# Where a story about each place plausibly ends when the prompt names no place.
HOME_FOR: dict[str, str] = {"sea": "room", "forest": "meadow", "town": "room", "room": "meadow", "mountain": "meadow",
                            "meadow": "room", "snow": "room", "desert": "town", "space": "room", "kitchen": "room",
                            "bakery": "town", "school": "house", "haunted": "room", "house": "room", "castle": "meadow",
                            "city": "room", "market": "room", "underwater": "sea", "lake": "house", "farm": "house",
                            "cave": "forest"}

TIMES = ["dawn", "morning", "noon", "afternoon", "dusk", "night"]
TIME_PHRASES = {"dawn": "at dawn", "morning": "in the morning", "noon": "at noon",
                "afternoon": "in the afternoon", "dusk": "at dusk", "night": "at night"}
WEATHER_PHRASES = {"rain": "in the rain", "storm": "in a thunderstorm", "snowfall": "in falling snow",
                   "fog": "in the fog", "sunny": "in bright sunshine"}
# Sunshine belongs to the day: a sunny phrase never joins dawn, dusk or night.
SUNLESS_TIMES = frozenset({"dawn", "dusk", "night"})
SHOT_FOR_BEAT = [["wide"], ["medium", "wide"], ["medium", "close-up"], ["close-up", "medium"], ["wide", "medium"]]
CAMERA_FOR_BEAT = [["zoom out", "pan right", "pan left"], ["pan right", "pan left", "static", "tilt down"],
                   ["zoom in", "static", "pan left"], ["zoom in", "tilt up", "static"], ["zoom out", "pan left", "tilt up"]]
REGIONS = ["left", "center", "right"]


PREPOSITIONS = ("in front of", "deep inside", "up in", "at", "in", "on", "by", "among", "beside", "behind", "below", "over")


def split_where(phrase: str) -> tuple[str, str]:
    """'in the warm kitchen' -> ('in', 'the warm kitchen'); 'in front of the house' -> ('in front of', 'the house')."""
    for prep in PREPOSITIONS:
        if phrase.startswith(prep + " "):
            return prep, phrase[len(prep) + 1:]
    return "", phrase


def background_text(place_phrase: str, time: str, weather: str | None) -> str:
    """'the warm kitchen at night', with the weather after a comma when there is some."""
    text = f"{place_phrase} {TIME_PHRASES[time]}"
    if weather and not (weather == "sunny" and time in SUNLESS_TIMES):
        text += f", {WEATHER_PHRASES[weather]}"
    return text


def clip_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def place_of(prompt: str) -> str:
    """The first place (a key of PLACE_WORDS) whose words the prompt uses; a meadow otherwise."""
    found = place_in(prompt)
    return found if found in PLACE_WORDS else "meadow"


def times_for(prompt: str, n: int, rng: random.Random, night_story: bool = False) -> list[str]:
    """Times of day that advance through the story: from the time the prompt names, else a day-long arc."""
    named = time_in(prompt, weak=False)
    if named == "night" or (named is None and night_story):
        span = ["dusk", "night"]
    elif named is not None:
        start = TIMES.index(named)
        span = TIMES[start:start + 2] if named != "dusk" else ["dusk", "night"]
    else:
        # A day story runs from dawn or morning to dusk; only a night story goes on into the dark.
        start = rng.choice([0, 1])
        span = TIMES[start:5]
    return [span[min(len(span) - 1, round(i * (len(span) - 1) / max(n - 1, 1)))] for i in range(n)]


def beat_index(i: int, n: int) -> int:
    """Which of the five beats shot `i` of `n` falls on."""
    if n == 1:
        return 0
    return min(4, round(i * 4 / (n - 1)))


def pick(rng: random.Random, options: list[str], avoid: str) -> str:
    """A random option other than `avoid`, unless `avoid` is the only one."""
    choices = [o for o in options if o != avoid] or options
    return rng.choice(choices)

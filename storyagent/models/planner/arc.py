"""The offline planner's story arc: place and time vocabularies, five beats, and how a prompt is read."""

from __future__ import annotations

import random
import re

from storyagent.models.animatic.backgrounds import PLACE_WORDS

PLACE_PHRASES: dict[str, list[str]] = {
    "sea": ["a sandy beach by the sea", "the edge of the waves on the shore", "a rock pool on the beach", "the harbour wall by the sea"],
    "forest": ["a tall pine forest", "a mossy clearing in the forest", "a winding path through the woods", "an old tree in the forest"],
    "town": ["a busy town street", "the market square in town", "a quiet lane in the old town", "the town station"],
    "room": ["a cosy room at home", "the kitchen at home", "a bedroom by the window", "the living room at home"],
    "mountain": ["a grassy hill below the mountains", "a rocky mountain path", "the mountain top", "a valley between the mountains"],
    "meadow": ["a flowery meadow", "a sunny park", "a vegetable garden", "a hill above the fields"],
    "snow": ["a snowy hill", "a frozen pond in the snow", "a snowy pine wood", "a winter village lane in the snow"],
    "desert": ["golden desert dunes", "a cactus garden in the desert", "a canyon in the desert", "an oasis in the desert"],
    "space": ["the grey surface of the moon", "a crater on the moon", "a rocky planet in space", "a landing pad on the moon"],
}
# Where a story about each place plausibly starts and ends.
HOME_FOR: dict[str, str] = {"sea": "room", "forest": "meadow", "town": "room", "room": "meadow",
                            "mountain": "meadow", "meadow": "room", "snow": "room", "desert": "town", "space": "room"}

BEATS: list[dict[str, list[str]]] = [
    {  # 0 arrival
        "action": ["walks in and looks around", "arrives, full of excitement", "sets off with a happy hop", "wakes up and stretches"],
        "narration": ["{name} could hardly wait: today was the day for {topic}.", "It all began when {name} set off for {topic}.",
                      "{Name} woke early, thinking only of {topic}."],
    },
    {  # 1 discovery
        "action": ["explores curiously", "finds something shiny", "runs happily", "plays and jumps"],
        "narration": ["At {place}, {name} found more than expected.", "{Name} explored every corner of {place}.",
                      "There was so much to see at {place}."],
    },
    {  # 2 trouble
        "action": ["stops, worried", "searches everywhere", "looks up in surprise", "hurries along"],
        "narration": ["But then something went wrong, and {name} felt very small.", "Suddenly, {name} realised the way back was gone.",
                      "A gust of wind scattered everything, and {name} froze."],
    },
    {  # 3 turn
        "action": ["takes a deep breath and smiles", "jumps bravely", "waves to a new friend", "discovers the answer"],
        "narration": ["{Name} took a deep breath and found a way.", "With a brave little jump, {name} put things right.",
                      "And just like that, {name} knew what to do."],
    },
    {  # 4 home-coming
        "action": ["walks home, content", "sits down and rests", "waves goodbye", "curls up, sleepy and happy"],
        "narration": ["As the light faded, {name} headed home, happy and tired.", "{Name} would remember {topic} for a long time.",
                      "Back home, {name} dreamed of the next adventure."],
    },
]
TIMES = ["dawn", "morning", "noon", "afternoon", "dusk", "night"]
TIME_PHRASES = {"dawn": "at dawn", "morning": "in the morning", "noon": "at noon",
                "afternoon": "in the afternoon", "dusk": "at dusk", "night": "at night"}
SHOT_FOR_BEAT = [["wide"], ["medium", "wide"], ["medium", "close-up"], ["close-up", "medium"], ["wide", "medium"]]
CAMERA_FOR_BEAT = [["zoom out", "pan right", "pan left"], ["pan right", "pan left", "static", "tilt down"],
                   ["zoom in", "static", "pan left"], ["zoom in", "tilt up", "static"], ["zoom out", "pan left", "tilt up"]]
REGIONS = ["left", "center", "right"]


def clip_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def story_topic(prompt: str) -> str:
    """A short noun phrase for the story's subject: 'a day at the seaside'."""
    text = re.sub(r"\s+", " ", prompt.strip().rstrip(".!?"))
    words = text.split(" ")
    topic = " ".join(words[:8])
    return topic[:80] if topic else "an adventure"


def place_of(prompt: str) -> str:
    """The first place (a key of PLACE_WORDS) whose words the prompt uses; a meadow otherwise."""
    words = set(re.findall(r"[\w']+", prompt.lower()))
    for place, keys in PLACE_WORDS.items():
        if words & set(keys):
            return place
    return "meadow"


def times_for(prompt: str, n: int, rng: random.Random) -> list[str]:
    """Times of day that advance through the story: a day-long arc, or a night story."""
    lower = prompt.lower()
    if "night" in lower or "dream" in lower:
        span = ["dusk", "night"]
    else:
        start = rng.choice([0, 1])
        span = TIMES[start:]
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

"""The offline Story Designer: a deterministic planner that writes an N-shot story arc.

No LLM: the prompt is read for a place and a mood, and a five-beat arc (arrival, discovery,
trouble, turn, home-coming) is laid over the N shots. Times of day advance through the story,
shot types and camera motions follow the beat (establishing wide shots open, close-ups carry
the turn). The same prompt, name, shot count and seed always give the same script.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from storyagent.models.animatic.backgrounds import PLACE_WORDS, stable_seed
from storyagent.schemas import NAMED_REGIONS, Shot, StoryScript

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


@dataclass
class TemplatePlanner:
    """Writes a `StoryScript` without an LLM. Deterministic in (prompt, name, num_shots, seed)."""

    shot_duration: float = 2.5

    def __call__(self, prompt: str, name: str, num_shots: int, seed: int = 0, class_word: str = "character") -> StoryScript:
        rng = random.Random(stable_seed(prompt, name, num_shots, seed))
        topic = _topic(prompt)
        place = _place_of(prompt)
        home = HOME_FOR[place]
        times = _times_for(prompt, num_shots, rng)
        phrases = rng.sample(PLACE_PHRASES[place], k=len(PLACE_PHRASES[place]))
        fmt = {"name": name, "Name": name[:1].upper() + name[1:], "topic": topic}

        shots: list[Shot] = []
        prev_shot, prev_camera, prev_region = "", "", ""
        for i in range(num_shots):
            # 1. Where in the arc this shot falls decides its beat.
            beat_id = _beat_index(i, num_shots)
            beat = BEATS[beat_id]
            # 2. The story opens and closes near home when there is room for it.
            at_home = num_shots >= 5 and (i == num_shots - 1) and rng.random() < 0.5
            place_phrase = rng.choice(PLACE_PHRASES[home]) if at_home else phrases[i % len(phrases)]
            background = f"{place_phrase} {TIME_PHRASES[times[i]]}"
            # 3. Framing follows the beat but never repeats the previous shot exactly.
            shot_type = _pick(rng, SHOT_FOR_BEAT[beat_id], avoid=prev_shot if i else "")
            camera = _pick(rng, CAMERA_FOR_BEAT[beat_id], avoid=prev_camera)
            region = _pick(rng, REGIONS, avoid=prev_region)
            action = rng.choice(beat["action"])
            narration = rng.choice(beat["narration"]).format(place=place_phrase, **fmt)
            shots.append(Shot(
                index=i + 1,
                narration=narration,
                description=f"{name} the {class_word} {action}, {background}, {shot_type} shot, storybook illustration",
                subject_action=action,
                subject_region=NAMED_REGIONS[region],
                background=background,
                shot_type=shot_type,
                camera_motion=camera,
                duration=self.shot_duration,
            ))
            prev_shot, prev_camera, prev_region = shot_type, camera, region
        title = f"{fmt['Name']} and {topic}" if not topic.lower().startswith(name.lower()) else topic
        return StoryScript(title=_clip(title[:1].upper() + title[1:], 200),
                           logline=_clip(f"{fmt['Name']} the {class_word}: {prompt.strip()}", 600), shots=shots)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _topic(prompt: str) -> str:
    """A short noun phrase for the story's subject: 'a day at the seaside'."""
    text = re.sub(r"\s+", " ", prompt.strip().rstrip(".!?"))
    words = text.split(" ")
    topic = " ".join(words[:8])
    return topic[:80] if topic else "an adventure"


def _place_of(prompt: str) -> str:
    words = set(re.findall(r"[\w']+", prompt.lower()))
    for place, keys in PLACE_WORDS.items():
        if words & set(keys):
            return place
    return "meadow"


def _times_for(prompt: str, n: int, rng: random.Random) -> list[str]:
    """Times of day that advance through the story: a day-long arc, or a night story."""
    lower = prompt.lower()
    if "night" in lower or "dream" in lower:
        span = ["dusk", "night"]
    else:
        start = rng.choice([0, 1])
        span = TIMES[start:]
    return [span[min(len(span) - 1, round(i * (len(span) - 1) / max(n - 1, 1)))] for i in range(n)]


def _beat_index(i: int, n: int) -> int:
    if n == 1:
        return 0
    return min(4, round(i * 4 / (n - 1)))


def _pick(rng: random.Random, options: list[str], avoid: str) -> str:
    choices = [o for o in options if o != avoid] or options
    return rng.choice(choices)

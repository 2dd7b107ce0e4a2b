"""The offline Story Designer: a deterministic planner that writes an N-shot story arc.

No LLM: the prompt is read for a place and a mood, and a five-beat arc (arrival, discovery,
trouble, turn, home-coming) is laid over the N shots. Times of day advance through the story,
shot types and camera motions follow the beat (establishing wide shots open, close-ups carry
the turn). The same prompt, name, shot count and seed always give the same script.
"""

from __future__ import annotations

import random

from storyagent.models.animatic.backgrounds import stable_seed
from storyagent.models.planner.arc import (
    BEATS,
    CAMERA_FOR_BEAT,
    HOME_FOR,
    PLACE_PHRASES,
    REGIONS,
    SHOT_FOR_BEAT,
    TIME_PHRASES,
    beat_index,
    clip_text,
    pick,
    place_of,
    story_topic,
    times_for,
)
from storyagent.models.planner.config import PlannerConfig
from storyagent.schemas import NAMED_REGIONS, Shot, StoryScript


class TemplatePlanner:
    """Writes a `StoryScript` without an LLM. Deterministic in (prompt, name, num_shots, seed)."""

    def __init__(self, config: PlannerConfig | None = None) -> None:
        self.config = config or PlannerConfig()

    def __call__(self, prompt: str, name: str, num_shots: int, seed: int = 0, class_word: str = "character") -> StoryScript:
        rng = random.Random(stable_seed(prompt, name, num_shots, seed))
        # 1. What the story is about, where it happens, and the time of day of every shot.
        topic = story_topic(prompt)
        place = place_of(prompt)
        times = times_for(prompt, num_shots, rng)
        phrases = rng.sample(PLACE_PHRASES[place], k=len(PLACE_PHRASES[place]))
        fmt = {"name": name, "Name": name[:1].upper() + name[1:], "topic": topic}

        # 2. One shot per position in the arc, each framed unlike the one before it.
        shots: list[Shot] = []
        previous = ("", "", "")
        for i in range(num_shots):
            at_home = num_shots >= 5 and (i == num_shots - 1) and rng.random() < 0.5
            place_phrase = rng.choice(PLACE_PHRASES[HOME_FOR[place]]) if at_home else phrases[i % len(phrases)]
            shot, previous = self.shot(i, num_shots, rng, previous, f"{place_phrase} {TIME_PHRASES[times[i]]}",
                                       place_phrase, class_word, fmt)
            shots.append(shot)

        # 3. Title and logline.
        title = f"{fmt['Name']} and {topic}" if not topic.lower().startswith(name.lower()) else topic
        return StoryScript(title=clip_text(title[:1].upper() + title[1:], 200),
                           logline=clip_text(f"{fmt['Name']} the {class_word}: {prompt.strip()}", 600), shots=shots)

    def shot(self, i: int, num_shots: int, rng: random.Random, previous: tuple[str, str, str], background: str,
             place_phrase: str, class_word: str, fmt: dict[str, str]) -> tuple[Shot, tuple[str, str, str]]:
        """Shot `i`: its beat from where it falls in the arc, framing from the beat, never the previous
        (shot type, camera, region) exactly; returns the shot and its framing."""
        beat_id = beat_index(i, num_shots)
        beat = BEATS[beat_id]
        prev_shot, prev_camera, prev_region = previous
        shot_type = pick(rng, SHOT_FOR_BEAT[beat_id], avoid=prev_shot if i else "")
        camera = pick(rng, CAMERA_FOR_BEAT[beat_id], avoid=prev_camera)
        region = pick(rng, REGIONS, avoid=prev_region)
        action = rng.choice(beat["action"])
        narration = rng.choice(beat["narration"]).format(place=place_phrase, **fmt)
        name = fmt["name"]
        shot = Shot(
            index=i + 1,
            narration=narration,
            description=f"{name} the {class_word} {action}, {background}, {shot_type} shot, storybook illustration",
            subject_action=action,
            subject_region=NAMED_REGIONS[region],
            background=background,
            shot_type=shot_type,
            camera_motion=camera,
            duration=self.config.shot_duration,
        )
        return shot, (shot_type, camera, region)

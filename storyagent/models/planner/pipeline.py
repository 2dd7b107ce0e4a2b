"""The offline Story Designer: a deterministic planner that writes an N-shot story arc.

No LLM: the prompt is read for its action, its place, its subject and object, and a kind of story
(baking, a ghost story, a first day at school, a treasure hunt ...). Five beats (arrival,
discovery, trouble, turn, home-coming) are laid over the N shots (`beat_plan`: a turn always has
its trouble before it) and filled with those pieces, never with the prompt pasted in:
- a prompt that names an action gets an arc built around it (actions.py): every shot's subject
  action and narration hold that verb; the genre only colours the title, logline and some lines;
- a prompt that names a place has every shot's background hold the prompt's own place noun ("on
  the bank of the pond"), drawn as its scene; a prompt naming none is set where its action or
  genre happens.
Times of day advance through the story, shot types and camera motions follow the beat. The same
prompt, name, shot count and seed always give the same script.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from storyagent.models.animatic.backgrounds import stable_seed
from storyagent.models.planner.arc import (
    CAMERA_FOR_BEAT,
    HOME_FOR,
    PLACE_PHRASES,
    REGIONS,
    SHOT_FOR_BEAT,
    background_text,
    beat_plan,
    choose_line,
    clip_text,
    noun_phrases,
    pick,
    split_where,
    times_for,
)
from storyagent.models.planner.actions import arc_for, arc_slots
from storyagent.models.planner.config import PlannerConfig
from storyagent.models.planner.genres import GENRES
from storyagent.models.planner.cast import Plan, read_cast, stage_cast
from storyagent.models.planner.reading import Reading, read_prompt
from storyagent.schemas import NAMED_REGIONS, Shot, StoryScript, who

_choose = choose_line


class TemplatePlanner:
    """Writes a `StoryScript` without an LLM. Deterministic in (prompt, name, num_shots, seed)."""

    def __init__(self, config: PlannerConfig | None = None) -> None:
        self.config = config or PlannerConfig()

    def __call__(self, prompt: str, name: str, num_shots: int, seed: int = 0, class_word: str = "character",
                 supporting: Sequence[tuple[str, str]] = ()) -> StoryScript:
        """The story of `prompt` about `name` (a `class_word`); with `supporting` characters ((name, class word)
        pairs) a cast's story (`cast.py`): every shot lists the characters it shows, each with its own action."""
        if not supporting:
            return self.plan(prompt, read_prompt(prompt), name, num_shots, seed, class_word).script
        cast = [(name, class_word), *((n, c) for n, c in supporting)]
        parts = read_cast(prompt, cast)
        lead = parts.focus
        # The story is told about the character the prompt makes act (the lead, unless it names another);
        # the seed follows the film's lead, as a one-character story's does.
        plan = self.plan(prompt, parts.reading, lead.name, num_shots, seed, lead.class_word, seed_name=name)
        return stage_cast(plan, parts, random.Random(stable_seed(prompt, name, num_shots, seed, "cast")))

    def plan(self, prompt: str, reading: Reading, name: str, num_shots: int, seed: int = 0,
             class_word: str = "character", seed_name: str | None = None) -> Plan:
        """The story of `reading` about `name`, and what each shot was made of (`Plan`)."""
        rng = random.Random(stable_seed(prompt, seed_name or name, num_shots, seed))
        # 1. What the story is, where it happens, and the time of day of every shot.
        genre = GENRES[reading.genre]
        cls = reading.subject if class_word == "character" and reading.subject else class_word
        times = times_for(prompt, num_shots, rng, night_story=genre.night)
        if reading.place_noun is not None:
            own = noun_phrases(reading.place, reading.place_noun, reading.place_prep, reading.place_article)
        else:
            own = PLACE_PHRASES[reading.place]
        phrases = rng.sample(own, k=len(own))
        fmt = {"name": name, "Name": name[:1].upper() + name[1:], "cls": cls, **reading.slots()}
        # The prompt's own action, when it names one, shapes every beat; else its genre does.
        if reading.action is not None:
            arc = arc_for(reading, genre)
            beats, titles, loglines = arc.beats, arc.titles, arc.loglines
            fmt |= arc_slots(reading)
        else:
            beats, titles, loglines = genre.beats, genre.titles, genre.loglines
        plan = beat_plan(num_shots)

        # 2. One shot per position in the arc, each framed unlike the one before it.
        shots: list[Shot] = []
        formats: list[dict[str, str]] = []
        previous = ("", "", "")
        said: set[str] = set()
        for i in range(num_shots):
            # Only a story whose prompt names neither a place nor an action (which happens where it happens)
            # may end somewhere else (back home).
            at_home = (not reading.named_place and reading.action is None and num_shots >= 5 and i == num_shots - 1
                       and rng.random() < 0.5)
            where = rng.choice(PLACE_PHRASES[HOME_FOR[reading.place]]) if at_home else phrases[i % len(phrases)]
            place = split_where(where)[1]
            shot_fmt = fmt | {"where": where, "place": place}
            shot, previous = self.shot(i, plan[i], rng, previous, background_text(place, times[i], reading.weather),
                                       beats, shot_fmt, prompt, said)
            said.add(shot.narration)
            shots.append(shot)
            formats.append(shot_fmt)

        # 3. Title and logline, from the same pieces.
        where = phrases[0]
        title = _choose(rng, titles, fmt | {"where": where}, prompt)
        logline = _choose(rng, loglines, fmt | {"where": where, "place": split_where(where)[1]}, prompt)
        script = StoryScript(title=clip_text(title, 200), logline=clip_text(logline, 600), shots=shots)
        return Plan(script=script, reading=reading, beats=plan, formats=formats, arc_beats=beats, prompt=prompt)

    def shot(self, i: int, beat_id: int, rng: random.Random, previous: tuple[str, str, str], background: str,
             beats, fmt: dict[str, str], prompt: str, said: set[str]) -> tuple[Shot, tuple[str, str, str]]:
        """Shot `i` on beat `beat_id`: its lines and framing from the beat, never the previous
        (shot type, camera, region) exactly; returns the shot and its framing."""
        lines, actions = beats[beat_id]
        prev_shot, prev_camera, prev_region = previous
        shot_type = pick(rng, SHOT_FOR_BEAT[beat_id], avoid=prev_shot if i else "")
        camera = pick(rng, CAMERA_FOR_BEAT[beat_id], avoid=prev_camera)
        region = pick(rng, REGIONS, avoid=prev_region)
        action = rng.choice(actions).format(**fmt)
        narration = _choose(rng, lines, fmt, prompt, avoid=said)
        shot = Shot(
            index=i + 1,
            narration=clip_text(narration, 400),
            description=clip_text(f"{who(fmt['name'], fmt['cls'])} {action}, {background}, {shot_type} shot, "
                                  "storybook illustration", 600),
            subject_action=clip_text(action, 200),
            subject_region=NAMED_REGIONS[region],
            background=clip_text(background, 300),
            shot_type=shot_type,
            camera_motion=camera,
            duration=self.config.shot_duration,
        )
        return shot, (shot_type, camera, region)

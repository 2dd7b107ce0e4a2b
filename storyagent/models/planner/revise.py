"""Revising one shot from a reviewer's words, offline and deterministically.

The shot is re-derived from its own fields plus the request (`feedback.parse_feedback`): the
background is rebuilt from its place, time and weather (the old time and weather words are
taken out, never pasted over); the description is rebuilt from the subject, the action and
that background; the narration follows a new place or action. Requests stack: a shot moved to
the kitchen and then made night is "the kitchen at night". The reviewer's own words never go
into the background or the description verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from storyagent.models.animatic.scene_words import PLACE_WORDS, TIME_WORDS, WEAK_TIME_WORDS, WEATHER_WORDS, SceneSpec, time_in, weather_in
from storyagent.models.planner.arc import SUNLESS_TIMES, TIME_PHRASES, WEATHER_PHRASES, clip_text
from storyagent.models.planner.cast import bounding, describe, joined, side_by_side
from storyagent.models.planner.feedback import Revision, parse_cast_feedback, parse_feedback, understood
from storyagent.schemas import NAMED_REGIONS, Region, Shot, ShotCharacter, who

__all__ = ["Revision", "parse_feedback", "revise_cast_shot", "revise_shot", "understood"]

_TIME_AND_WEATHER = sorted({w for table in (TIME_WORDS, WEATHER_WORDS) for ws in table.values() for w in ws}
                           | {"daytime", "daylight"} | set(WEAK_TIME_WORDS["night"]), key=len, reverse=True)
_STRIP = re.compile(r"[,;]?\s*\b(?:(?:at|in|during|on|by|under)\s+(?:the\s+|a\s+)?)?(?:early\s+|late\s+)?(?:"
                    + "|".join(re.escape(w) for w in _TIME_AND_WEATHER) + r")\b", re.IGNORECASE)
_NARRATION_TIME = {"dawn": "dawn", "morning": "morning", "noon": "noon", "afternoon": "afternoon", "dusk": "evening",
                   "night": "night"}
_ON = {"beach", "shore", "coast", "farm", "moon", "planet", "street", "island", "mountain", "hill", "summit", "peak",
       "slope", "seabed", "porch", "doorstep"}
_AT = {"market", "castle", "house", "cottage", "lake", "river", "pond", "station", "bakery", "school", "stall"}


def place_without_time(background: str) -> str:
    """The background's place phrase with its time-of-day and weather words taken out."""
    text = _STRIP.sub("", background)
    text = re.sub(r"\s+", " ", text).strip(" ,;.")
    return re.sub(r"\b(a|an|the)\s+(?=,|$)", "", text).strip(" ,;") or background


def compose_background(place: str, time: str | None, weather: str | None) -> str:
    """'the kitchen' + night + rain -> 'the kitchen at night, in the rain' (no sunshine at night)."""
    text = place + (f" {TIME_PHRASES[time]}" if time else "")
    if weather and weather != "fair" and not (weather == "sunny" and time in SUNLESS_TIMES):
        text += f", {WEATHER_PHRASES[weather]}"
    return text


def _where(phrase: str) -> str:
    """'the beach' -> 'on the beach', 'the kitchen' -> 'in the kitchen' (a long phrase up to its first comma)."""
    phrase = phrase.split(",")[0].strip()
    phrase = re.sub(r"^(A|An|The)\b", lambda m: m.group(1).lower(), phrase)
    last = re.findall(r"[\w']+", phrase.lower())[-1:]
    prep = "on" if last and last[0] in _ON else "at" if last and last[0] in _AT else "in"
    return f"{prep} {phrase}"


def _rename_place(narration: str, old_place: str, old_phrase: str, new_phrase: str) -> str | None:
    """The narration with its mention of the old place swapped for the new one; None if it names no place."""
    words = "|".join(re.escape(w) for w in sorted(PLACE_WORDS.get(old_place, ()), key=len, reverse=True))
    patterns = [re.escape(old_phrase)] if old_phrase else []
    if words:
        patterns.append(rf"\b(?:(?:the|a|an)\s+(?:[\w'-]+\s+){{0,2}}?)?(?:{words})\b")
    for pattern in patterns:
        m = re.search(rf"(?:\b(in|on|at|by)\s+)?{pattern}", narration, flags=re.IGNORECASE)
        if m:
            # "in the garden" becomes "on the beach": the preposition follows the new place.
            new = _where(new_phrase) if m.group(1) in ("in", "on", "at") else new_phrase
            new = f"{m.group(1)} {new}" if m.group(1) == "by" else new
            return narration[:m.start()] + new + narration[m.end():]
    return None


def _retime(narration: str, time: str) -> str:
    """Time-of-day words in the narration moved to `time`; no sunshine after dark."""
    words = "|".join(re.escape(w) for ws in TIME_WORDS.values() for w in sorted(ws, key=len, reverse=True))
    text = re.sub(rf"\b(?:{words})\b", _NARRATION_TIME[time], narration, flags=re.IGNORECASE)
    if time in SUNLESS_TIMES:
        text = re.sub(r"\b(?:sunny|sunlit|sunshiny)\s+", "", text, flags=re.IGNORECASE)
    return text


def _time_and_weather(rev: Revision, background: str) -> tuple[str | None, str | None]:
    """The revised time and weather: a sunny request by night brings the day back, night drops the sunshine."""
    time = rev.time or time_in(background, weak=False)
    weather = rev.weather or weather_in(background)
    if weather == "sunny" and time in SUNLESS_TIMES:
        if rev.weather == "sunny" and rev.time is None:
            time = "noon"
        else:
            weather = None
    return time, (None if weather == "fair" else weather)


@dataclass(frozen=True)
class _Scene:
    """Where, when and how a revised shot is framed (one character's shot and a cast's alike)."""

    old_place: str
    """The place the shot's background named before the revision."""
    old_phrase: str
    """The old background's place phrase, without its time and weather words."""
    moved: bool
    """The words moved the shot to another place."""
    phrase: str
    """The place phrase now."""
    time: str | None
    background: str
    shot_type: str

    @classmethod
    def revised(cls, shot: Shot, rev: Revision) -> _Scene:
        old = SceneSpec.from_text(shot.background)
        old_phrase = place_without_time(shot.background)
        moved = rev.place is not None and rev.place != old.place
        phrase = rev.place_phrase if moved and rev.place_phrase else old_phrase
        time, weather = _time_and_weather(rev, shot.background)
        return cls(old.place, old_phrase, moved, phrase, time, clip_text(compose_background(phrase, time, weather), 300),
                   rev.shot_type or shot.shot_type.value)

    def narration(self, shot: Shot, acted: str | None) -> str:
        """The shot's narration in this scene: `acted` (the line a new action wrote) or its own line with the
        place renamed where the shot moved; either with its time words moved to a new time."""
        narration = acted if acted is not None else shot.narration
        if acted is None and self.moved:
            narration = _rename_place(narration, self.old_place, self.old_phrase, self.phrase) or narration
        if self.time and self.time != time_in(shot.background, weak=False):
            narration = _retime(narration, self.time)
        return narration


def revise_shot(shot: Shot, feedback: str, *, name: str, class_word: str,
                cast: Sequence[tuple[str, str]] | None = None) -> Shot:
    """`shot` re-derived with the reviewer's `feedback` applied; the same shot when the words are not understood.

    With a `cast` of several characters ((name, class word) pairs, the lead first) the words may name one of
    them (`revise_cast_shot`)."""
    if cast is not None and len(cast) > 1:
        return revise_cast_shot(shot, feedback, list(cast))
    rev = parse_feedback(feedback)
    if rev.empty:
        return shot
    scene = _Scene.revised(shot, rev)
    background, shot_type = scene.background, scene.shot_type
    action = rev.action or shot.subject_action
    acted = f"{name[:1].upper() + name[1:]} {action} {_where(scene.phrase)}." if rev.action else None
    narration = scene.narration(shot, acted)
    return Shot(
        index=shot.index,
        narration=clip_text(narration, 400),
        description=clip_text(f"{who(name, class_word)} {action}, {background}, {shot_type} shot, storybook illustration", 600),
        subject_action=clip_text(action, 200),
        subject_region=NAMED_REGIONS[rev.region] if rev.region else shot.subject_region,
        background=background,
        shot_type=shot_type,
        camera_motion=rev.camera or shot.camera_motion,
        duration=shot.duration,
    )


def revise_cast_shot(shot: Shot, feedback: str, cast: list[tuple[str, str]]) -> Shot:
    """A cast's shot re-derived with the reviewer's words: "Crong on the left" moves Crong there and the others
    beside him (nobody hidden), "Mo waves" gives Mo that action (and brings Mo into a shot he was not in); the
    place, time, weather, framing and camera change as in a one-character shot. Words that name no one change
    the character the shot is about (the one doing its `subject_action`). The same shot when nothing is understood
    or the words name someone not in the cast (the caller says so)."""
    heard = parse_cast_feedback(feedback, cast)
    rev = heard.revision
    if heard.unknown is not None or (rev.empty and heard.who is None):
        return shot
    lead, classes = cast[0][0], dict(cast)
    people = shot.cast(lead)
    focus = heard.who or next((c.name for c in people if c.action == shot.subject_action), people[0].name)

    scene = _Scene.revised(shot, rev)
    background, shot_type = scene.background, scene.shot_type

    # Who is where: the named character at the asked place, the others beside it in their left-to-right order.
    names = [c.name for c in people]
    joining = focus not in names
    if joining:
        others = joined(names)
        people = [*people, ShotCharacter(name=focus, action=rev.action or f"joins {others}", region=people[-1].region)]
    actions = {c.name: (clip_text(rev.action, 200) if c.name == focus and rev.action else c.action) for c in people}
    regions = {c.name: c.region for c in people}
    if rev.region or joining:
        if len(people) == 1:
            regions[focus] = Region.named(rev.region or "center")
        else:
            row = sorted((c for c in people if c.name != focus), key=lambda c: c.region.x)
            slot = {"left": 0, "right": len(row)}.get(rev.region or "right", len(people) // 2)
            order = [*row[:slot], *(c for c in people if c.name == focus), *row[slot:]]
            regions = dict(zip((c.name for c in order), side_by_side(len(people))))
    characters = [ShotCharacter(name=c.name, action=actions[c.name], region=regions[c.name]) for c in people]

    acted = None
    if rev.action:
        others = [c for c in characters if c.name != focus]
        meanwhile = (", while " + " and ".join(f"{c.name} {c.action}" for c in others)) if others else ""
        acted = f"{focus[:1].upper() + focus[1:]} {actions[focus]} {_where(scene.phrase)}{meanwhile}."
    narration = scene.narration(shot, acted)
    about = next((c for c in people if c.action == shot.subject_action), characters[0]).name
    alone = not shot.characters and [c.name for c in characters] == [lead]
    # Every other field (the line's speaker ...) is the shot's own.
    return Shot.model_validate(shot.model_dump() | {
        "narration": clip_text(narration, 400),
        "description": describe(characters, classes, background, shot_type),
        "subject_action": actions[about],
        "subject_region": (regions[about] if alone else bounding([c.region for c in characters])).model_dump(),
        "background": background,
        "shot_type": shot_type,
        "camera_motion": rev.camera or shot.camera_motion,
        # A shot of the lead alone (no `characters`, as a one-character film writes it) stays that way.
        "characters": [] if alone else [c.model_dump() for c in characters],
    })

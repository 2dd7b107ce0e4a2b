"""Whether a story keeps its prompt: the prompt's action in the shots' actions, its place in their backgrounds.

One reading of the prompt (`read_prompt`) serves the offline planner and the check of an LLM's
script, so both hold a story to the same words: "a fox learns to swim" needs a form of "swim"
(swim, swims, swam, swum, swimming); "an astronaut lost in a jungle" needs "jungle" in a background.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from storyagent.models.planner.reading import read_prompt
from storyagent.models.planner.verbs import forms
from storyagent.schemas import StoryScript


@dataclass(frozen=True)
class Requirements:
    """What every story of a prompt must hold."""

    action: str | None
    """Base form of the prompt's main action ("swim"); None when it names none."""
    forms: tuple[str, ...]
    """Every form of the action that counts ("swim", "swims", "swam", "swum", "swimming")."""
    place: str | None
    """The prompt's own place noun ("jungle", "river"); None when it names no place."""
    scene: str | None
    """The scene that place is drawn as (a key of PLACE_WORDS: "jungle", "lake")."""

    def shows_action(self, text: str) -> bool:
        return self.action is None or _has_word(text, self.forms)

    def shows_place(self, text: str) -> bool:
        return self.place is None or _has_word(text, (self.place,))


def _has_word(text: str, words: tuple[str, ...]) -> bool:
    pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.search(rf"\b(?:{pattern})\b", text.lower()) is not None


def prompt_requirements(prompt: str, cast: Sequence[tuple[str, str]] | None = None) -> Requirements:
    """The action and place `prompt` names, as the planner reads them (for a `cast` of several characters, the
    action they act: "Pip teaches Mo to swim" is a swimming story)."""
    if cast is not None and len(cast) > 1:
        from storyagent.models.planner.cast import read_cast

        reading = read_cast(prompt, list(cast)).reading
    else:
        reading = read_prompt(prompt)
    return Requirements(action=reading.action, forms=forms(reading.action) if reading.action else (),
                        place=reading.place_head, scene=reading.place if reading.named_place else None)


def check_keeps_prompt(prompt: str, script: StoryScript, every_shot: bool = False,
                       cast: Sequence[tuple[str, str]] | None = None) -> list[str]:
    """Why `script` does not keep `prompt` (an empty list when it does), each reason one clause.

    By default a story is held to naming the action in some shot (its action, description or narration)
    and setting some shot's background in the place; `every_shot` holds each shot's action and
    background to them (what the offline planner promises)."""
    need = prompt_requirements(prompt, cast)
    reasons: list[str] = []
    if need.action is not None:
        said = ", ".join(need.forms)
        if every_shot:
            missing = [s.index for s in script.shots if not need.shows_action(s.subject_action)]
            if missing:
                reasons.append(f"the subject_action of shot(s) {', '.join(map(str, missing))} does not show the prompt's "
                               f"action {need.action!r} (one of: {said})")
        elif not any(need.shows_action(" ".join((s.subject_action, s.description, s.narration))) for s in script.shots):
            reasons.append(f"no shot shows the prompt's action {need.action!r}: put one of {said} in the shots' "
                           "subject_action and narration")
    if need.place is not None:
        if every_shot:
            missing = [s.index for s in script.shots if not need.shows_place(s.background)]
            if missing:
                reasons.append(f"the background of shot(s) {', '.join(map(str, missing))} is not the prompt's place "
                               f"{need.place!r}")
        elif not any(need.shows_place(s.background) for s in script.shots):
            reasons.append(f"no shot is set in the prompt's place {need.place!r}: use the word {need.place!r} in the "
                           "shots' background")
    return reasons

"""The shots' spoken lines at a review: a reviewer's words about how a line is said, and hearing the lines.

"redo 2: say it slower" or "redo 2: happier" asks for shot 2's line to be said another way, not for
its text to change. Such words (`voice_only`) are kept as a voice redo of the shot at the story stage
(`Manifest.add_redo("story", shots, words, rewritten=set())`), which the sound stage reads back
(`tools.sound.voice_feedback`) into the line's `VoiceStyle`; no agent rewrites or redraws anything, and
only that shot's line is spoken again, since only its narration's hash changed. Words that ask for a
text change as well ("say it slower at night") take the usual way through the stage's agent, and their
voice part is kept the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storyagent.errors import StoryAgentError

if TYPE_CHECKING:
    from storyagent.agents.context import CrewContext

FILLER = frozenset({
    "a", "an", "the", "it", "its", "it's", "this", "that", "his", "her", "their", "line", "lines", "voice", "narration",
    "narrator", "say", "says", "saying", "said", "speak", "spoken", "speaking", "read", "reading", "tell", "told",
    "make", "sound", "sounds", "tone", "please", "and", "but", "bit", "little", "lot", "much", "more", "less", "way",
    "tad", "slightly", "somewhat", "rather", "very", "quite", "too", "just", "so", "again", "one", "with", "in", "of",
    "for", "me", "us", "be", "is", "should", "could", "can", "you", "do", "try", "now", "instead", "redo",
})
"""Words around a voice request that ask for nothing themselves ("say it a bit slower, please")."""


SPEECH = re.compile(r"\b(?:say|says|said|saying|speak|speaks|spoken|speaking|read|reads|reading|voice|voiced|narration|"
                    r"narrator|narrate|line|lines|tell|tells|told|tone|whisper|whispered|whispering)\b")
"""Words that name the spoken line. At the story review every voice word is about the line (the story is
what is heard); at the storyboard and the clips "slower" or "livelier" may be about the picture or the
motion, so there the words must say they are about the line ("say it slower", "the voice happier")."""


def voice_words(words: str, stage: str = "story") -> bool:
    """Whether `words`, given at the review of `stage`, change how a line is said (slower, happier ...)."""
    from storyagent.models.voice import VoiceStyle

    if not words.strip() or VoiceStyle.from_words(words) == VoiceStyle():
        return False
    return stage == "story" or SPEECH.search(words.lower()) is not None


def voice_only(words: str, stage: str = "story") -> bool:
    """Whether `words` ask only for the line to be said another way: voice words and filler, nothing that
    would change the shot's text or pictures ("say it slower" yes; "say it slower at night" no)."""
    from storyagent.models.voice.style import requests

    if not voice_words(words, stage):
        return False
    return all(t in FILLER or requests(f"more {t}") for t in re.findall(r"[a-z']+", words.lower()))


def _targets(ctx: CrewContext, shots: list[int] | None) -> list[int]:
    return list(shots) if shots else [s.index for s in ctx.script.shots] if ctx.script else []


def keep_voice_words(ctx: CrewContext, shots: list[int] | None, words: str) -> list[int]:
    """Record `words` as a voice redo of `shots` (all when None) at the story stage; returns the shots."""
    targets = _targets(ctx, shots)
    ctx.run.manifest.add_redo("story", targets, words.strip(), rewritten=set())
    return targets


@dataclass
class Lines:
    """The shots' narration files as the review hears them."""

    paths: dict[int, Path] = field(default_factory=dict)
    """Shot -> its spoken line (`audio/narration_NN.wav`); shots with nothing to say are absent."""
    spoken_now: list[int] = field(default_factory=list)
    """The shots whose line was spoken now (the rest were reused unchanged)."""
    note: str = ""
    """Why there are no lines (no voice on this machine, `--voice none`), in one sentence; "" when there are."""


def speak_lines(ctx: CrewContext) -> Lines:
    """Every shot's line spoken (each reused while its text, voice and style are unchanged), for a review.

    A voice that cannot speak here is not the reviewer's problem at this moment: the review goes on,
    told in one sentence why there is nothing to hear.
    """
    from storyagent.tools.sound import narrate

    if ctx.script is None:
        return Lines()
    try:
        stems, made = narrate(ctx.run, ctx.script)
    except StoryAgentError as exc:
        return Lines(note=f"No narration to hear: {exc}")
    if not stems:
        return Lines(note=f"No narration to hear (voice {ctx.cfg.voice}).")
    return Lines({shot: ctx.ws.path(rel) for shot, rel in stems.items()}, sorted(made))


def describe_lines(lines: Lines, redone: list[int]) -> str:
    """The lines for the reviewer: which were spoken again after their words about the voice, then each
    shot's file."""
    if not lines.paths:
        return lines.note
    text = "Each shot's line: " + "; ".join(f"shot {i}: {p}" for i, p in sorted(lines.paths.items()))
    again = [i for i in redone if i in lines.spoken_now]
    same = [i for i in redone if i not in lines.spoken_now]
    said = []
    if again:
        said.append(f"Line{'s' if len(again) > 1 else ''} of shot {', '.join(map(str, again))} redone: spoken again "
                    "as you asked; the story's text is unchanged.")
    if same:
        said.append(f"The line of shot {', '.join(map(str, same))} sounds the same with those words.")
    return "\n".join([*said, text])

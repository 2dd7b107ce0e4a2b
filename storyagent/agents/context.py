"""What the crew shares during one run: the run folder, settings, and the work so far.

Agents exchange short messages; the artifacts themselves stay here and on disk.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field

from storyagent.agents.llm import LLMSettings
from storyagent.agents.playback import LinePlayer
from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.tools.production import Production, Stage
from storyagent.workspace import Workspace

STAGES: tuple[Stage, ...] = typing.get_args(Stage)
"""The reviewed stages, in the protocol's order."""
STAGE_AGENT = {"story": "story_designer", "storyboard": "storyboard_generator", "video": "video_creator"}
OBSERVER = "observer"
DIRECTOR = "director"


@dataclass
class Verdict:
    """An Observer's review of one stage."""

    ok: bool
    shots: list[int] | None = None
    """Shots to redo; None means the whole stage."""
    feedback: str = ""
    stop: bool = False
    """The reviewer asked to end the session now (the work so far is kept)."""
    approve_rest: bool = False
    """The reviewer said "render": approve this and every later stage without asking."""


GOOD_WORDS = {"ok", "okay", "good", "yes", "y", "approve", "approved", "fine", "lgtm", "continue", ""}


def parse_verdict(text: str, num_shots: int) -> Verdict:
    """Read a review: 'good', 'redo 2,4: make it night', 'bad: ...', 'render', 'quit', or free feedback.

    Shot numbers must lie in 1..num_shots; anything else is an InputError naming the range.
    """
    raw = (text or "").strip()
    low = raw.lower().strip(" .!")
    if low in GOOD_WORDS or low.startswith(("good", "ok ", "approve")):
        return Verdict(ok=True)
    if low in {"render", "render it", "go", "finish"}:
        return Verdict(ok=True, approve_rest=True)
    if low in {"quit", "exit", "stop", "q"}:
        return Verdict(ok=True, stop=True)
    m = re.match(r"^\s*(?:redo|redraw|again)\s+(?:shots?\s+)?\[?([\d,\s\-and]+)\]?\s*(?::|-|—)?\s*(.*)$", raw,
                 re.IGNORECASE | re.DOTALL)
    if m:
        shots = _shot_numbers(m.group(1), num_shots)
        return Verdict(ok=False, shots=shots, feedback=m.group(2).strip())
    if re.match(r"^\s*redo\s*$", raw, re.IGNORECASE):
        return Verdict(ok=False)
    feedback = re.sub(r"^\s*bad\s*[:,-]?\s*", "", raw, flags=re.IGNORECASE)
    return Verdict(ok=False, feedback=feedback)


def _shot_numbers(text: str, num_shots: int) -> list[int]:
    shots: set[int] = set()
    for part in re.split(r"[,\s]+|and", text):
        if not part.strip():
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if a.strip().isdigit() and b.strip().isdigit():
                shots.update(range(int(a), int(b) + 1))
            continue
        if part.strip().isdigit():
            shots.add(int(part))
    bad = sorted(s for s in shots if not 1 <= s <= num_shots)
    if bad or not shots:
        raise InputError(f"Shot numbers must be between 1 and {num_shots}; got {text.strip()!r}.")
    return sorted(shots)


@dataclass
class CrewContext(Production):
    """The run's work (`Production`) and the conversation's state around it."""

    llm: LLMSettings = field(default_factory=lambda: LLMSettings("none"))
    max_rounds: int = 3
    """Reviews per stage before the work is accepted as it is."""
    stage: str = "story"
    pending: Verdict | None = None
    """The Observer's last "bad" verdict, waiting for the stage's agent."""
    approve_rest: bool = False
    stopped: bool = False
    failure: Exception | None = None
    """A tool's failure other than bad arguments: it ends the run with its own message."""
    events: list[str] = field(default_factory=list)
    """Notes for the transcript: a review overruled, a stage accepted after its last round."""
    terminal: bool = True
    """The reviewer sits at this terminal (tables and picture previews are printed there, lines played);
    False when the review questions go to another front end (the studio, a notebook, a test)."""
    voice_redone: list[int] = field(default_factory=list)
    """Shots whose line a reviewer asked to be said another way, to be spoken again for the next review."""
    lines_heard: bool = False
    """The reviewer has heard every line once in this session; later reviews play only what changed."""
    player: LinePlayer = field(default_factory=LinePlayer)

    @property
    def ws(self) -> Workspace:
        return self.run.ws

    @property
    def cfg(self) -> RunConfig:
        return self.run.config

    @property
    def review(self) -> str:
        return self.run.config.review

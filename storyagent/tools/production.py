"""The film's work so far and the functions the crew registers with AG2.

`Production` holds one run's story, storyboard and clips as the crew makes them, and what a
reviewer's redo does to them. `storyboard_tool` and `video_tool` are the Storyboard Generator's
and the Video Creator's tools: typed arguments, checked (`ShotSelection`), then one call into the
run's backend through the stage functions.
"""

# No `from __future__ import annotations`: AG2 reads the tools' argument types from live annotations.
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Literal

from storyagent.hashing import hash_json
from storyagent.schemas import ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.run import Run
from storyagent.tools.story import Rewriter, cast_of, offline_rewriter, revise_shots, save_story
from storyagent.tools.storyboard import ShotSelection, generate_storyboard
from storyagent.tools.video import animate_shots

Stage = Literal["story", "storyboard", "video"]
ShotsArg = Annotated[list[int] | None, "Shot numbers to redo; leave empty to do every shot."]
FeedbackArg = Annotated[str, "The reviewer's words for those shots; empty for none."]


@dataclass
class Production:
    """One run's work as the crew makes it; the artifacts themselves stay on disk."""

    run: Run
    rewrite: Rewriter | None = None
    """How a reviewer's words become new shot text: the LLM Story Designer, or the offline planner."""
    script: StoryScript | None = None
    storyboard: list[StoryboardFrame] = field(default_factory=list)
    clips: list[ShotClip] = field(default_factory=list)
    report: str = ""
    """What the last tool call changed, in words, for the next human review."""
    drawn_from: StoryScript | None = None
    """The story the storyboard was last drawn from: the clips stage redraws pictures only when it changed."""

    def __post_init__(self) -> None:
        if self.rewrite is None:
            self.rewrite = offline_rewriter(self.run.config)

    def approval(self, stage: Stage) -> dict[str, str]:
        """What a reviewer's approval of `stage` covers: the reviewer, and the stage's work as it is now."""
        work: object = {"story": lambda: self.script.model_dump(mode="json") if self.script else None,
                        "storyboard": lambda: [(f.shot, f.input_hash) for f in self.storyboard],
                        "video": lambda: [(c.shot, c.input_hash) for c in self.clips]}[stage]()
        return {"by": self.run.config.review, "work": hash_json(work)}

    def approved(self, stage: Stage) -> bool:
        return self.run.manifest.approval(stage) == self.approval(stage)

    @contextlib.contextmanager
    def approval_kept(self, stage: Stage) -> Iterator[None]:
        """An approved stage whose work the reviewer's own later words change stays approved: reopening the
        run does not ask again about what they asked for."""
        was_approved = self.approved(stage)
        yield
        if was_approved and not self.approved(stage):
            self.run.manifest.approve(stage, self.approval(stage))

    def take_review(self, stage: Stage, sel: ShotSelection) -> str:
        """A reviewer's redo at `stage`: a new take of the named shots (all when none is named), their words
        kept with it, and the story rewritten from the words (the Story Designer's job: an LLM, or the
        offline planner). Returns what the crew understood, for the reviewer."""
        assert self.script is not None and self.rewrite is not None
        targets = sel.shots or [s.index for s in self.script.shots]
        heard = ""
        changed: list[int] = []
        if sel.feedback:
            revision = revise_shots(self.script, sel.shots, sel.feedback, self.rewrite, cast_of(self.run.config))
            if revision.note:
                # Words the crew cannot use as they are (a name not in the cast): nothing is made again.
                return revision.note + " "
            changed = revision.changed
            if changed:
                with self.approval_kept("story"):
                    self.script = save_story(self.run, revision.script, f"rewritten after the {stage} review")
            if revision.unchanged:
                heard = (f"The words {sel.feedback!r} changed nothing in the text of shot(s) "
                         f"{_listed(revision.unchanged)}; they are redone with a new seed. ")
        self.run.manifest.add_redo(stage, targets, sel.feedback, rewritten=set(changed))
        return heard

    def draw_storyboard(self) -> list[int]:
        """Draw every missing or stale storyboard picture; returns the shots drawn now."""
        assert self.script is not None
        before = {f.shot: f.input_hash for f in self.storyboard}
        self.storyboard = generate_storyboard(self.run, self.script)
        self.drawn_from = self.script
        return [f.shot for f in self.storyboard if before.get(f.shot) != f.input_hash]

    def redraw_stale_storyboard(self) -> list[int]:
        """Before the clips: redraw the pictures whose shot text a later redo changed; returns those shots.

        Only the story's text can make a drawn picture stale by then (a clip redo keeps the picture's own
        seed and notes), so with the story as drawn nothing is looked at, and the run's progress shows
        the storyboard once rather than a second, all-reused pass.
        """
        if self.storyboard and self.script == self.drawn_from:
            return []
        return self.draw_storyboard()

    def animate(self) -> list[int]:
        """Animate every missing or stale clip; returns the shots animated now."""
        assert self.script is not None
        before = {c.shot: c.input_hash for c in self.clips}
        self.clips = animate_shots(self.run, self.script, self.storyboard)
        return [c.shot for c in self.clips if before.get(c.shot) != c.input_hash]


def storyboard_tool(work: Production) -> Callable[..., str]:
    """The Storyboard Generator's `generate_storyboard` tool."""

    def generate_storyboard(shots: ShotsArg = None, feedback: FeedbackArg = "") -> str:
        assert work.script is not None, "the story comes first"
        sel = ShotSelection.from_call(shots, feedback, len(work.script.shots))
        heard = work.take_review("storyboard", sel) if sel.shots or sel.feedback else ""
        redrawn = work.draw_storyboard()
        work.report = changes_report("storyboard", redrawn, len(work.script.shots), heard)
        return (f"Storyboard ready: {len(work.storyboard)} pictures in storyboard/, contact sheet storyboard.png. "
                f"{work.report}")

    return generate_storyboard


def video_tool(work: Production) -> Callable[..., str]:
    """The Video Creator's `animate_shots` tool."""

    def animate_shots(shots: ShotsArg = None, feedback: FeedbackArg = "") -> str:
        assert work.script is not None and work.storyboard, "the storyboard comes first"
        sel = ShotSelection.from_call(shots, feedback, len(work.script.shots))
        heard = work.take_review("video", sel) if sel.shots or sel.feedback else ""
        # Words that change how a shot looks ("make it night") change its text, so its picture is
        # stale: it is redrawn before it is animated, never animated from the old picture.
        with work.approval_kept("storyboard"):
            redrawn = work.redraw_stale_storyboard()
        first = (f"Shot{'s' if len(redrawn) > 1 else ''} {_listed(redrawn)}: storyboard picture redrawn first, "
                 "since the words change how the shot looks. ") if redrawn else ""
        redone = work.animate()
        work.report = first + changes_report("clips", redone, len(work.script.shots), heard)
        return f"Clips ready: {len(work.clips)} shots in shots/. {work.report}"

    return animate_shots


def _listed(shots: list[int]) -> str:
    return ", ".join(map(str, shots))


def changed_shots(before: StoryScript, after: StoryScript) -> list[int]:
    """The shots whose text differs between two versions of a story (a shot added or dropped counts)."""
    old, new = {s.index: s for s in before.shots}, {s.index: s for s in after.shots}
    return sorted(i for i in old.keys() | new.keys() if old.get(i) != new.get(i))


def changes_report(what: str, made: list[int], num_shots: int, heard: str = "") -> str:
    """What a pass changed, for the reviewer: "Storyboard drawn now: shot 2; unchanged: shot 1, 3, 4."."""
    kept = [i for i in range(1, num_shots + 1) if i not in made]
    if not made:
        return heard + ("No shot of the story changed." if what == "story" else f"No {what} changed.")
    verb = {"story": "rewritten", "storyboard": "drawn"}.get(what, "animated")
    return heard + (f"{what.capitalize()} {verb} now: shot {_listed(made)}" +
                    (f"; unchanged: shot {_listed(kept)}." if kept else "."))

"""The storyboard stage: one picture (and subject mask) per shot, plus a contact sheet; and the checked
arguments every tool call of the crew takes (`ShotSelection`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storyagent.errors import InputError
from storyagent.hashing import hash_json
from storyagent.media import contact_sheet, write_png
from storyagent.schemas import Artifact, StoryboardFrame, StoryScript, format_validation_error
from storyagent.tools.shot_failure import ShotFailedError
from storyagent.workspace import Workspace

if TYPE_CHECKING:
    from storyagent.tools.run import Run

SHEET = "storyboard.png"


class ToolArgumentError(InputError):
    """A tool was called with arguments it cannot use; the caller may try again."""


class ShotSelection(BaseModel):
    """A tool's request: which shots to (re)do and the reviewer's words. No paths: tools pick their own files."""

    model_config = ConfigDict(extra="forbid")

    shots: list[int] | None = Field(default=None, description="Shot numbers to redo; empty or null for every shot.")
    feedback: str = Field(default="", max_length=2000, description="The reviewer's words for those shots.")

    @classmethod
    def from_call(cls, shots: list[int] | None, feedback: str, num_shots: int) -> ShotSelection:
        """A tool call's arguments, checked; every problem is a `ToolArgumentError`, which goes back to the
        LLM that made the call so it can correct it (a bounded number of times)."""
        try:
            selection = cls(shots=shots or None, feedback=feedback)
        except ValidationError as exc:
            raise ToolArgumentError(format_validation_error(exc, "tool arguments") + ".") from exc
        bad = [s for s in selection.shots or [] if not 1 <= s <= num_shots]
        if bad:
            raise ToolArgumentError(f"Shot numbers must be between 1 and {num_shots}; got {bad}.")
        return selection


def generate_storyboard(run: Run, script: StoryScript) -> list[StoryboardFrame]:
    """Draw every shot's storyboard picture that is missing or stale; return all of them.

    A backend that draws shot by shot hands each picture to the run's executor (`run_per_shot`); one
    that draws a film's pictures together (the diffusion storyboard) is one piece of work per film for
    the executor (`draw_storyboard`), whose changes to the manifest the driver then makes itself.
    """
    run.manifest.set_stage("storyboard", "running")
    run.train()  # the backend's fine-tunes: here, after the story is approved (paper, Fig. 3)
    if run.backend.draws_by_shot:
        frames = run.backend.storyboard(run, script)
    else:
        frames, journal, failed = run.executor.call(run, draw_storyboard, script, run.backend.resources)
        run.manifest.replay(journal)
        if failed is not None:  # the shots drawn are recorded now; the others are drawn again on --resume
            raise failed
    write_contact_sheet(run.ws, script, frames)
    run.manifest.set_stage("storyboard", "done")
    return frames


def draw_storyboard(run: Run, script: StoryScript) -> tuple[list[StoryboardFrame], list, ShotFailedError | None]:
    """A film's whole storyboard as one piece of work: its frames, the manifest changes to replay, and the
    shots that could not be drawn.

    With the driver's own run it records as it draws (nothing to replay; a failure is raised as ever);
    on a worker's read-only view it draws through a journaling view of the manifest and hands its
    changes back, those of the shots it drew even when another shot failed.
    """
    if not run.manifest.read_only:
        return run.backend.storyboard(run, script), [], None
    view = run.reread(journal=True)
    try:
        return view.backend.storyboard(view, script), view.manifest.journal, None
    except ShotFailedError as exc:
        return [], view.manifest.journal, exc


def write_contact_sheet(ws: Workspace, script: StoryScript, frames: list[StoryboardFrame]) -> None:
    h = hash_json([f.input_hash for f in frames] + [s.narration for s in script.shots] + [script.title])
    if ws.fresh("storyboard_sheet", h):
        return
    images = [np.asarray(Image.open(ws.path(f.path)).convert("RGB")) for f in frames]
    captions = [f"{s.index}. {s.shot_type.value}, {s.camera_motion.value}: {s.narration}" for s in script.shots]
    write_png(ws.path(SHEET), contact_sheet(images, captions, columns=min(4, len(images)), title=script.title))
    ws.record("storyboard_sheet", Artifact(kind="contact_sheet", path=SHEET, input_hash=h))

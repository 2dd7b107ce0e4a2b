"""Tool: the storyboard, one picture (and subject mask) per shot, plus a contact sheet."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from pydantic import BaseModel, ConfigDict, Field

from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.media import contact_sheet, write_png
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.schemas import Artifact, Shot, StoryboardFrame, StoryScript
from storyagent.tools.per_shot import run_per_shot
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_json

SHEET = "storyboard.png"


def frame_path(index: int) -> str:
    return f"storyboard/shot_{index:02d}.png"


def shot_take(ws: Workspace, stage: str, index: int) -> int:
    """How many times a reviewer asked for this shot's `stage` to be redone; part of its seed and hash."""
    return int(ws.manifest.get("takes", {}).get(stage, {}).get(str(index), 0))


def bump_takes(ws: Workspace, stage: str, indices: Iterable[int]) -> None:
    takes = ws.manifest.setdefault("takes", {}).setdefault(stage, {})
    for i in indices:
        takes[str(i)] = takes.get(str(i), 0) + 1
    ws.save()


class ToolArgumentError(InputError):
    """A tool was called with arguments it cannot use; the caller may try again."""


class ShotSelection(BaseModel):
    """A tool's request: which shots to (re)do and the reviewer's words. No paths: tools pick their own files."""

    model_config = ConfigDict(extra="forbid")

    shots: list[int] | None = Field(default=None, description="Shot numbers to redo; empty or null for every shot.")
    feedback: str = Field(default="", max_length=2000, description="The reviewer's words for those shots.")

    def checked(self, num_shots: int) -> ShotSelection:
        bad = [s for s in self.shots or [] if not 1 <= s <= num_shots]
        if bad:
            raise ToolArgumentError(f"Shot numbers must be between 1 and {num_shots}; got {bad}.")
        return self


def animatic_config(cfg: RunConfig) -> AnimaticConfig:
    return AnimaticConfig(width=cfg.width, height=cfg.height, fps=cfg.fps)


def storyboard_hash(cfg: RunConfig, subject: PreparedSubject, shot_json: dict, take: int) -> str:
    return hash_json({"shot": shot_json, "subject": subject.input_hash, "backend": cfg.backend, "seed": cfg.seed,
                      "take": take, "size": [cfg.width, cfg.height], "renderer": 1})


def generate_storyboard(ws: Workspace, cfg: RunConfig, script: StoryScript, subject: PreparedSubject,
                        show_progress: bool = True) -> list[StoryboardFrame]:
    """Draw every shot's storyboard picture that is missing or stale; return all of them."""
    ws.set_stage("storyboard", "running")
    if cfg.backend == "diffusion":
        frames = _diffusion_frames(ws, cfg, script, subject, show_progress)
        write_contact_sheet(ws, script, frames)
        ws.set_stage("storyboard", "done")
        return frames
    pipe = AnimaticPipeline(animatic_config(cfg))
    sprites = SubjectSprites.from_reference(subject.reference)
    def input_hash(shot: Shot) -> str:
        return storyboard_hash(cfg, subject, shot.model_dump(mode="json"), shot_take(ws, "storyboard", shot.index))

    def draw(shot: Shot, h: str) -> StoryboardFrame:
        take = shot_take(ws, "storyboard", shot.index)
        render = pipe(shot, sprites, seed=cfg.seed + 1000 * take, num_frames=1)
        rel, mrel = frame_path(shot.index), frame_path(shot.index).replace(".png", "_mask.png")
        write_png(ws.path(rel), render.storyboard)
        write_png(ws.path(mrel), (render.storyboard_mask * 255).astype(np.uint8))
        return StoryboardFrame(path=rel, mask_path=mrel, input_hash=h, shot=shot.index, meta={"take": take})

    frames = run_per_shot(ws, script.shots, key_prefix="storyboard", label="Storyboard", kind=StoryboardFrame,
                          input_hash=input_hash, make=draw, show_progress=show_progress)
    write_contact_sheet(ws, script, frames)
    ws.set_stage("storyboard", "done")
    return frames


def _diffusion_frames(ws: Workspace, cfg: RunConfig, script: StoryScript, subject: PreparedSubject,
                      show_progress: bool) -> list[StoryboardFrame]:
    from storyagent.tools.diffusion import diffusion_storyboard, stage_hash

    takes = ws.manifest.get("takes", {}).get("storyboard", {})
    h = stage_hash(cfg, script, subject, takes)
    keys = [f"storyboard/shot_{s.index:02d}" for s in script.shots]
    if all(ws.fresh(k, h) for k in keys):
        return [StoryboardFrame.model_validate(ws.artifact(k)) for k in keys]
    return diffusion_storyboard(ws, cfg, script, subject, h, show_progress)


def write_contact_sheet(ws: Workspace, script: StoryScript, frames: list[StoryboardFrame]) -> None:
    h = hash_json([f.input_hash for f in frames] + [s.narration for s in script.shots] + [script.title])
    if ws.fresh("storyboard_sheet", h):
        return
    images = [np.asarray(Image.open(ws.path(f.path)).convert("RGB")) for f in frames]
    captions = [f"{s.index}. {s.shot_type.value}, {s.camera_motion.value}: {s.narration}" for s in script.shots]
    write_png(ws.path(SHEET), contact_sheet(images, captions, columns=min(4, len(images)), title=script.title))
    ws.record("storyboard_sheet", Artifact(kind="contact_sheet", path=SHEET, input_hash=h))

"""One shot of the diffusion storyboard after StoryDiffusion and LangSAM: its files written, the
drawn subject removed, the user's subject redrawn (StoryAnyDoor) and the shot's frames recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pydantic import BaseModel, Field

from storyagent.media import write_png
from storyagent.schemas import Shot, StoryboardFrame
from storyagent.tools.per_shot import STORYBOARD_DIR, shot_key
from storyagent.workspace import Workspace

if TYPE_CHECKING:
    from storyagent.models.langsam import SubjectMask
    from storyagent.tools.backends.diffusion_storyboard import StoryboardModels


class Redraw(Protocol):
    """The redraw step's shape (AnyDoor's `AnyDoorPipeline.redraw` fits): the full frame with the
    reference subject drawn into `target_mask`."""

    def __call__(self, reference_image: np.ndarray, reference_mask: np.ndarray, target_image: np.ndarray,
                 target_mask: np.ndarray, seed: int | None = 0) -> np.ndarray: ...


class DiffusionShotRecord(BaseModel):
    """What the storyboard made for one shot; paths are relative to the run folder."""

    shot: int
    initial: str
    mask: str | None = None
    """The subject's mask in the shot's storyboard picture (the redrawn one when there is one)."""
    hole: str | None = None
    """What the removal refilled (the drawn subject's mask, grown)."""
    removed: str | None = None
    final: str | None = None
    seed: int = 0
    found: bool
    box: tuple[float, float, float, float] | None = None
    score: float = 0.0
    reason: str = Field(default="", description="Why the shot needs attention (e.g. subject not found); empty when fine.")


@dataclass
class ShotStep:
    """Step 3 of `generate_storyboard_diffusion` for one shot: write, remove, redraw, record."""

    root: Path
    models: StoryboardModels
    described: str
    detect: str
    workspace: Workspace | None
    reference: tuple[np.ndarray, np.ndarray] | None
    redraw: Redraw | Callable[..., np.ndarray] | None
    retried: bool = False
    """The shot being drawn is the retry after a GPU out-of-memory error (noted in its frame's meta)."""

    def retrying(self, shot: Shot, *args) -> DiffusionShotRecord:
        """The step for `shot`, once more in low-VRAM mode after a GPU out-of-memory error."""

        attempts: list[int] = []

        def run() -> DiffusionShotRecord:
            attempts.append(1)
            self.retried = len(attempts) > 1
            return self(shot, *args)

        try:
            return self.models.retrying([shot.index], run)[0]
        finally:
            self.retried = False

    def __call__(self, shot: Shot, image: np.ndarray, found: SubjectMask, prompt: str, seed: int, h: str,
                 frame_hash: str) -> DiffusionShotRecord:
        name = shot_key(STORYBOARD_DIR, shot.index)
        write_png(self.root / f"{name}_initial.png", image)
        record = DiffusionShotRecord(shot=shot.index, initial=f"{name}_initial.png", found=found.found,
                                     box=found.box, score=found.score, seed=seed)
        subject_mask = found.mask
        if not found.found:
            # 3a. Nothing to remove: keep the initial picture, tell the Observer why.
            record.reason = f"shot {shot.index}: {found.reason}; the storyboard keeps the initial picture"
            self._record(f"{name}_initial", StoryboardFrame(path=record.initial, input_hash=h, shot=shot.index,
                                                            meta={"found": False, "reason": record.reason}))
        else:
            # 3b. Remove the drawn subject (its grown mask is the hole the redraw fills).
            diffusion = self.models.remover.method == "diffusion"  # inpainting with SDXL's parts
            with self.models.running(self.models.story) if diffusion else contextlib.nullcontext():
                removed = self.models.remover(image, found.mask, background=shot.background, avoid=self.described,
                                              seed=seed)
            record.hole, record.removed = f"{name}_hole.png", f"{name}_removed.png"
            write_png(self.root / record.hole, removed.mask.astype(np.uint8) * 255)
            write_png(self.root / record.removed, removed.image)
            self._record(f"{name}_initial", StoryboardFrame(
                path=record.initial, mask_path=record.hole, input_hash=h, shot=shot.index,
                meta={"found": True, "box": list(found.box), "score": found.score, "prompt": prompt}))
            self._record(f"{name}_removed", StoryboardFrame(
                path=record.removed, mask_path=record.hole, input_hash=h, shot=shot.index,
                meta={"method": removed.method, "subject_box": list(removed.box)}))
            # 4. Redraw the user's subject into the hole (AnyDoor), when a redraw step is given.
            if self.redraw is not None:
                final, subject_mask, note = self.paste_redrawn(removed.image, removed.mask, seed)
                record.final = f"{name}.png"
                record.reason = f"shot {shot.index}: {note}" if note else ""
                write_png(self.root / record.final, final)
        record.mask = f"{name}_mask.png"
        write_png(self.root / record.mask, subject_mask.astype(np.uint8) * 255)
        # The shot's storyboard frame, recorded once.
        meta = {"found": record.found, "reason": record.reason, "prompt": prompt, "seed": seed}
        if self.retried:
            meta["out_of_memory_retry"] = "ran out of GPU memory; drawn again with --low-vram settings"

        self._record(name, StoryboardFrame(path=record.final or record.initial, mask_path=record.mask,
                                           input_hash=frame_hash, shot=shot.index,
                                           meta=meta | ({"redraw": True} if record.final else {})))
        return record

    def paste_redrawn(self, removed: np.ndarray, hole: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(picture, its subject mask, a note): the redrawn subject over the removal's background.

        AnyDoor regenerates its whole square crop; only the new subject is taken from it, so the
        background the removal refilled survives around a smaller or differently posed subject.
        """
        redrawn = np.asarray(self.redraw(self.reference[0], self.reference[1], removed, hole, seed=seed), np.uint8)
        with self.models.running(self.models.langsam):
            (new,) = self.models.langsam([redrawn], self.detect)
        mask, note = (new.mask, "") if new.found else (
            hole, f"the redrawn subject was not found ({new.reason}); pasted through the removal's hole")
        return np.where(mask[..., None], redrawn, removed), mask, note

    def _record(self, key: str, artifact: StoryboardFrame) -> None:
        if self.workspace is not None:
            self.workspace.record(key, artifact)

"""The `animatic` backend (the CPU default, no weights): each character cut from its own reference media,
composited over backgrounds drawn from the shot text and moved by the shot's camera motion."""

from __future__ import annotations

import numpy as np

from storyagent.config import RunConfig
from storyagent.fileio import slugify
from storyagent.hashing import hash_json
from storyagent.media import write_png, write_video
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.per_shot import clip_path, frame_path, run_per_shot
from storyagent.tools.run import Backend, Run

RENDERER = 4
"""The animatic renderer's version, part of every picture's and clip's hash: raised when what it draws
changes (4: the subject acts its action), so a resumed run redraws what an older renderer made. A cast
drew nothing new in a one-character film, whose pictures stayed as they were."""


def character_mask_path(index: int, name: str) -> str:
    """Where shot `index`'s storyboard mask of character `name` goes: `storyboard/shot_03_mask_crong.png`."""
    return frame_path(index).removesuffix(".png") + f"_mask_{slugify(name, 30)}.png"


def cast_inputs(run: Run) -> dict[str, object]:
    """What a picture or clip depends on in a film of several characters: each one's name and reference
    frames' hash, in the cast's order. Nothing for a film of one, whose hashes stay what they were (its
    one character is the `subject` every hash already names)."""
    if len(run.cast) < 2:
        return {}
    return {"cast": [[member.subject.name, member.input_hash] for member in run.cast]}


class AnimaticBackend(Backend):
    """Storyboard pictures and clips from the animatic renderer, shot by shot."""

    name = "animatic"

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.pipe = AnimaticPipeline(AnimaticConfig(width=cfg.width, height=cfg.height, fps=cfg.fps))
        self.cast_sprites: dict[str, SubjectSprites] = {}
        """Every character's sprites by name, in the cast's order (the lead first)."""
        self.sprites: SubjectSprites | None = None
        """The lead's sprites."""
        self.cast_inputs: dict[str, object] = {}

    def prepare_subject(self, run: Run) -> None:
        """Cut every character out of each of its reference frames (the sprites every shot composites)."""
        self.cast_sprites = {m.subject.name: SubjectSprites.from_reference(m.reference) for m in run.cast}
        self.sprites = self.cast_sprites[run.subject.subject.name]
        self.cast_inputs = cast_inputs(run)

    def storyboard(self, run: Run, script: StoryScript) -> list[StoryboardFrame]:
        cfg = self.cfg

        def input_hash(shot: Shot) -> str:
            return hash_json({"shot": shot.model_dump(mode="json"), "subject": run.subject.input_hash,
                              "backend": self.name, "seed": run.seed("storyboard", shot.index),
                              "size": [cfg.width, cfg.height], "renderer": RENDERER, **self.cast_inputs})

        return run_per_shot(run, script.shots, stage="storyboard", label="Storyboard", input_hash=input_hash)

    def draw(self, run: Run, shot: Shot, input_hash: str) -> StoryboardFrame:
        seed = run.seed("storyboard", shot.index)
        render = self.pipe(shot, self.cast_sprites, seed=seed, num_frames=1)
        rel, mrel = frame_path(shot.index), frame_path(shot.index).replace(".png", "_mask.png")
        write_png(run.ws.path(rel), render.storyboard)
        write_png(run.ws.path(mrel), (render.storyboard_mask * 255).astype(np.uint8))
        meta: dict[str, object] = {"seed": seed}
        if len(run.cast) > 1:
            # Each character's own mask (its pixels seen in the picture), for every shot of a cast's film,
            # also one that shows a single character; `mask_path` is all of them together.
            masks = {}
            for name, mask in render.storyboard_masks.items():
                masks[name] = character_mask_path(shot.index, name)
                write_png(run.ws.path(masks[name]), (mask * 255).astype(np.uint8))
            meta["character_masks"] = masks
        return StoryboardFrame(path=rel, mask_path=mrel, input_hash=input_hash, shot=shot.index, meta=meta)

    def clip_inputs(self) -> dict[str, object]:
        return {**super().clip_inputs(), "renderer": RENDERER, **self.cast_inputs}

    def animate(self, run: Run, shot: Shot, board: StoryboardFrame, input_hash: str) -> ShotClip:
        # The picture's own seed draws the scene, so the clip starts from the picture the reviewer saw; a
        # clip redo (a new video seed) retimes the motion from there.
        picture_seed = int(board.meta.get("seed", run.seed("storyboard", shot.index)))
        motion_seed = run.seed("video", shot.index) if run.manifest.take("video", shot.index) else None
        frames = self.pipe(shot, self.cast_sprites, seed=picture_seed, motion_seed=motion_seed).frames
        write_video(run.ws.path(clip_path(shot.index)), frames, self.cfg.fps)
        return ShotClip(path=clip_path(shot.index), input_hash=input_hash, shot=shot.index, num_frames=len(frames),
                        fps=self.cfg.fps)

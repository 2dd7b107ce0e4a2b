"""The `animatic` backend (the CPU default, no weights): the subject cut from its reference media,
composited over backgrounds drawn from the shot text and moved by the shot's camera motion."""

from __future__ import annotations

import numpy as np

from storyagent.config import RunConfig
from storyagent.hashing import hash_json
from storyagent.media import write_png, write_video
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.per_shot import clip_path, frame_path, run_per_shot
from storyagent.tools.run import Backend, Run

RENDERER = 4
"""The animatic renderer's version, part of every picture's and clip's hash: raised when what it draws
changes (4: the subject acts its action), so a resumed run redraws what an older renderer made."""


class AnimaticBackend(Backend):
    """Storyboard pictures and clips from the animatic renderer, shot by shot."""

    name = "animatic"

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.pipe = AnimaticPipeline(AnimaticConfig(width=cfg.width, height=cfg.height, fps=cfg.fps))
        self.sprites: SubjectSprites | None = None

    def prepare_subject(self, run: Run) -> None:
        """Cut the subject out of every reference frame (the sprites every shot composites)."""
        self.sprites = SubjectSprites.from_reference(run.subject.reference)

    def storyboard(self, run: Run, script: StoryScript) -> list[StoryboardFrame]:
        cfg = self.cfg

        def input_hash(shot: Shot) -> str:
            return hash_json({"shot": shot.model_dump(mode="json"), "subject": run.subject.input_hash,
                              "backend": self.name, "seed": run.seed("storyboard", shot.index),
                              "size": [cfg.width, cfg.height], "renderer": RENDERER})

        return run_per_shot(run, script.shots, stage="storyboard", label="Storyboard", input_hash=input_hash)

    def draw(self, run: Run, shot: Shot, input_hash: str) -> StoryboardFrame:
        seed = run.seed("storyboard", shot.index)
        render = self.pipe(shot, self.sprites, seed=seed, num_frames=1)
        rel, mrel = frame_path(shot.index), frame_path(shot.index).replace(".png", "_mask.png")
        write_png(run.ws.path(rel), render.storyboard)
        write_png(run.ws.path(mrel), (render.storyboard_mask * 255).astype(np.uint8))
        return StoryboardFrame(path=rel, mask_path=mrel, input_hash=input_hash, shot=shot.index, meta={"seed": seed})

    def clip_inputs(self) -> dict[str, object]:
        return {**super().clip_inputs(), "renderer": RENDERER}

    def animate(self, run: Run, shot: Shot, board: StoryboardFrame, input_hash: str) -> ShotClip:
        # The picture's own seed draws the scene, so the clip starts from the picture the reviewer saw; a
        # clip redo (a new video seed) retimes the motion from there.
        picture_seed = int(board.meta.get("seed", run.seed("storyboard", shot.index)))
        motion_seed = run.seed("video", shot.index) if run.manifest.take("video", shot.index) else None
        frames = self.pipe(shot, self.sprites, seed=picture_seed, motion_seed=motion_seed).frames
        write_video(run.ws.path(clip_path(shot.index)), frames, self.cfg.fps)
        return ShotClip(path=clip_path(shot.index), input_hash=input_hash, shot=shot.index, num_frames=len(frames),
                        fps=self.cfg.fps)

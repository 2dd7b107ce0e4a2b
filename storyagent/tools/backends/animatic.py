"""The `animatic` backend (the CPU default, no weights): the subject cut from its reference media,
composited over backgrounds drawn from the shot text and moved by the shot's camera motion."""

from __future__ import annotations

import numpy as np

from storyagent.config import RunConfig
from storyagent.media import write_png, write_video
from storyagent.models.animatic import AnimaticConfig, AnimaticPipeline, SubjectSprites
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.backends.base import Backend
from storyagent.tools.per_shot import STORYBOARD_DIR, clip_path, frame_path, run_per_shot, shot_take
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_json


class AnimaticBackend(Backend):
    """Storyboard pictures and clips from the animatic renderer, shot by shot."""

    name = "animatic"

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.pipe = AnimaticPipeline(AnimaticConfig(width=cfg.width, height=cfg.height, fps=cfg.fps))
        self.sprites: SubjectSprites | None = None
        self._subject_hash: str | None = None

    def prepare_subject(self, ws: Workspace, subject: PreparedSubject, show_progress: bool = True) -> None:
        """Cut the subject out of every reference frame (the sprites every shot composites)."""
        if self._subject_hash != subject.input_hash:
            self.sprites = SubjectSprites.from_reference(subject.reference)
            self._subject_hash = subject.input_hash

    def storyboard_hash(self, subject: PreparedSubject, shot: Shot, take: int) -> str:
        cfg = self.cfg
        return hash_json({"shot": shot.model_dump(mode="json"), "subject": subject.input_hash, "backend": self.name,
                          "seed": cfg.seed, "take": take, "size": [cfg.width, cfg.height], "renderer": 2})

    def storyboard(self, ws: Workspace, script: StoryScript, subject: PreparedSubject,
                   show_progress: bool) -> list[StoryboardFrame]:
        self.prepare_subject(ws, subject)

        def input_hash(shot: Shot) -> str:
            return self.storyboard_hash(subject, shot, shot_take(ws, "storyboard", shot.index))

        def draw(shot: Shot, h: str) -> StoryboardFrame:
            take = shot_take(ws, "storyboard", shot.index)
            render = self.pipe(shot, self.sprites, seed=self.cfg.seed + 1000 * take, num_frames=1)
            rel, mrel = frame_path(shot.index), frame_path(shot.index).replace(".png", "_mask.png")
            write_png(ws.path(rel), render.storyboard)
            write_png(ws.path(mrel), (render.storyboard_mask * 255).astype(np.uint8))
            return StoryboardFrame(path=rel, mask_path=mrel, input_hash=h, shot=shot.index, meta={"take": take})

        return run_per_shot(ws, script.shots, key_prefix=STORYBOARD_DIR, label="Storyboard", kind=StoryboardFrame,
                            input_hash=input_hash, make=draw, show_progress=show_progress)

    def animate(self, ws: Workspace, shot: Shot, board: StoryboardFrame, input_hash: str, seed: int) -> ShotClip:
        frames = self.pipe(shot, self.sprites, seed=seed).frames
        write_video(ws.path(clip_path(shot.index)), frames, self.cfg.fps)
        return ShotClip(path=clip_path(shot.index), input_hash=input_hash, shot=shot.index, num_frames=len(frames),
                        fps=self.cfg.fps)

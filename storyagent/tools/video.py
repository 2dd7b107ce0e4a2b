"""Tool: animate every shot into `shots/shot_NN.mp4`, redoing only what is missing or stale."""

from __future__ import annotations

from storyagent.config import RunConfig
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.backends.base import Backend, select_backend
from storyagent.tools.per_shot import CLIPS_DIR, run_per_shot, shot_take
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_json


def animate_shots(ws: Workspace, cfg: RunConfig, script: StoryScript, subject: PreparedSubject,
                  storyboard: list[StoryboardFrame], show_progress: bool = True,
                  backend: Backend | None = None) -> list[ShotClip]:
    """Make every shot's clip that is missing or stale; return all of them.

    `backend` is the run's (`select_backend(cfg)` when not given); the models it loads for the
    clips are released when the stage ends.
    """
    backend = backend or select_backend(cfg)
    boards = {f.shot: f for f in storyboard}
    try:
        backend.prepare_subject(ws, subject, show_progress)
        clip_inputs = backend.clip_inputs()

        def input_hash(shot: Shot) -> str:
            # A clip is made from its storyboard picture (by content) and its shot's text.
            board = boards[shot.index]
            return hash_json({"picture": board.meta.get("file_hashes", {}).get(board.path),
                              "shot": shot.model_dump(mode="json"), "subject": subject.input_hash, "fps": cfg.fps,
                              "take": shot_take(ws, "video", shot.index), **clip_inputs, "renderer": 1})

        def animate(shot: Shot, h: str) -> ShotClip:
            seed = cfg.seed + 1000 * shot_take(ws, "video", shot.index)
            return backend.animate(ws, shot, boards[shot.index], h, seed)

        ws.set_stage("video", "running")
        clips = run_per_shot(ws, script.shots, key_prefix=CLIPS_DIR, label="Animating shots", kind=ShotClip,
                             input_hash=input_hash, make=animate, show_progress=show_progress)
    finally:
        backend.release()
    ws.set_stage("video", "done")
    return clips

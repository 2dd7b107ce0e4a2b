"""The video stage: every shot animated into `shots/shot_NN.mp4` from its storyboard picture,
redoing only what is missing or stale."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storyagent.hashing import hash_json
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.per_shot import run_per_shot

if TYPE_CHECKING:
    from storyagent.tools.run import Run


def animate_shots(run: Run, script: StoryScript, storyboard: list[StoryboardFrame]) -> list[ShotClip]:
    """Make every shot's clip that is missing or stale; return all of them. The models the backend
    loads for the clips are released when the stage ends."""
    boards = {f.shot: f for f in storyboard}
    backend = run.backend
    run.train()  # a no-op when the storyboard stage trained already (the clips' adapter is its LoRA-BE)
    try:
        clip_inputs = backend.clip_inputs()

        def input_hash(shot: Shot) -> str:
            # A clip is made from its storyboard picture (by content), its shot's text and its own seed.
            board = boards[shot.index]
            return hash_json({"picture": board.meta.get("file_hashes", {}).get(board.path),
                              "shot": shot.model_dump(mode="json"), "subject": run.subject.input_hash,
                              "fps": run.config.fps, "seed": run.seed("video", shot.index), **clip_inputs,
                              "renderer": 2})

        run.manifest.set_stage("video", "running")
        clips = run_per_shot(run, script.shots, stage="video", label="Animating shots", input_hash=input_hash,
                             boards=boards)
    finally:
        backend.release()
    run.manifest.set_stage("video", "done")
    return clips

"""Tool: animate every shot into `shots/shot_NN.mp4`, redoing only what is missing or stale."""

from __future__ import annotations

from storyagent.config import RunConfig
from storyagent.media import write_video
from storyagent.models.animatic import AnimaticPipeline, SubjectSprites
from storyagent.schemas import Shot, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.per_shot import run_per_shot
from storyagent.tools.storyboard import animatic_config, shot_take
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_file, hash_json


def clip_path(index: int) -> str:
    return f"shots/shot_{index:02d}.mp4"


def animate_shots(ws: Workspace, cfg: RunConfig, script: StoryScript, subject: PreparedSubject,
                  storyboard: list[StoryboardFrame], show_progress: bool = True) -> list[ShotClip]:
    boards = {f.shot: f for f in storyboard}
    if cfg.backend == "diffusion":
        from storyagent.tools.diffusion import DiffusionAnimator

        animator = DiffusionAnimator(ws, cfg, boards)
        adapter_hash = hash_file(animator.adapter) if animator.adapter else None

        def render(shot: Shot, h: str, seed: int) -> ShotClip:
            return animator(shot, h, seed, clip_path(shot.index))
    else:
        adapter_hash = None
        pipe = AnimaticPipeline(animatic_config(cfg))
        sprites = SubjectSprites.from_reference(subject.reference)

        def render(shot: Shot, h: str, seed: int) -> ShotClip:
            frames = pipe(shot, sprites, seed=seed).frames
            write_video(ws.path(clip_path(shot.index)), frames, cfg.fps)
            return ShotClip(path=clip_path(shot.index), input_hash=h, shot=shot.index, num_frames=len(frames), fps=cfg.fps)

    def input_hash(shot: Shot) -> str:
        # A clip is made from its storyboard picture (by content) and its shot's text.
        board = boards[shot.index]
        return hash_json({"picture": board.meta.get("file_hashes", {}).get(board.path), "shot": shot.model_dump(mode="json"),
                          "subject": subject.input_hash, "fps": cfg.fps, "take": shot_take(ws, "video", shot.index),
                          "backend": cfg.backend, "adapter": adapter_hash, "renderer": 1})

    def animate(shot: Shot, h: str) -> ShotClip:
        return render(shot, h, cfg.seed + 1000 * shot_take(ws, "video", shot.index))

    ws.set_stage("video", "running")
    clips = run_per_shot(ws, script.shots, key_prefix="shots", label="Animating shots", kind=ShotClip,
                         input_hash=input_hash, make=animate, show_progress=show_progress)
    ws.set_stage("video", "done")
    return clips

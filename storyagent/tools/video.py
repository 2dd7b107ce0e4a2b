"""Tool: animate every shot into `shots/shot_NN.mp4`, redoing only what is missing or stale."""

from __future__ import annotations

from storyagent.config import RunConfig
from storyagent.media import write_video
from storyagent.models.animatic import AnimaticPipeline, SubjectSprites
from storyagent.progress import make_progress
from storyagent.schemas import ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.storyboard import animatic_config, shot_take
from storyagent.tools.subject import PreparedSubject
from storyagent.workspace import Workspace, hash_json


def clip_path(index: int) -> str:
    return f"shots/shot_{index:02d}.mp4"


def animate_shots(ws: Workspace, cfg: RunConfig, script: StoryScript, subject: PreparedSubject,
                  storyboard: list[StoryboardFrame], show_progress: bool = True) -> list[ShotClip]:
    pipe = AnimaticPipeline(animatic_config(cfg))
    sprites = SubjectSprites.from_reference(subject.reference)
    boards = {f.shot: f for f in storyboard}
    clips: list[ShotClip] = []
    ws.set_stage("video", "running")
    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("Animating shots", total=len(script.shots), status="")
        for shot in script.shots:
            take = shot_take(ws, "video", shot.index)
            key = f"shots/shot_{shot.index:02d}"
            # A clip is made from its storyboard picture: a new picture means a new clip.
            h = hash_json({"storyboard": boards[shot.index].input_hash, "fps": cfg.fps, "take": take, "renderer": 1})
            if ws.fresh(key, h):
                clips.append(ShotClip.model_validate(ws.artifact(key)))
                progress.update(task, advance=1, status=f"shot {shot.index} reused")
                continue
            render = pipe(shot, sprites, seed=cfg.seed + 1000 * take)
            rel = clip_path(shot.index)
            write_video(ws.path(rel), render.frames, cfg.fps)
            clips.append(ws.record(key, ShotClip(path=rel, input_hash=h, shot=shot.index,
                                                 num_frames=len(render.frames), fps=cfg.fps)))
            progress.update(task, advance=1, status=f"shot {shot.index} rendered")
    ws.set_stage("video", "done")
    return clips

"""The crew's work, stage by stage: subject → story → storyboard → shots → film.

This is the offline, straight-through order of the paper's protocol (Fig. 7); the AG2 group
chat drives the same tools in the same order when an LLM or an Observer takes part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storyagent.config import RunConfig
from storyagent.schemas import Film, ShotClip, StoryboardFrame, StoryScript
from storyagent.tools.film import assemble_film
from storyagent.tools.story import write_story
from storyagent.tools.storyboard import generate_storyboard
from storyagent.tools.subject import prepare_subject
from storyagent.tools.video import animate_shots
from storyagent.workspace import Workspace


@dataclass
class RunResult:
    root: Path
    script: StoryScript
    storyboard: list[StoryboardFrame]
    clips: list[ShotClip]
    film: Film


def run_straight(cfg: RunConfig, out: Path, resume: bool = False, show_progress: bool = True) -> RunResult:
    ws = Workspace.open(out, cfg.inputs_record(), resume=resume)
    subject = prepare_subject(ws, cfg)
    ws.log_speaker("story_designer", "offline planner")
    script = write_story(ws, cfg)
    ws.log_speaker("storyboard_generator", "generate_storyboard")
    storyboard = generate_storyboard(ws, cfg, script, subject, show_progress)
    ws.log_speaker("video_creator", "animate_shots")
    clips = animate_shots(ws, cfg, script, subject, storyboard, show_progress)
    film = assemble_film(ws, cfg, script, clips)
    return RunResult(ws.root, script, storyboard, clips, film)

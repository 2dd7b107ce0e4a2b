"""Tool: the Story Designer's output, written to `story.json` (a person may edit it between runs)."""

from __future__ import annotations

import json
from collections.abc import Callable

from pydantic import ValidationError

from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.fileio import atomic_write_text
from storyagent.models.planner import PlannerConfig, TemplatePlanner
from storyagent.schemas import Artifact, StoryScript, format_validation_error
from storyagent.workspace import Workspace, hash_json

STORY_FILE = "story.json"

Planner = Callable[[RunConfig], StoryScript]


def story_input_hash(cfg: RunConfig) -> str:
    return hash_json({"prompt": cfg.prompt, "name": cfg.name, "class_word": cfg.class_word,
                      "shots": cfg.shots, "seed": cfg.seed, "llm": cfg.llm, "duration": cfg.shot_duration})


def offline_planner(cfg: RunConfig) -> StoryScript:
    return TemplatePlanner(PlannerConfig(shot_duration=cfg.shot_duration))(cfg.prompt, cfg.name, cfg.shots, cfg.seed, cfg.class_word)


def load_story(ws: Workspace) -> StoryScript:
    path = ws.path(STORY_FILE)
    try:
        return StoryScript.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it and run again with --resume.") from exc
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, str(path)) + "; fix it and run again with --resume.") from exc


def existing_story(ws: Workspace, cfg: RunConfig) -> StoryScript | None:
    """The story already in the run folder for these inputs, including a person's edits to it."""
    entry = ws.artifact("story")
    if entry and entry["input_hash"] == story_input_hash(cfg) and ws.path(STORY_FILE).exists():
        return load_story(ws)
    return None


def save_story(ws: Workspace, cfg: RunConfig, script: StoryScript, made_by: str) -> StoryScript:
    atomic_write_text(ws.path(STORY_FILE), script.model_dump_json(indent=2) + "\n")
    ws.record("story", Artifact(kind="story", path=STORY_FILE, input_hash=story_input_hash(cfg), meta={"made_by": made_by}))
    ws.set_stage("story", "done")
    return script


def write_story(ws: Workspace, cfg: RunConfig, planner: Planner = offline_planner, made_by: str = "offline planner") -> StoryScript:
    """Reuse the story for these inputs if there is one, else plan it and save it."""
    script = existing_story(ws, cfg)
    if script is not None:
        return script
    return save_story(ws, cfg, planner(cfg), made_by)


def revise_shots(script: StoryScript, shots: list[int] | None, feedback: str) -> StoryScript:
    """Apply a reviewer's words to the named shots (all when None).

    The feedback leads the shot's background and description, so a request like "make it
    night" outranks what the shot said before, for the animatic's scene reader and for an
    image model's prompt alike. Unnamed shots stay byte-for-byte the same.
    """
    note = feedback.strip().rstrip(".")
    if not note:
        return script
    targets = set(shots) if shots else {s.index for s in script.shots}
    revised = []
    for shot in script.shots:
        if shot.index in targets:
            shot = shot.model_copy(update={
                "background": f"{note}; {shot.background}"[:300],
                "description": f"{note}; {shot.description}"[:600],
            })
        revised.append(shot)
    return script.model_copy(update={"shots": revised})

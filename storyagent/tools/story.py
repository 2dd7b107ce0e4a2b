"""Tool: the Story Designer's output, written to `story.json` (a person may edit it between runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from storyagent.config import RunConfig
from storyagent.errors import InputError
from storyagent.fileio import atomic_write_text
from storyagent.hashing import hash_json
from storyagent.models.planner import (PlannerConfig, TemplatePlanner, check_keeps_prompt, not_in_cast,
                                      parse_cast_feedback, revise_shot)
from storyagent.schemas import Artifact, StoryScript, format_validation_error
from storyagent.workspace import Workspace

if TYPE_CHECKING:
    from storyagent.tools.run import Run

STORY_FILE = "story.json"

Planner = Callable[[RunConfig], StoryScript]


def cast_of(cfg: RunConfig) -> list[tuple[str, str]]:
    """The film's characters as the story knows them: (name, class word), the lead first."""
    return [(m.name, m.class_word) for m in cfg.cast]


def story_input_hash(cfg: RunConfig) -> str:
    inputs: dict[str, object] = {"prompt": cfg.prompt, "name": cfg.name, "class_word": cfg.class_word,
                                 "shots": cfg.shots, "seed": cfg.seed, "llm": cfg.llm, "duration": cfg.shot_duration}
    if cfg.supporting:
        # Only a cast's story depends on the others (a one-character story keeps the key it had).
        inputs["cast"] = cast_of(cfg)[1:]
    return hash_json(inputs)


def offline_planner(cfg: RunConfig) -> StoryScript:
    return TemplatePlanner(PlannerConfig(shot_duration=cfg.shot_duration))(
        cfg.prompt, cfg.name, cfg.shots, cfg.seed, cfg.class_word, supporting=cast_of(cfg)[1:])


def load_story(ws: Workspace) -> StoryScript:
    path = ws.path(STORY_FILE)
    try:
        return StoryScript.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it and run again with --resume.") from exc
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, str(path)) + "; fix it and run again with --resume.") from exc


def existing_story(run: Run) -> StoryScript | None:
    """The story already in the run folder for these inputs, including a person's edits to it."""
    ws = run.ws
    entry = ws.manifest.artifact("story")
    if entry and entry["input_hash"] == story_input_hash(run.config) and ws.path(STORY_FILE).exists():
        return load_story(ws)
    return None


def prompt_misses(cfg: RunConfig, script: StoryScript) -> list[str]:
    """Why `script` does not keep the run's prompt: no shot with its action, or none set in its place
    (the offline planner's reading of the prompt, `check_keeps_prompt`; a cast's prompt as its characters
    act it); empty when it keeps it."""
    return check_keeps_prompt(cfg.prompt, script, cast=cast_of(cfg))


def save_story(run: Run, script: StoryScript, made_by: str, warning: str | None = None) -> StoryScript:
    """Write the story and record who made it; `warning` (a story accepted although it misses the prompt)
    is kept in the manifest beside it."""
    ws = run.ws
    atomic_write_text(ws.path(STORY_FILE), script.model_dump_json(indent=2) + "\n")
    meta: dict[str, object] = {"made_by": made_by}
    if warning:
        meta["warning"] = warning
    ws.record("story", Artifact(kind="story", path=STORY_FILE, input_hash=story_input_hash(run.config), meta=meta))
    ws.manifest.set_stage("story", "done")
    return script


def write_story(run: Run, planner: Planner = offline_planner, made_by: str = "offline planner") -> StoryScript:
    """Reuse the story for these inputs if there is one, else plan it and save it."""
    script = existing_story(run)
    if script is not None:
        return script
    return save_story(run, planner(run.config), made_by)


@dataclass
class Revision:
    """A story after a reviewer's words: which shots they changed, and which they could not change."""

    script: StoryScript
    changed: list[int]
    unchanged: list[int]
    """Named shots whose text the words left as it was (the reviewer is told so)."""
    note: str = ""
    """Why nothing was rewritten, when the words cannot be used as they are (a name not in the cast), in one
    sentence for the reviewer; empty otherwise."""


Rewriter = Callable[[StoryScript, list[int], str], StoryScript]
"""Rewrites the named shots of a story after a reviewer's words (the LLM Story Designer)."""


def offline_rewriter(cfg: RunConfig) -> Rewriter:
    """The offline planner's rewrite: each named shot re-derived from its own text plus the words."""

    cast = cast_of(cfg)

    def rewrite(script: StoryScript, targets: list[int], feedback: str) -> StoryScript:
        shots = [revise_shot(s, feedback, name=cfg.name, class_word=cfg.class_word, cast=cast) if s.index in targets else s
                 for s in script.shots]
        return script.model_copy(update={"shots": shots})

    return rewrite


def revise_shots(script: StoryScript, shots: list[int] | None, feedback: str, rewrite: Rewriter,
                 cast: list[tuple[str, str]] | None = None) -> Revision:
    """Apply a reviewer's words to the named shots (all when None) with `rewrite`.

    The words are never pasted into a field: the rewriter re-derives each named shot (time of day,
    place, camera, action, and the narration that names them) so its text stays one coherent
    description. Whatever the rewriter returns, shots that were not named stay byte-for-byte the same.
    For a film with a `cast` of several characters, words that name someone not in it change nothing
    and come back as one sentence (`Revision.note`), before any rewriter is asked.
    """
    targets = sorted(set(shots) if shots else {s.index for s in script.shots})
    if not feedback.strip():
        return Revision(script, [], targets)
    if cast is not None and len(cast) > 1:
        unknown = parse_cast_feedback(feedback, cast).unknown
        if unknown is not None:
            return Revision(script, [], targets, note=not_in_cast(unknown, [n for n, _ in cast]))
    rewritten = {s.index: s for s in rewrite(script, targets, feedback.strip()).shots}
    merged = [rewritten[s.index].model_copy(update={"index": s.index}) if s.index in targets and s.index in rewritten
              else s for s in script.shots]
    changed = [s.index for s, new in zip(script.shots, merged) if s != new]
    return Revision(script.model_copy(update={"shots": merged}), changed, [t for t in targets if t not in changed])

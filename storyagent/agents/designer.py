"""The Story Designer: writes the story as N shots, as JSON validated into `StoryScript`.

With an LLM it is an `AssistantAgent`; an answer that is not valid JSON, breaks the schema or
has the wrong number of shots goes back to it with the validation message, and so does a story
that misses the prompt (no shot shows the prompt's action, or none is set in its place; the
offline planner's reading of the prompt), at most `MAX_ATTEMPTS` answers in all. When the last
valid story still misses the prompt it is accepted, and the warning is recorded in the manifest
and the transcript: a usable story is not thrown away for a word. Offline the template planner
writes the story, and a review's feedback is applied to the named shots.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from autogen import Agent, AssistantAgent, ConversableAgent
from pydantic import ValidationError

from storyagent.agents.context import STAGE_AGENT, CrewContext
from storyagent.errors import StoryAgentError
from storyagent.schemas import StoryScript, format_validation_error
from storyagent.tools.story import Rewriter, existing_story, offline_planner, prompt_misses, revise_shots, save_story

MAX_ATTEMPTS = 3
NAME = STAGE_AGENT["story"]


def role_message(role: str, **fields: Any) -> str:
    text = resources.files("storyagent.prompts").joinpath(f"{role}.txt").read_text(encoding="utf-8")
    return text.format(**fields) if fields else text


def parse_script(text: str, num_shots: int) -> StoryScript:
    """The script in an LLM answer (code fences and chatter around the JSON object are ignored)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    try:
        data = json.loads(body[start:end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON is malformed ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    try:
        script = StoryScript.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, "story script")) from exc
    if len(script.shots) != num_shots:
        raise ValueError(f"the story has {len(script.shots)} shots, but exactly {num_shots} were asked for")
    return script


def make_story_designer(ctx: CrewContext) -> ConversableAgent:
    cfg = ctx.cfg
    if ctx.llm.enabled:
        agent: ConversableAgent = AssistantAgent(
            NAME, llm_config=ctx.llm.llm_config(), code_execution_config=False,
            system_message=role_message("story_designer", num_shots=cfg.shots, name=cfg.name,
                                        class_word=cfg.class_word, duration=cfg.shot_duration),
            description="Writes the story and splits it into shots.")
    else:
        agent = ConversableAgent(NAME, llm_config=False, code_execution_config=False, human_input_mode="NEVER",
                                 description="Writes the story and splits it into shots (offline planner).")
    if ctx.llm.enabled:
        ctx.rewrite = llm_rewriter(agent)

    def reply(recipient: ConversableAgent, messages: list[dict[str, Any]] | None = None, sender: Agent | None = None,
              config: Any = None) -> tuple[bool, str]:
        feedback = ctx.pending
        if feedback is None:
            ctx.script = existing_story(ctx.run)
        if ctx.script is None or feedback is not None:
            warning = None
            if ctx.script is not None and feedback is not None and (feedback.shots or not ctx.llm.enabled):
                # Named shots (or no LLM): only those shots are rewritten, the others kept as they are.
                ctx.script = revise_shots(ctx.script, feedback.shots, feedback.feedback, ctx.rewrite).script
                made_by = "rewritten after the story review"
            elif ctx.llm.enabled:
                # The first story is held to the prompt's action and place; a story-wide redo follows the
                # reviewer's words instead (which may move it elsewhere).
                keeps = (lambda script: prompt_misses(cfg, script)) if feedback is None else None
                ctx.script, warning = _ask_llm(recipient, list(messages or []), sender, cfg.shots, keeps)
                made_by = f"llm {ctx.llm.spec}"
                if warning:
                    ctx.events.append(f"story: accepted with a warning: {warning}")
            else:
                ctx.script = offline_planner(cfg)
                made_by = "offline planner"
            save_story(ctx.run, ctx.script, made_by, warning)
        ctx.pending = None
        return True, _summary(ctx.script)

    agent.register_reply([Agent, None], reply, position=0)
    return agent


def llm_rewriter(agent: ConversableAgent) -> Rewriter:
    """The LLM Story Designer as a rewriter: it gets the story and the reviewer's words, and answers with
    the whole story; `revise_shots` keeps only the named shots of its answer."""

    def rewrite(script: StoryScript, targets: list[int], feedback: str) -> StoryScript:
        ask = (f"A reviewer asked for shot(s) {', '.join(map(str, targets))} to change: {feedback!r}. Rewrite only "
               "those shots so that their narration, description, subject_action, background, shot_type and "
               "camera_motion follow the words and agree with one another; keep every other shot exactly as it is. "
               "Answer with the whole story as one JSON object.\n" + script.model_dump_json())
        return _ask_llm(agent, [{"role": "user", "content": ask}], None, len(script.shots))[0]

    return rewrite


def _ask_llm(agent: ConversableAgent, messages: list[dict[str, Any]], sender: Agent | None, num_shots: int,
             keeps: Callable[[StoryScript], list[str]] | None = None) -> tuple[StoryScript, str | None]:
    """The LLM's story and, when it was accepted although `keeps` still finds it missing the prompt, why.

    Every answer that cannot be used goes back with the reason, `MAX_ATTEMPTS` answers in all: invalid
    JSON or schema, or (with `keeps`) a story whose shots miss the prompt's action or place. After the last
    answer the latest valid story is taken with a warning; with none, the run stops."""
    error = ""
    missing: tuple[StoryScript, list[str]] | None = None
    for _ in range(MAX_ATTEMPTS):
        _, answer = agent.generate_oai_reply(messages=messages, sender=sender)
        text = answer if isinstance(answer, str) else str((answer or {}).get("content") or "")
        try:
            script = parse_script(text, num_shots)
        except ValueError as exc:
            error = str(exc)
            ask = f"That answer cannot be used: {error}. Answer again with only the corrected JSON object."
        else:
            reasons = keeps(script) if keeps is not None else []
            if not reasons:
                return script, None
            missing, error = (script, reasons), "; ".join(reasons)
            ask = (f"That story does not tell the prompt's story: {error}. Keep the prompt's action in every shot's "
                   "subject_action and its place in every background; answer again with only the whole corrected JSON object.")
        messages = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": ask}]
    if missing is not None:
        return missing[0], f"the story misses the prompt after {MAX_ATTEMPTS} tries: {'; '.join(missing[1])}"
    raise StoryAgentError(f"The Story Designer's LLM gave no valid story in {MAX_ATTEMPTS} tries (last problem: {error}); "
                          "try a stronger model or --llm none.")


def _summary(script: StoryScript) -> str:
    """What the designer says in the chat: the script itself, compact (text only, never pixels)."""
    return script.model_dump_json()

"""The Story Designer: writes the story as N shots, as JSON validated into `StoryScript`.

With an LLM it is an `AssistantAgent`; an answer that is not valid JSON, breaks the schema or
has the wrong number of shots goes back to it with the validation message, and so does a story
that misses the prompt (no shot shows the prompt's action, or none is set in its place; the
offline planner's reading of the prompt), at most `MAX_ATTEMPTS` answers in all. When the last
valid story still misses the prompt it is accepted, and the warning is recorded in the manifest
and the transcript: a usable story is not thrown away for a word. A cast's story is held to its cast
(`StoryScript.cast_problems`): a name not in the cast or a character hidden behind another goes back with
the reason within the same tries, and is never accepted; a character no shot shows is a warning, as above.
Offline the template planner writes the story, and a review's feedback is applied to the named shots;
words that name someone not in the cast change nothing and are answered in one sentence.
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
from storyagent.models.planner import not_in_cast, parse_cast_feedback
from storyagent.schemas import StoryScript, format_validation_error, who
from storyagent.tools.story import (Rewriter, cast_of, existing_story, offline_planner, prompt_misses, revise_shots,
                                    save_story)

MAX_ATTEMPTS = 3
NAME = STAGE_AGENT["story"]
CHARACTERS_FIELD = (
    "\n- characters: every character of the cast the shot shows, each as {{\"name\": one of {names}, "
    "\"action\": what that character does, a short phrase of its own, \"region\": where it stands, as for "
    "subject_region}}. Characters in one shot stand side by side (\"left\" and \"right\", or boxes that do not "
    "cover one another), so that nobody is hidden behind anybody; subject_action and subject_region then give the "
    "action of the character the shot is about and the region of the whole group")


def cast_text(cast: list[tuple[str, str]]) -> dict[str, str]:
    """The role message's cast paragraph and `characters` field for a film of several characters; for one
    character both are empty, so its role message is word for word what it was before casts."""
    if len(cast) < 2:
        return {"cast": "", "characters": ""}
    names = ", ".join(n for n, _ in cast)
    people = ", ".join(who(n, c) + (" (the lead)" if i == 0 else "") for i, (n, c) in enumerate(cast))
    paragraph = (f"\n\nThe film has a cast of {len(cast)} of the user's characters: {people}. Each must be in at least "
                 f"one shot, and nobody else may be in any: call each character by its name exactly ({names}). "
                 f"With a cast the lead need not be in every shot. Give each character its own part of the prompt's "
                 "action: who does what together, who teaches or helps whom; narration names the characters who act "
                 "together.")
    return {"cast": paragraph, "characters": CHARACTERS_FIELD.format(names=names)}


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
    cast = cast_of(cfg)
    names = [n for n, _ in cast] if len(cast) > 1 else None
    if ctx.llm.enabled:
        agent: ConversableAgent = AssistantAgent(
            NAME, llm_config=ctx.llm.llm_config(), code_execution_config=False,
            system_message=role_message("story_designer", num_shots=cfg.shots, name=cfg.name,
                                        class_word=cfg.class_word, duration=cfg.shot_duration, **cast_text(cast)),
            description="Writes the story and splits it into shots.")
    else:
        agent = ConversableAgent(NAME, llm_config=False, code_execution_config=False, human_input_mode="NEVER",
                                 description="Writes the story and splits it into shots (offline planner).")
    if ctx.llm.enabled:
        ctx.rewrite = llm_rewriter(agent, cast)

    def reply(recipient: ConversableAgent, messages: list[dict[str, Any]] | None = None, sender: Agent | None = None,
              config: Any = None) -> tuple[bool, str]:
        feedback = ctx.pending
        if feedback is None:
            ctx.script = existing_story(ctx.run)
        if ctx.script is None or feedback is not None:
            warning = None
            if feedback is not None:
                ctx.report = ""  # what the reviewer is told first, before which shots changed
            unknown = parse_cast_feedback(feedback.feedback, cast).unknown if feedback is not None and names else None
            if ctx.script is not None and unknown is not None:
                # Words about someone not in the cast: nothing is rewritten, and the reviewer is told why.
                ctx.report = not_in_cast(unknown, names or []) + " "
                ctx.pending = None
                return True, _summary(ctx.script)
            if ctx.script is not None and feedback is not None and (feedback.shots or not ctx.llm.enabled):
                # Named shots (or no LLM): only those shots are rewritten, the others kept as they are.
                ctx.script = revise_shots(ctx.script, feedback.shots, feedback.feedback, ctx.rewrite, cast).script
                made_by = "rewritten after the story review"
            elif ctx.llm.enabled:
                # The first story is held to the prompt's action and place; a story-wide redo follows the
                # reviewer's words instead (which may move it elsewhere). Both are held to the cast.
                keeps = (lambda script: prompt_misses(cfg, script)) if feedback is None else None
                ctx.script, warning = _ask_llm(recipient, list(messages or []), sender, cfg.shots, keeps, names)
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


def llm_rewriter(agent: ConversableAgent, cast: list[tuple[str, str]] | None = None) -> Rewriter:
    """The LLM Story Designer as a rewriter: it gets the story and the reviewer's words, and answers with
    the whole story; `revise_shots` keeps only the named shots of its answer. A cast's story is held to the
    cast (`StoryScript.cast_problems`) as the first story is."""
    names = [n for n, _ in cast] if cast and len(cast) > 1 else None

    def rewrite(script: StoryScript, targets: list[int], feedback: str) -> StoryScript:
        fields = "narration, description, subject_action, background, shot_type" + (", camera_motion and characters"
                                                                                    if names else " and camera_motion")
        who = (f" The cast is {', '.join(names)}: the words may name one of them (move that character, or change what "
               "it does, in its entry of the shot's characters, keeping everybody side by side)." if names else "")
        ask = (f"A reviewer asked for shot(s) {', '.join(map(str, targets))} to change: {feedback!r}.{who} Rewrite only "
               f"those shots so that their {fields} follow the words and agree with one another; keep every other "
               "shot exactly as it is. Answer with the whole story as one JSON object.\n" + script.model_dump_json())
        return _ask_llm(agent, [{"role": "user", "content": ask}], None, len(script.shots), cast=names)[0]

    return rewrite


def _ask_llm(agent: ConversableAgent, messages: list[dict[str, Any]], sender: Agent | None, num_shots: int,
             keeps: Callable[[StoryScript], list[str]] | None = None,
             cast: list[str] | None = None) -> tuple[StoryScript, str | None]:
    """The LLM's story and, when it was accepted with something a person should know, what.

    Every answer that cannot be used goes back with the reason, `MAX_ATTEMPTS` answers in all: invalid
    JSON or schema; for a `cast` (its names, the lead first) a story naming someone not in it or hiding one
    character behind another (`StoryScript.cast_problems`); with `keeps`, a story whose shots miss the prompt's
    action or place. After the last answer the latest story that fits the cast is taken with a warning (it
    misses the prompt); with none, the run stops. A character of the cast that no shot shows is a warning,
    never a reason to ask again."""
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
            wrong, unused = script.cast_problems(cast) if cast else ([], [])
            reasons = keeps(script) if keeps is not None and not wrong else []
            if wrong:
                error = "; ".join(wrong)
                ask = (f"That story does not fit the cast ({', '.join(cast or [])}): {error}. In each shot's characters "
                       "use only these names, and give characters in one shot regions side by side; answer again "
                       "with only the whole corrected JSON object.")
            elif not reasons:
                return script, ("; ".join(unused) or None)
            else:
                missing, error = (script, reasons + unused), "; ".join(reasons)
                ask = (f"That story does not tell the prompt's story: {error}. Keep the prompt's action in every shot's "
                       "subject_action and its place in every background; answer again with only the whole corrected "
                       "JSON object.")
        messages = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": ask}]
    if missing is not None:
        misses = [r for r in missing[1] if "in no shot" not in r]
        unused = [r for r in missing[1] if "in no shot" in r]
        return missing[0], "; ".join([f"the story misses the prompt after {MAX_ATTEMPTS} tries: {'; '.join(misses)}",
                                      *unused])
    raise StoryAgentError(f"The Story Designer's LLM gave no valid story in {MAX_ATTEMPTS} tries (last problem: {error}); "
                          "try a stronger model or --llm none.")


def _summary(script: StoryScript) -> str:
    """What the designer says in the chat: the script itself, compact (text only, never pixels)."""
    return script.model_dump_json()

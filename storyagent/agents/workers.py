"""The Storyboard Generator and the Video Creator: agents whose work is done by their tools.

Each agent both asks for and runs its own tool (`register_function(caller=executor=agent)`),
so the tool call and its result sit in the group chat like any other turn. With an LLM the
agent decides the tool arguments from the review it was sent; offline it reads the pending
verdict and asks for the same call itself.
"""


import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Annotated, Any

from autogen import Agent, AssistantAgent, ConversableAgent, register_function

from storyagent.agents.context import STAGE_AGENT, CrewContext, approval
from storyagent.agents.designer import role_message
from storyagent.tools.per_shot import record_redo
from storyagent.tools.story import revise_shots, save_story
from storyagent.tools.storyboard import ShotSelection, ToolArgumentError, generate_storyboard
from storyagent.tools.video import animate_shots

ShotsArg = Annotated[list[int] | None, "Shot numbers to redo; leave empty to do every shot."]
FeedbackArg = Annotated[str, "The reviewer's words for those shots; empty for none."]


def make_storyboard_generator(ctx: CrewContext) -> ConversableAgent:
    agent = _worker(ctx, "storyboard", "Draws one storyboard picture per shot with the generate_storyboard tool.")

    def generate_storyboard_tool(shots: ShotsArg = None, feedback: FeedbackArg = "") -> str:
        assert ctx.script is not None, "the story comes first"
        sel = ShotSelection.from_call(shots, feedback, len(ctx.script.shots))
        heard = take_review(ctx, "storyboard", sel) if sel.shots or sel.feedback else ""
        redrawn = draw_storyboard(ctx)
        ctx.report = _changes("storyboard", redrawn, len(ctx.script.shots), heard)
        return f"Storyboard ready: {len(ctx.storyboard)} pictures in storyboard/, contact sheet storyboard.png. {ctx.report}"

    _register_tool(ctx, agent, generate_storyboard_tool, "generate_storyboard",
                   "Draw the storyboard: one picture of the character per shot.")
    return agent


def make_video_creator(ctx: CrewContext) -> ConversableAgent:
    agent = _worker(ctx, "video", "Animates every storyboard picture into a clip with the animate_shots tool.")

    def animate_shots_tool(shots: ShotsArg = None, feedback: FeedbackArg = "") -> str:
        assert ctx.script is not None and ctx.storyboard, "the storyboard comes first"
        sel = ShotSelection.from_call(shots, feedback, len(ctx.script.shots))
        heard = take_review(ctx, "video", sel) if sel.shots or sel.feedback else ""
        # Words that change how a shot looks ("make it night") change its text, so its picture is
        # stale: it is redrawn before it is animated, never animated from the old picture.
        with approval_kept(ctx, "storyboard"):
            redrawn = draw_storyboard(ctx)
        first = (f"Shot{'s' if len(redrawn) > 1 else ''} {_listed(redrawn)}: storyboard picture redrawn first, "
                 "since the words change how the shot looks. ") if redrawn else ""
        before = {c.shot: c.input_hash for c in ctx.clips}
        ctx.clips = animate_shots(ctx.ws, ctx.cfg, ctx.script, ctx.subject, ctx.storyboard, ctx.show_progress,
                                  ctx.backend)
        redone = [c.shot for c in ctx.clips if before.get(c.shot) != c.input_hash]
        ctx.report = first + _changes("clips", redone, len(ctx.script.shots), heard)
        return f"Clips ready: {len(ctx.clips)} shots in shots/. {ctx.report}"

    _register_tool(ctx, agent, animate_shots_tool, "animate_shots",
                   "Animate the storyboard pictures into one short clip per shot.")
    return agent


def take_review(ctx: CrewContext, stage: str, sel: ShotSelection) -> str:
    """A reviewer's redo at `stage`: a new take of the named shots (all when none is named), their words
    kept with it, and the story rewritten from the words (the Story Designer's job: an LLM, or the offline
    planner). Returns what the crew understood, for the reviewer."""
    assert ctx.script is not None
    targets = sel.shots or [s.index for s in ctx.script.shots]
    heard = ""
    changed: list[int] = []
    if sel.feedback:
        revision = revise_shots(ctx.script, sel.shots, sel.feedback, ctx.rewrite)
        changed = revision.changed
        if changed:
            with approval_kept(ctx, "story"):
                ctx.script = revision.script
                save_story(ctx.ws, ctx.cfg, ctx.script, f"rewritten after the {stage} review")
        if revision.unchanged:
            heard = (f"The words {sel.feedback!r} changed nothing in the text of shot(s) {_listed(revision.unchanged)}; "
                     "they are redone with a new seed. ")
    record_redo(ctx.ws, stage, targets, sel.feedback, rewritten=changed)
    return heard


@contextlib.contextmanager
def approval_kept(ctx: CrewContext, stage: str) -> Iterator[None]:
    """An approved stage whose work the reviewer's own later words change stays approved: reopening the
    run does not ask again about what they asked for."""
    approved = ctx.ws.manifest.get("approved", {})
    was_approved = approved.get(stage) == approval(ctx, stage)
    yield
    if was_approved and approved.get(stage) != approval(ctx, stage):
        approved[stage] = approval(ctx, stage)
        ctx.ws.save()


def draw_storyboard(ctx: CrewContext) -> list[int]:
    """Draw every missing or stale storyboard picture; returns the shots drawn now."""
    assert ctx.script is not None
    before = {f.shot: f.input_hash for f in ctx.storyboard}
    ctx.storyboard = generate_storyboard(ctx.ws, ctx.cfg, ctx.script, ctx.subject, ctx.show_progress, ctx.backend)
    return [f.shot for f in ctx.storyboard if before.get(f.shot) != f.input_hash]


def _listed(shots: list[int]) -> str:
    return ", ".join(map(str, shots))


def _changes(what: str, made: list[int], num_shots: int, heard: str) -> str:
    kept = [i for i in range(1, num_shots + 1) if i not in made]
    if not made:
        return heard + f"No {what} changed."
    verb = "drawn" if what == "storyboard" else "animated"
    return heard + (f"{what.capitalize()} {verb} now: shot {_listed(made)}" +
                    (f"; unchanged: shot {_listed(kept)}." if kept else "."))


def _register_tool(ctx: CrewContext, agent: ConversableAgent, f: Any, name: str, description: str) -> None:
    f = _keep_failures(ctx, f)
    if ctx.llm.enabled:
        register_function(f, caller=agent, executor=agent, name=name, description=description)
    else:  # no LLM to offer the tool to: the agent only runs it
        agent.register_for_execution(name=name, description=description)(f)


def _keep_failures(ctx: CrewContext, f: Any) -> Any:
    """AG2 turns a tool's exception into an "Error: ..." result for the caller to read. Bad arguments
    should reach the LLM that way, so it can correct the call; any other failure (missing weights,
    a broken model) is kept in the context and ends the run with its own message."""

    @functools.wraps(f)
    def guarded(*args: Any, **kwargs: Any) -> str:
        try:
            return f(*args, **kwargs)
        except ToolArgumentError:
            raise
        except Exception as exc:
            ctx.failure = exc
            raise

    return guarded


def _worker(ctx: CrewContext, stage: str, description: str) -> ConversableAgent:
    name = STAGE_AGENT[stage]
    if ctx.llm.enabled:
        return AssistantAgent(name, llm_config=ctx.llm.llm_config(), code_execution_config=False,
                              system_message=role_message(name), description=description)
    agent = ConversableAgent(name, llm_config=False, code_execution_config=False, human_input_mode="NEVER",
                             description=description)
    tool = "generate_storyboard" if stage == "storyboard" else "animate_shots"

    def ask_for_tool(recipient: ConversableAgent, messages: list[dict[str, Any]] | None = None,
                     sender: Agent | None = None, config: Any = None) -> tuple[bool, Any]:
        if messages and messages[-1].get("tool_calls"):
            return False, None  # our own request: let AG2's tool-call reply run it
        verdict = ctx.pending
        args = {"shots": verdict.shots, "feedback": verdict.feedback} if verdict else {}
        ctx.pending = None
        call_id = f"call_{stage}_{len(ctx.ws.manifest['speakers'])}"
        return True, {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": tool, "arguments": json.dumps(args)}}]}

    agent.register_reply([Agent, None], ask_for_tool, position=0)
    return agent

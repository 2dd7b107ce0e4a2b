"""The Storyboard Generator and the Video Creator: agents whose work is done by their tools
(`tools.production.storyboard_tool` and `video_tool`).

Each agent both asks for and runs its own tool (`register_function(caller=executor=agent)`),
so the tool call and its result sit in the group chat like any other turn. With an LLM the
agent decides the tool arguments from the review it was sent; offline it reads the pending
verdict and asks for the same call itself.
"""

import functools
import json
from collections.abc import Callable
from typing import Any

from autogen import Agent, AssistantAgent, ConversableAgent, register_function

from storyagent.agents.context import STAGE_AGENT, CrewContext
from storyagent.agents.designer import role_message
from storyagent.tools.production import storyboard_tool, video_tool
from storyagent.tools.storyboard import ToolArgumentError

TOOLS: dict[str, tuple[str, Callable[..., Callable[..., str]], str]] = {
    "storyboard": ("generate_storyboard", storyboard_tool, "Draw the storyboard: one picture of the character per shot."),
    "video": ("animate_shots", video_tool, "Animate the storyboard pictures into one short clip per shot."),
}
"""Stage → (tool name, the tool's factory, what the tool does, for the LLM)."""


def make_storyboard_generator(ctx: CrewContext) -> ConversableAgent:
    return _worker(ctx, "storyboard", "Draws one storyboard picture per shot with the generate_storyboard tool.")


def make_video_creator(ctx: CrewContext) -> ConversableAgent:
    return _worker(ctx, "video", "Animates every storyboard picture into a clip with the animate_shots tool.")


def _worker(ctx: CrewContext, stage: str, description: str) -> ConversableAgent:
    name = STAGE_AGENT[stage]
    tool, make_tool, tool_description = TOOLS[stage]
    if ctx.llm.enabled:
        agent: ConversableAgent = AssistantAgent(name, llm_config=ctx.llm.llm_config(), code_execution_config=False,
                                                 system_message=role_message(name), description=description)
        register_function(_keep_failures(ctx, make_tool(ctx)), caller=agent, executor=agent, name=tool,
                          description=tool_description)
        return agent
    # No LLM to offer the tool to: the agent asks for the call itself and runs it.
    agent = ConversableAgent(name, llm_config=False, code_execution_config=False, human_input_mode="NEVER",
                             description=description)
    agent.register_for_execution(name=tool, description=tool_description)(_keep_failures(ctx, make_tool(ctx)))

    def ask_for_tool(recipient: ConversableAgent, messages: list[dict[str, Any]] | None = None,
                     sender: Agent | None = None, config: Any = None) -> tuple[bool, Any]:
        if messages and messages[-1].get("tool_calls"):
            return False, None  # our own request: let AG2's tool-call reply run it
        verdict = ctx.pending
        args = {"shots": verdict.shots, "feedback": verdict.feedback} if verdict else {}
        ctx.pending = None
        call_id = f"call_{stage}_{len(ctx.run.manifest.speakers)}"
        return True, {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": tool, "arguments": json.dumps(args)}}]}

    agent.register_reply([Agent, None], ask_for_tool, position=0)
    return agent


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

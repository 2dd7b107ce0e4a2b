"""The crew as an AG2 group chat: build the agents, run the protocol, assemble the film.

`run_crew` is what `storyagent run` and `storyagent chat` call, with or without an LLM. The
director (the user's voice) opens the chat with the brief; the Agent Manager's protocol
(`manager.Protocol`) decides every next speaker; when the last stage is approved the film is
assembled from the clips on disk.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from autogen import GroupChat, GroupChatManager, OpenAIWrapper, UserProxyAgent
from autogen.io import IOConsole, IOStream

from storyagent.agents.context import DIRECTOR, OBSERVER, STAGE_AGENT, CrewContext
from storyagent.agents.designer import make_story_designer, role_message
from storyagent.agents.llm import LLMSettings, explain_llm_error, parse_llm
from storyagent.agents.manager import Protocol
from storyagent.agents.observer import make_observer
from storyagent.agents.workers import make_storyboard_generator, make_video_creator
from storyagent.config import RunConfig
from storyagent.errors import InputError, StoryAgentError
from storyagent.fileio import atomic_write_json
from storyagent.schemas import Film, ShotClip, StoryboardFrame, StoryScript, who
from storyagent.tools.film import assemble_film
from storyagent.tools.run import Executor, Run
from storyagent.tools.sound import warm_up_sound
from storyagent.workspace import Workspace

TRANSCRIPT = "transcript.json"
# AG2 warns on every call that a local model has no price table; that is noise for a film crew.
logging.getLogger("autogen.oai.client").setLevel(logging.ERROR)


class QuietConsole(IOConsole):
    """Keeps the terminal for progress bars and review questions: AG2's chat printout is dropped."""

    def print(self, *objects, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        pass

    def send(self, message) -> None:
        pass


@dataclass
class RunResult:
    root: Path
    script: StoryScript | None
    storyboard: list[StoryboardFrame]
    clips: list[ShotClip]
    film: Film | None
    speakers: list[str]
    stopped: bool = False


def brief(cfg: RunConfig) -> str:
    if len(cfg.cast) == 1:
        return (f"Make a {cfg.shots}-shot film about {who(cfg.name, cfg.class_word)}. Story idea: {cfg.prompt}\n"
                f"The character's reference frames are ready in subject/.")
    names = [who(m.name, m.class_word) for m in cfg.cast]
    return (f"Make a {cfg.shots}-shot film about {', '.join(names[:-1])} and {names[-1]}. Story idea: {cfg.prompt}\n"
            f"The characters' reference frames are ready in subject/ ({cfg.name}) and cast/ (the others).")


def run_crew(cfg: RunConfig, out: Path, resume: bool = False, show_progress: bool = True,
             llm: LLMSettings | None = None, max_rounds: int = 3, verbose: bool = False,
             io: IOStream | None = None, executor: Executor | None = None) -> RunResult:
    """Run the whole crew into the run folder `out`; see the module docstring.

    `verbose` prints the agents' chat, one readable line per message; `io` replaces the terminal
    (scripted review answers in tests); `executor` is where the shots and the film are made (default:
    here; `storyagent batch --ray`: a cluster's workers).
    """
    llm = llm or parse_llm(cfg.llm)
    if cfg.review == "llm" and not llm.enabled:
        raise InputError("--review llm needs an LLM; pass --llm (a vision-capable model) or use --review rules.")
    warm_up_sound(cfg)
    # The folder's lock is held to the end.
    with Run.open(cfg, out, resume=resume, show_progress=show_progress, executor=executor) as run:
        return _run(run, llm, max_rounds, verbose, io)


def _run(run: Run, llm: LLMSettings, max_rounds: int, verbose: bool, io: IOStream | None) -> RunResult:
    """`run_crew` inside its open run (the subject prepared: stage 0)."""
    run.manifest.start_session()
    ctx = CrewContext(run=run, llm=llm, max_rounds=max_rounds, terminal=io is None)

    # 1. The crew.
    director = UserProxyAgent(DIRECTOR, human_input_mode="NEVER", code_execution_config=False, llm_config=False,
                              default_auto_reply="", description="The user: gives the brief.")
    agents = [director, make_story_designer(ctx), make_storyboard_generator(ctx), make_video_creator(ctx)]
    observer = make_observer(ctx)
    if observer is not None:
        agents.append(observer)

    # 2. The manager: the protocol picks speakers; with an LLM, the LLM picks and the protocol guards.
    selector = OpenAIWrapper(**llm.llm_config()) if llm.enabled else None
    protocol = Protocol(ctx, has_observer=observer is not None, role_message=role_message("manager"),
                        selector_client=selector, narrate=_narrator() if verbose else None)
    groupchat = GroupChat(agents=agents, messages=[], max_round=4 + 3 * 3 * (max_rounds + 1),
                          speaker_selection_method=protocol,
                          allowed_or_disallowed_speaker_transitions=_transitions(agents),
                          speaker_transitions_type="allowed", send_introductions=False)
    manager = GroupChatManager(groupchat, name="agent_manager", llm_config=False, code_execution_config=False,
                               system_message=role_message("manager"))

    # 3. Talk until the last stage is approved (or a reviewer stops).
    try:
        with IOStream.set_default(io or QuietConsole()):
            director.initiate_chat(manager, message=brief(run.config))
    except StoryAgentError:
        raise
    except Exception as exc:
        message = explain_llm_error(exc, llm)
        if message is None:
            raise
        raise StoryAgentError(message) from exc
    finally:
        _save_transcript(run.ws, groupchat, ctx)

    # 4. The film, once every stage is done.
    film = None
    if not ctx.stopped and ctx.script is not None and len(ctx.clips) == len(ctx.script.shots):
        film = assemble_film(run, ctx.script, ctx.clips)
    return RunResult(run.ws.root, ctx.script, ctx.storyboard, ctx.clips, film, run.manifest.speakers, ctx.stopped)


def _narrator():
    """`--verbose`: each chat message as one readable line on the terminal (AG2's own printout is dropped)."""
    from rich.text import Text

    from storyagent.progress import console

    def narrate(line: str) -> None:
        speaker, colon, rest = line.partition(": ")
        console.print(Text.assemble((speaker, "bold cyan"), colon + rest), soft_wrap=True)

    return narrate


def _transitions(agents: list) -> dict:
    """The coarse graph AG2 checks; the protocol enforces the stage order inside it."""
    by = {a.name: a for a in agents}
    designer, board, video = (by[STAGE_AGENT[s]] for s in ("story", "storyboard", "video"))
    graph = {by[DIRECTOR]: [designer], designer: [board], board: [board, video], video: [video]}
    if OBSERVER in by:
        obs = by[OBSERVER]
        graph = {by[DIRECTOR]: [designer], designer: [obs, board], board: [board, obs, video],
                 video: [video, obs], obs: [designer, board, video, obs]}  # obs → obs: a line said again
    return graph


def _save_transcript(ws: Workspace, groupchat: GroupChat, ctx: CrewContext) -> None:
    messages = []
    for m in groupchat.messages:
        entry = {"speaker": m.get("name", m.get("role")), "content": m.get("content")}
        if m.get("tool_calls"):
            entry["tool_calls"] = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                                   for c in m["tool_calls"]]
        messages.append(entry)
    previous = []
    path = ws.path(TRANSCRIPT)
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8")).get("sessions", [])
        except (OSError, json.JSONDecodeError):
            previous = []
    atomic_write_json(path, {"sessions": previous + [{"messages": messages, "events": ctx.events}]})

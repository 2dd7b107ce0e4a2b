"""The Agent Manager: who speaks next, by the paper's protocol (Fig. 7).

Designer → Observer → Storyboard → Observer → Video → Observer; "bad" sends the work back to
the same agent with the feedback, at most `max_rounds` reviews per stage. Offline the protocol
alone decides. With an LLM, the LLM picks the speaker from the manager's role message, and the
protocol guards it: a pick that would skip or repeat a stage is overruled and noted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from autogen import Agent, GroupChat

from storyagent.agents.context import DIRECTOR, OBSERVER, STAGE_AGENT, STAGES, CrewContext, parse_verdict
from storyagent.agents.lines import keep_voice_words, voice_words
from storyagent.agents.lines import voice_only as voice_only_words
from storyagent.errors import StoryAgentError
from storyagent.schemas import StoryScript
from storyagent.tools.production import changed_shots, changes_report
from storyagent.tools.story import STORY_FILE, load_story

MAX_TOOL_ATTEMPTS = 3


def _tool_failed(message: dict[str, Any]) -> bool:
    responses = message.get("tool_responses") or [message]
    return any(str(r.get("content") or "").startswith("Error:") for r in responses)


def describe_message(speaker: str, message: dict[str, Any]) -> str:
    """One line a person reads: who spoke, and what they said or asked a tool to do."""
    who = speaker.replace("_", " ")
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            args = json.loads(call["function"].get("arguments") or "{}")
            words = ", ".join(f"{k}={v!r}" for k, v in args.items() if v not in (None, "", []))
            calls.append(f"{call['function']['name']}({words})")
        return f"{who} → " + "; ".join(calls)
    responses = message.get("tool_responses")
    content = "\n".join(str(r.get("content") or "") for r in responses) if responses else str(message.get("content") or "")
    if speaker == STAGE_AGENT["story"] and content.startswith("{"):
        try:
            story = json.loads(content)
            content = f"wrote {story['title']!r}: " + " | ".join(s["narration"] for s in story["shots"])
        except (ValueError, KeyError, TypeError):
            pass
    content = " ".join(content.split())
    return f"{who}: {content[:400] + ('…' if len(content) > 400 else '')}"


class Protocol:
    """The crew's state machine; `__call__` is AG2's `speaker_selection_method`."""

    def __init__(self, ctx: CrewContext, has_observer: bool, role_message: str = "", selector_client: Any = None,
                 narrate: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.narrate = narrate
        """Called with one readable line per chat message (`--verbose`)."""
        self.has_observer = has_observer
        self.rounds = {s: 0 for s in STAGES}
        self.tool_attempts = 0
        self.role_message = role_message
        self.selector_client = selector_client
        self.story_under_redo: StoryScript | None = None
        """The story as the reviewer sent it back, to tell them which shots the redo changed."""

    # AG2 calls this after every message.
    def __call__(self, last_speaker: Agent, groupchat: GroupChat) -> Agent | None:
        if self.narrate is not None and groupchat.messages:
            self.narrate(describe_message(last_speaker.name, groupchat.messages[-1]))
        expected = self.expected_next(last_speaker.name, groupchat.messages[-1] if groupchat.messages else {})
        if expected is None:
            return None
        chosen = expected
        # A reviewer's words about a line send the review back to them: no agent to choose.
        if self.selector_client is not None and self._is_decision_point(last_speaker.name) and expected != OBSERVER:
            chosen = self._llm_pick(groupchat, expected)
        self.ctx.run.manifest.log_speaker(chosen, f"stage {self.ctx.stage}")
        return groupchat.agent_by_name(chosen)

    def _is_decision_point(self, last: str) -> bool:
        # Only after a review is there a real choice; everywhere else the protocol has one answer.
        return last == OBSERVER

    def expected_next(self, last: str, message: dict[str, Any]) -> str | None:
        ctx = self.ctx
        if ctx.stopped:
            return None
        if last == DIRECTOR:
            ctx.stage = "story"
            return STAGE_AGENT["story"]
        if last == STAGE_AGENT["story"]:
            if self.story_under_redo is not None and ctx.script is not None:
                # The Story Designer's reply is the whole story; the reviewer hears which shots it changed.
                # What the designer had to say about the words comes first (a name not in the cast).
                ctx.report = changes_report("story", changed_shots(self.story_under_redo, ctx.script),
                                            len(ctx.script.shots), heard=ctx.report)
                self.story_under_redo = None
            return OBSERVER if self._reviewing() else self._advance()
        if last in (STAGE_AGENT["storyboard"], STAGE_AGENT["video"]):
            if message.get("tool_calls"):
                return last  # the agent that asked for the tool runs it
            if message.get("tool_responses") or message.get("role") == "tool":
                if ctx.failure is not None:
                    raise ctx.failure
                if not _tool_failed(message):
                    self.tool_attempts = 0
                    return OBSERVER if self._reviewing() else self._advance()
                # The tool refused its arguments (AG2 returns the error as the result): let the agent retry.
            self.tool_attempts += 1
            if self.tool_attempts >= MAX_TOOL_ATTEMPTS:
                raise StoryAgentError(f"The {last.replace('_', ' ')} did not call its tool correctly in {MAX_TOOL_ATTEMPTS} "
                                      "tries; use a model that supports tool calls, or --llm none.")
            return last
        if last == OBSERVER:
            verdict = parse_verdict(str(message.get("content") or ""), len(ctx.script.shots) if ctx.script else 1)
            if verdict.stop:
                ctx.stopped = True
                return None
            if verdict.approve_rest:
                ctx.approve_rest = True
            if verdict.ok:
                ctx.pending = None
                if ctx.stage == "story":
                    self._adopt_story_edits()
                self._record_approval()
                return self._advance()
            voice_only = False
            if verdict.feedback and voice_words(verdict.feedback, ctx.stage):
                # How a line is said is kept per shot for the sound stage, whatever the stage under review.
                shots = keep_voice_words(ctx, verdict.shots, verdict.feedback)
                voice_only = voice_only_words(verdict.feedback, ctx.stage)
                if voice_only:
                    ctx.voice_redone = sorted(set(ctx.voice_redone) | set(shots))
            self.rounds[ctx.stage] += 1
            if self.rounds[ctx.stage] >= ctx.max_rounds:
                ctx.events.append(f"{ctx.stage}: accepted after {ctx.max_rounds} reviews")
                ctx.pending = None
                return self._advance()
            if voice_only:
                # Nothing of the stage's work changes: the reviewer hears the line again and answers again.
                return OBSERVER
            ctx.pending = verdict
            if ctx.stage == "story":
                self.story_under_redo = ctx.script
            return STAGE_AGENT[ctx.stage]
        raise StoryAgentError(f"Unexpected speaker {last!r} in the crew's chat.")

    def _reviewing(self) -> bool:
        if not self.has_observer or self.ctx.approve_rest:
            return False
        if self.ctx.approved(self.ctx.stage):
            # A resumed session: this reviewer approved exactly this work before; it is not asked again.
            self.ctx.events.append(f"{self.ctx.stage}: approved in an earlier session and unchanged since")
            return False
        return True

    def _adopt_story_edits(self) -> None:
        """A reviewer may edit story.json (by hand, or in the studio's table) before approving the story:
        the approved story is the one on disk."""
        ctx = self.ctx
        if ctx.ws.path(STORY_FILE).exists():
            edited = load_story(ctx.ws)
            if edited != ctx.script:
                ctx.script = edited
                ctx.events.append("story: the reviewer's edits to story.json were taken")

    def _record_approval(self) -> None:
        self.ctx.run.manifest.approve(self.ctx.stage, self.ctx.approval(self.ctx.stage))

    def _advance(self) -> str | None:
        i = STAGES.index(self.ctx.stage)
        if i + 1 >= len(STAGES):
            return None
        self.ctx.stage = STAGES[i + 1]
        return STAGE_AGENT[self.ctx.stage]

    def _llm_pick(self, groupchat: GroupChat, expected: str | None) -> str:
        """Ask the manager's LLM who speaks next; overrule a pick the protocol forbids."""
        names = [a.name for a in groupchat.agents if a.name != DIRECTOR]
        history = [{"role": "user", "content": f"{m.get('name', '?')}: {str(m.get('content') or '[tool call]')[:1500]}"}
                   for m in groupchat.messages[-8:]]
        system = self.role_message.replace("{agentlist}", ", ".join(names))
        response = self.selector_client.create(messages=[{"role": "system", "content": system}, *history,
                                                         {"role": "user", "content": "Who speaks next? Answer with one name."}])
        text = self.selector_client.extract_text_or_completion_object(response)[0]
        text = text if isinstance(text, str) else str(text)
        picked = next((n for n in names if re.search(rf"\b{re.escape(n)}\b", text)), None)
        if picked != expected:
            self.ctx.events.append(f"manager picked {picked or text.strip()[:40]!r}; protocol requires {expected!r}")
            return expected  # type: ignore[return-value]
        return picked

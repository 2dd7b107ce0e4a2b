"""The Observer: reviews each stage and says "good" or names what to redo.

Modes (`--review`):
  rules  checks that need no weights: shot count, blank or frozen frames, subject missing or tiny, a
         subject whose cut-out jumps between the reference frames every clip is made of
  llm    a vision-capable LLM looks at the storyboard contact sheet and the clips' key frames, each character's
         reference frame shown first (the paper's Fig. 2 gives the Observer the reference videos)
  human  a person at the terminal (`UserProxyAgent`, human_input_mode="ALWAYS"), as the paper allows
  aesthetic  the LAION aesthetic predictor v2 scores the storyboard (`--min-score`); rules elsewhere
Its answer is one line: `good`, `redo 2,4: why and what to change`, or `bad: why`.
"""

from __future__ import annotations

import base64
import io
from importlib import resources
from typing import Any

import numpy as np
from autogen import Agent, AssistantAgent, ConversableAgent, UserProxyAgent
from PIL import Image

from storyagent.agents.context import OBSERVER, CrewContext, parse_verdict
from storyagent.agents.lines import describe_lines, speak_lines
from storyagent.errors import InputError
from storyagent.media import ReferenceMedia, read_frames
from storyagent.progress import show_picture

MIN_SUBJECT_FRACTION = 0.01
MAX_AREA_JUMP = 0.2
"""Neighbouring reference frames of one clip whose subject areas differ by more than this fraction make the
subject flicker in the film (the cut-out lost a head, or took in a piece of background)."""
BLANK_STD = 3.0
MAX_VERDICT_ATTEMPTS = 3


def make_observer(ctx: CrewContext) -> ConversableAgent | None:
    mode = ctx.review
    if mode == "none":
        return None
    if mode == "human":
        return HumanObserver(ctx)
    if mode == "llm":
        agent: ConversableAgent = AssistantAgent(OBSERVER, llm_config=ctx.llm.llm_config(), code_execution_config=False,
                                                 system_message=_role(), description="Reviews each stage's work.")
    else:
        agent = ConversableAgent(OBSERVER, llm_config=False, code_execution_config=False, human_input_mode="NEVER",
                                 description="Reviews each stage's work with rule checks.")

    def review(recipient: ConversableAgent, messages: list[dict[str, Any]] | None = None, sender: Agent | None = None,
               config: Any = None) -> tuple[bool, str]:
        if mode == "llm":
            return True, llm_review(recipient, ctx)
        if mode == "aesthetic" and ctx.stage == "storyboard":
            return True, aesthetic_review(ctx)
        return True, rule_review(ctx)

    agent.register_reply([Agent, None], review, position=0)
    return agent


def _role() -> str:
    return resources.files("storyagent.prompts").joinpath("observer.txt").read_text(encoding="utf-8")


# ---- rules ---------------------------------------------------------------------------------


def rule_review(ctx: CrewContext) -> str:
    problems: dict[int, str] = {}
    if ctx.stage == "story":
        n = len(ctx.script.shots) if ctx.script else 0
        return "good" if n == ctx.cfg.shots else f"bad: the story has {n} shots, {ctx.cfg.shots} were asked for"
    if ctx.stage == "storyboard":
        for frame in ctx.storyboard:
            img = np.asarray(Image.open(ctx.ws.path(frame.path)).convert("RGB"))
            if img.std() < BLANK_STD:
                problems[frame.shot] = "the picture is blank"
                continue
            if frame.mask_path:
                cover = (np.asarray(Image.open(ctx.ws.path(frame.mask_path)).convert("L")) > 127).mean()
                if cover < MIN_SUBJECT_FRACTION:
                    problems[frame.shot] = f"the character is missing or tiny ({cover:.1%} of the frame)"
    else:
        jump = subject_jump(ctx.run.subject.reference)
        for clip in ctx.clips:
            frames = read_frames(ctx.ws.path(clip.path), max_frames=clip.num_frames)
            stack = np.stack(frames).astype(np.float32)
            if stack.std() < BLANK_STD:
                problems[clip.shot] = "the clip is blank"
            elif np.abs(np.diff(stack, axis=0)).mean() < 0.05:
                problems[clip.shot] = "the clip is frozen"
            elif jump:
                problems[clip.shot] = jump
    if not problems:
        return "good"
    shots = ",".join(str(s) for s in sorted(problems))
    return f"redo {shots}: " + "; ".join(f"shot {s}: {why}" for s, why in sorted(problems.items()))


def subject_jump(reference: ReferenceMedia) -> str | None:
    """What makes the subject flicker in every clip, or None: the first pair of neighbouring reference
    frames from one file whose subject areas differ by more than `MAX_AREA_JUMP`. Every clip cycles
    through these frames' cut-outs, so a jump between them is a jump in the clip; the masks are
    already in memory, so the check costs nothing."""
    areas = [int(m.sum()) for m in reference.masks]
    for i in range(1, len(areas)):
        if reference.sources[i] != reference.sources[i - 1] or not areas[i - 1]:
            continue
        change = areas[i] / areas[i - 1] - 1
        if abs(change) > MAX_AREA_JUMP:
            name = reference.sources[i].name
            return (f"the subject's cut-out {'grows' if change > 0 else 'shrinks'} {abs(change):.0%} between reference "
                    f"frames {i} and {i + 1} ({name}), so it flickers; give a steadier clip, or a photo of the subject "
                    "on a plain background")
    return None


def aesthetic_review(ctx: CrewContext, scorer: Any = None) -> str:
    """Storyboard pictures scoring under `min_score` are redrawn (a new take, same shot text)."""
    from storyagent.eval.observer import AestheticObserver

    frames = {f.shot: np.asarray(Image.open(ctx.ws.path(f.path)).convert("RGB")) for f in ctx.storyboard}
    reviews = AestheticObserver(scorer=scorer).review(frames, ctx.cfg.min_score)
    ctx.events.append("aesthetic scores: " + ", ".join(f"shot {r.shot}: {r.score:.2f}" for r in reviews))
    bad = [r.shot for r in reviews if not r.ok]
    return "good" if not bad else "redo " + ",".join(map(str, bad))


# ---- llm -----------------------------------------------------------------------------------


def _data_url(img: np.ndarray | Image.Image, max_side: int = 768) -> str:
    pil = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


REFERENCE_SIDE = 512
"""The longest side of a reference frame sent to the vision LLM: enough to recognise a character, few tokens."""


def reference_images(ctx: CrewContext) -> list[tuple[str, str]]:
    """What the vision LLM compares against: each character's first reference frame (the lead's
    `subject/frame_01.png`, then `cast/<name>/frame_01.png`), as (label, data URL) pairs. One frame per
    character, as the paper's Observer sees the reference videos (Fig. 2) at a cost of one picture each."""
    refs = []
    for prepared in ctx.run.cast:
        who = prepared.subject
        if not who.frames:
            continue
        label = (f"REFERENCE (not a shot to judge): {who.name}, the {who.class_word}, as the user's own photo or video "
                 "shows it.")
        refs.append((label, _data_url(Image.open(who.frames[0]), max_side=REFERENCE_SIDE)))
    return refs


def review_images(ctx: CrewContext) -> list[tuple[str, str]]:
    """What the vision LLM judges, as (label, data URL) pairs: the contact sheet, or each clip's first,
    middle and last frames side by side."""
    if ctx.stage == "storyboard":
        return [("TO JUDGE: the storyboard contact sheet, one numbered picture per shot.",
                 _data_url(Image.open(ctx.ws.path("storyboard.png"))))]
    if ctx.stage == "video":
        pairs = []
        for clip in ctx.clips:
            frames = read_frames(ctx.ws.path(clip.path), max_frames=3)
            pairs.append((f"TO JUDGE: shot {clip.shot}, key frames of its clip from left to right.",
                          _data_url(np.concatenate(frames, axis=1), max_side=1024)))
        return pairs
    return []


def review_content(ctx: CrewContext) -> list[dict[str, Any]]:
    """The user message of a review: the task, then (where there are pictures to judge) every character's
    reference frame, then the pictures to judge; each picture after the line that says what it is, so the
    model cannot take a reference for a shot or a shot for the reference."""
    assert ctx.script is not None
    cast = [f"{p.subject.name} the {p.subject.class_word}" for p in ctx.run.cast]
    who = f"The character is {cast[0]}" if len(cast) == 1 else f"The characters are {', '.join(cast[:-1])} and {cast[-1]}"
    text = (f"Stage under review: {ctx.stage}. The story, as JSON: {ctx.script.model_dump_json()}\n"
            f"{who}. Give your verdict on one line.")
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    judged = review_images(ctx)
    if not judged:
        return content  # the story: nothing to compare the reference with
    for label, url in [*reference_images(ctx), *judged]:
        content += [{"type": "text", "text": label}, {"type": "image_url", "image_url": {"url": url}}]
    return content


def llm_review(agent: ConversableAgent, ctx: CrewContext) -> str:
    """The vision LLM's verdict. One it cannot give (shots out of range) goes back to it with the reason, at
    most `MAX_VERDICT_ATTEMPTS` times; then the stage is accepted as it is and the transcript says so."""
    assert ctx.script is not None
    messages: list[dict[str, Any]] = [{"role": "system", "content": _role()},
                                      {"role": "user", "content": review_content(ctx)}]
    for _ in range(MAX_VERDICT_ATTEMPTS):
        response = agent.client.create(messages=messages)
        answer = agent.client.extract_text_or_completion_object(response)[0]
        lines = (answer if isinstance(answer, str) else str(answer or "")).strip().splitlines()
        verdict = lines[0] if lines else "good"
        try:
            parse_verdict(verdict, len(ctx.script.shots))
            return verdict
        except InputError as exc:
            retry = f"That verdict cannot be used: {exc} Give your verdict again on one line."
            messages += [{"role": "assistant", "content": verdict}, {"role": "user", "content": retry}]
    ctx.events.append(f"{ctx.stage}: accepted; the observer's LLM gave no usable verdict in {MAX_VERDICT_ATTEMPTS} "
                      f"tries (last: {verdict[:80]!r})")
    return "good"


# ---- human ---------------------------------------------------------------------------------


class HumanObserver(UserProxyAgent):
    """A person reviews each stage at the terminal; empty input means "ok"."""

    def __init__(self, ctx: CrewContext) -> None:
        super().__init__(OBSERVER, human_input_mode="ALWAYS", code_execution_config=False, llm_config=False,
                         default_auto_reply="good", description="A person who reviews each stage.")
        self.ctx = ctx

    def get_human_input(self, prompt: str, *, iostream: Any = None) -> str:
        ctx = self.ctx
        where = {"story": "story.json", "storyboard": "storyboard.png (pictures in storyboard/)",
                 "video": "shots/shot_NN.mp4"}[ctx.stage]
        if ctx.terminal and ctx.stage == "story" and ctx.script is not None:
            show_shot_table(ctx.script)
        if ctx.terminal and ctx.stage == "storyboard":
            show_picture(ctx.ws.path("storyboard.png"))
        changed, ctx.report = (f"{ctx.report}\n" if ctx.report else ""), ""
        heard = hear_lines(ctx)
        question = (f"\n[{ctx.stage}] ready in {ctx.ws.root / where.split(' ')[0]}  ({where})\n{changed}"
                    f"{heard + chr(10) if heard else ''}"
                    "Reply: ok | redo 2,4: what to change | redo 2: say it slower | any feedback for the whole stage | "
                    "render | quit\n> ")
        num_shots = len(ctx.script.shots) if ctx.script else 1
        while True:
            answer = super().get_human_input(question, iostream=iostream)
            try:
                parse_verdict(answer, num_shots)
                return answer
            except InputError as exc:
                question = f"{exc} Try again.\n> "


def hear_lines(ctx: CrewContext) -> str:
    """At the story review, and after a reviewer's words about a line: the lines spoken (each reused while
    unchanged), their files named, and, for a reviewer at this terminal, played: every line the first
    time, then only those spoken again. Returns what the reviewer reads ("" when there is nothing to hear)."""
    redone, ctx.voice_redone = ctx.voice_redone, []
    if ctx.script is None or not (ctx.stage == "story" or redone):
        return ""
    lines = speak_lines(ctx)
    if ctx.terminal and lines.paths:
        play = sorted(lines.paths) if not ctx.lines_heard else [i for i in lines.spoken_now if i in lines.paths]
        ctx.player.play([lines.paths[i] for i in play])
    ctx.lines_heard = ctx.lines_heard or bool(lines.paths)
    return describe_lines(lines, redone)


def show_shot_table(script) -> None:
    from rich.table import Table

    from storyagent.progress import console

    table = Table(title=script.title, caption=script.logline)
    for col in ("#", "shot", "camera", "background", "action", "narration"):
        table.add_column(col)
    for s in script.shots:
        table.add_row(str(s.index), s.shot_type.value, s.camera_motion.value, s.background, s.subject_action, s.narration)
    console.print(table)

"""Human review: scripted answers through AG2's IOStream, and a real terminal session (pexpect)."""

import json
import sys
from pathlib import Path

import pexpect
import pytest
from autogen.io import IOConsole

from storyagent.agents.context import parse_verdict
from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.config import RunConfig
from storyagent.errors import InputError

from tests.support.paths import ROOT
PIP = ROOT / "examples" / "pip" / "pip.png"


class ScriptedIO(IOConsole):
    """Answers each review question from a list and records the questions."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    def print(self, *objects, sep=" ", end="\n", flush=False) -> None:
        pass

    def send(self, message) -> None:
        pass

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        self.questions.append(prompt)
        return self.answers.pop(0)


def cfg(review: str, shots: int = 4) -> RunConfig:
    return RunConfig.build(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=shots,
                           width=128, height=80, fps=4, shot_duration=2.0, review=review)


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted([*root.rglob("*.png"), *root.rglob("*.mp4")])}


def test_redo_named_shots_changes_only_those(tmp_path):
    run_crew(cfg("none"), tmp_path, show_progress=False)
    before = mtimes(tmp_path)
    io = ScriptedIO(["ok", "redo 2,4: make it night", "ok", "ok"])
    result = run_crew(cfg("human"), tmp_path, resume=True, show_progress=False, io=io)
    assert io.answers == [] and len(io.questions) == 4
    assert "[story] ready" in io.questions[0] and "[storyboard] ready" in io.questions[1]
    assert str(tmp_path / "storyboard.png") in io.questions[1], "the reviewer is told where to look"
    changed = {k for k, t in mtimes(tmp_path).items() if before.get(k) != t}
    assert changed == {"storyboard/shot_02.png", "storyboard/shot_02_mask.png", "storyboard/shot_04.png",
                       "storyboard/shot_04_mask.png", "shots/shot_02.mp4", "shots/shot_04.mp4", "storyboard.png", "film.mp4"}
    assert [("night" in s.background) for s in result.script.shots] == [False, True, False, True]
    assert not any("make it night" in s.background for s in result.script.shots), "words are not glued in"
    story = json.loads((tmp_path / "story.json").read_text())
    assert "night" in story["shots"][1]["background"]
    assert result.speakers == ["story_designer", "observer", "storyboard_generator", "storyboard_generator", "observer",
                               "storyboard_generator", "storyboard_generator", "observer", "video_creator",
                               "video_creator", "observer"]


def test_video_feedback_reaches_the_video_creator_only(tmp_path):
    run_crew(cfg("none"), tmp_path, show_progress=False)
    before = mtimes(tmp_path)
    io = ScriptedIO(["ok", "ok", "redo 3: livelier", "ok"])
    run_crew(cfg("human"), tmp_path, resume=True, show_progress=False, io=io)
    changed = {k for k, t in mtimes(tmp_path).items() if before.get(k) != t}
    assert changed == {"shots/shot_03.mp4", "film.mp4"}


def test_story_feedback_goes_back_to_the_designer(tmp_path):
    io = ScriptedIO(["redo 1: make it dawn in the snow", "ok", "ok", "ok"])
    result = run_crew(cfg("human", shots=2), tmp_path, show_progress=False, io=io)
    assert result.speakers[:4] == ["story_designer", "observer", "story_designer", "observer"]
    background = result.script.shots[0].background
    assert "dawn" in background and "snow" in background and "make it" not in background


def test_a_story_redo_says_which_shots_changed(tmp_path):
    io = ScriptedIO(["redo 2: make it night", "redo 3: more zing please", "ok", "ok", "ok"])
    result = run_crew(cfg("human"), tmp_path, show_progress=False, io=io)
    assert "night" in result.script.shots[1].background
    assert "Story rewritten now: shot 2; unchanged: shot 1, 3, 4." in io.questions[1]
    # Words the offline planner cannot take in leave the text as it was, and the reviewer is told so.
    assert "No shot of the story changed." in io.questions[2]
    assert "rewritten" not in io.questions[3] and "[storyboard] ready" in io.questions[3], "said once, at the story"


def test_a_whole_story_redo_names_every_shot_it_changed(tmp_path):
    io = ScriptedIO(["make it night", "ok", "ok", "ok"])
    result = run_crew(cfg("human", shots=3), tmp_path, show_progress=False, io=io)
    assert all("night" in s.background for s in result.script.shots)
    assert "Story rewritten now: shot 1, 2, 3." in io.questions[1]


def test_quit_keeps_the_work_and_render_skips_reviews(tmp_path):
    io = ScriptedIO(["ok", "quit"])
    result = run_crew(cfg("human", shots=2), tmp_path, show_progress=False, io=io)
    assert result.stopped and result.film is None
    assert (tmp_path / "storyboard" / "shot_02.png").exists() and not (tmp_path / "film.mp4").exists()
    assert json.loads((tmp_path / TRANSCRIPT).read_text())["sessions"][-1]["messages"]
    io = ScriptedIO(["render"])
    result = run_crew(cfg("human", shots=2), tmp_path, resume=True, show_progress=False, io=io)
    assert len(io.questions) == 1 and result.film is not None
    assert len(json.loads((tmp_path / TRANSCRIPT).read_text())["sessions"]) == 2


def test_out_of_range_shot_is_asked_again(tmp_path):
    io = ScriptedIO(["redo 9: bigger", "ok", "ok", "ok"])
    run_crew(cfg("human", shots=2), tmp_path, show_progress=False, io=io)
    assert "between 1 and 2" in io.questions[1]


@pytest.mark.parametrize("text,ok,shots,feedback", [
    ("good", True, None, ""), ("OK.", True, None, ""), ("", True, None, ""),
    ("redo 2,4: make it night", False, [2, 4], "make it night"), ("redo shots 1-3 - brighter", False, [1, 2, 3], "brighter"),
    ("bad: the fox is missing", False, None, "the fox is missing"), ("more colour please", False, None, "more colour please"),
])
def test_parse_verdict(text, ok, shots, feedback):
    v = parse_verdict(text, 4)
    assert (v.ok, v.shots, v.feedback) == (ok, shots, feedback)


def test_parse_verdict_refuses_out_of_range():
    with pytest.raises(InputError, match="between 1 and 4"):
        parse_verdict("redo 0,5", 4)


def test_rules_observer_approves_a_good_animatic(tmp_path):
    result = run_crew(cfg("rules", shots=2), tmp_path, show_progress=False)
    assert result.speakers.count("observer") == 3 and result.film is not None


def test_terminal_chat_session(tmp_path):
    out = tmp_path / "chat"
    child = pexpect.spawn(sys.executable, ["-m", "storyagent", "chat", "--subject", str(PIP), "--out", str(out)],
                          cwd=str(ROOT), encoding="utf-8", timeout=90, dimensions=(50, 200))
    child.expect("What is the story about")
    child.sendline("a day at the seaside")
    child.expect(r"The character's name .*Pip")
    child.sendline("")
    child.expect(r"What is it")
    child.sendline("fox")
    child.expect(r"How many shots")
    child.sendline("2")
    child.expect(r"\[story\] ready")
    child.sendline("ok")
    child.expect(r"\[storyboard\] ready")
    child.sendline("redo 2: make it night")
    child.expect(r"\[storyboard\] ready")
    child.sendline("ok")
    child.expect(r"\[video\] ready")
    child.sendline("render")
    child.expect("Done")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    story = json.loads((out / "story.json").read_text())
    assert "night" in story["shots"][1]["background"] and (out / "film.mp4").exists()
    assert (out / TRANSCRIPT).exists()
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert (inputs["name"], inputs["class_word"], inputs["shots"]) == ("Pip", "fox", 2)


def test_chat_resume_with_only_out_keeps_every_input_and_skips_approved_stages(tmp_path):
    """`chat --out DIR --resume` restores the run's inputs from its manifest and asks only for the
    stage that was not yet approved; the story and the storyboard are not touched."""
    out = tmp_path / "chat"
    child = pexpect.spawn(sys.executable, ["-m", "storyagent", "chat", "a picnic by the lake", "--subject", str(PIP),
                                           "--name", "Pip", "--class-word", "fox", "--shots", "2", "--seed", "3",
                                           "--out", str(out)],
                          cwd=str(ROOT), encoding="utf-8", timeout=90, dimensions=(50, 200))
    for stage in ("story", "storyboard"):
        child.expect(rf"\[{stage}\] ready")
        child.sendline("ok")
    child.expect(r"\[video\] ready")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    manifest = json.loads((out / "manifest.json").read_text())
    kept = {p: (out / p).read_bytes() for p in ("story.json", "storyboard/shot_01.png", "storyboard/shot_02.png")}

    child = pexpect.spawn(sys.executable, ["-m", "storyagent", "chat", "--out", str(out), "--resume"],
                          cwd=str(ROOT), encoding="utf-8", timeout=90, dimensions=(50, 200))
    child.expect(r"Resuming .*'Pip', 2 shots")
    index = child.expect([r"\[video\] ready", r"\[story\] ready", r"\[storyboard\] ready", "What is"])
    assert index == 0, "approved stages are not asked again, and no input is asked for"
    child.sendline("ok")
    child.expect("Done")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["inputs"] == manifest["inputs"]
    assert all((out / p).read_bytes() == b for p, b in kept.items())
    assert (out / "film.mp4").exists()


def test_aesthetic_observer_redraws_low_scoring_pictures(tmp_path):
    import numpy as np
    from PIL import Image

    from storyagent.agents.context import CrewContext
    from storyagent.agents.observer import aesthetic_review
    from storyagent.tools.run import Run

    result = run_crew(cfg("none", shots=3), tmp_path, show_progress=False)
    brightness = [float(np.asarray(Image.open(tmp_path / f.path)).mean()) / 25.5 for f in result.storyboard]
    darkest = 1 + int(np.argmin(brightness))
    review_cfg = cfg("aesthetic", shots=3).model_copy(update={"min_score": min(brightness) + 1e-3})
    with Run.open(review_cfg, tmp_path, resume=True, show_progress=False) as run:
        ctx = CrewContext(run=run, stage="storyboard", storyboard=result.storyboard)

    # A stand-in scorer that prefers bright pictures: only the darkest shot falls under the threshold.
    verdict = parse_verdict(aesthetic_review(ctx, scorer=lambda images: [im.mean() / 25.5 for im in images]), 3)
    assert verdict.shots == [darkest] and not verdict.ok
    assert ctx.events[0].startswith("aesthetic scores: shot 1:")

"""A reviewer's words change what they ask, at whichever stage, and nothing else (issue 15).

Everything runs the real crew on the offline animatic backend; the reviews are scripted answers
through AG2's IOStream (`ScriptedIO`), the LLM a scripted server on 127.0.0.1.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from storyagent.agents.crew import run_crew
from storyagent.config import RunConfig
from storyagent.workspace import MANIFEST
from tests.support.llm_server import LLMServer, ToolCall
from tests.agents.test_human_review import ScriptedIO

from tests.support.paths import ROOT
PIP = ROOT / "examples" / "pip" / "pip.png"


def cfg(review: str = "human", shots: int = 4, prompt: str = "a day in the vegetable garden", llm: str = "none") -> RunConfig:
    return RunConfig.build(prompt=prompt, subject=PIP, name="Bolt", class_word="fox", shots=shots, width=128,
                           height=80, fps=4, shot_duration=2.0, review=review, llm=llm)


def contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted([*root.rglob("shot_*.png"), *root.rglob("*.mp4")])}


def luminance(path: Path) -> float:
    return float(np.asarray(Image.open(path).convert("L"), dtype=np.float32).mean())


def test_redo_at_the_clips_stage_with_words_redraws_that_shot_first(tmp_path):
    """`redo 2: make it night` after the storyboard was approved gives shot 2 a night picture and clip,
    says the picture was redrawn first, and leaves every other shot's files as they were."""
    first = run_crew(cfg(review="none"), tmp_path, show_progress=False)
    assert "night" not in first.script.shots[1].background
    before = contents(tmp_path)
    day = luminance(tmp_path / "storyboard" / "shot_02.png")

    io = ScriptedIO(["ok", "ok", "redo 2: make it night", "ok"])
    result = run_crew(cfg(), tmp_path, resume=True, show_progress=False, io=io)

    changed = {k for k, v in contents(tmp_path).items() if before.get(k) != v}
    # (the mask may stay the same: the subject stands where it stood, only the light changed)
    assert {"storyboard/shot_02.png", "shots/shot_02.mp4", "film.mp4"} <= changed <= \
        {"storyboard/shot_02.png", "storyboard/shot_02_mask.png", "shots/shot_02.mp4", "film.mp4"}
    assert luminance(tmp_path / "storyboard" / "shot_02.png") < day - 20, "shot 2 is drawn at night"
    shot = result.script.shots[1]
    assert "night" in shot.background and "make it night" not in shot.background + shot.description
    assert [s for i, s in enumerate(result.script.shots) if i != 1] == \
        [s for i, s in enumerate(first.script.shots) if i != 1], "the other shots' text is untouched"
    # The reviewer is told what changed: the picture first, then the clip, and only shot 2.
    last_question = io.questions[-1]
    assert "Shot 2: storyboard picture redrawn first" in last_question
    assert "Clips animated now: shot 2; unchanged: shot 1, 3, 4." in last_question
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["redos"]["video"]["2"] == [{"take": 1, "feedback": "make it night", "rewrote_story": True}]


def test_stacked_feedback_rewrites_the_shot_and_is_never_glued_into_the_text(tmp_path):
    io = ScriptedIO(["ok", "redo 2: Bolt is in the kitchen kneading dough", "redo 2: make it night", "ok", "ok"])
    result = run_crew(cfg(), tmp_path, show_progress=False, io=io)
    shot = result.script.shots[1]
    assert "kitchen" in shot.background and "night" in shot.background
    assert "dough" in shot.subject_action
    for words in ("make it night", "Bolt is in the kitchen", "kneading dough;"):
        assert words not in shot.background, f"{words!r} glued into the background {shot.background!r}"
    assert "garden" not in shot.narration.lower(), "the narration follows the shot to the kitchen"
    story = json.loads((tmp_path / "story.json").read_text())
    assert story["shots"][1]["background"] == shot.background, "story.json holds the rewritten shot"
    assert "Storyboard drawn now: shot 2; unchanged: shot 1, 3, 4." in io.questions[2]


def test_stage_wide_feedback_rewrites_every_shot_coherently(tmp_path):
    io = ScriptedIO(["ok", "make it night", "ok", "ok"])
    result = run_crew(cfg(shots=3), tmp_path, show_progress=False, io=io)
    for shot in result.script.shots:
        assert "night" in shot.background and not {"noon", "sunny", "morning"} & set(shot.background.split())
        assert "make it night" not in shot.background + shot.description


def test_words_the_planner_cannot_read_are_said_so_and_the_shot_is_redrawn(tmp_path):
    io = ScriptedIO(["ok", "redo 3: more zing please", "ok", "ok"])
    result = run_crew(cfg(shots=3), tmp_path, show_progress=False, io=io)
    assert "changed nothing in the text of shot(s) 3" in io.questions[2]
    assert "Storyboard drawn now: shot 3" in io.questions[2], "a new take (new seed) all the same"
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["redos"]["storyboard"]["3"][0]["rewrote_story"] is False
    assert result.film is not None


def test_an_llm_designer_rewrites_only_the_named_shots(tmp_path):
    """With an LLM, the Story Designer rewrites shot 2 from the words; whatever else it changes in its
    answer is not taken."""
    out = tmp_path / "run"
    base = run_crew(cfg(review="none", shots=3), tmp_path / "offline", show_progress=False).script
    night = json.loads(base.model_dump_json())
    night["shots"][1]["background"] = "the vegetable garden at night"
    night["shots"][1]["narration"] = "When night fell, Bolt was still in the garden."
    night["shots"][0]["narration"] = "Shot 1 changed by the LLM, which must not be taken."
    script = {
        "designer": [base.model_dump_json(), json.dumps(night)],
        "manager": ["storyboard_generator", "storyboard_generator", "video_creator", "nobody"],
        "storyboard": [ToolCall("generate_storyboard", {}),
                       ToolCall("generate_storyboard", {"shots": [2], "feedback": "make it night"})],
        "video": [ToolCall("animate_shots", {})],
    }
    io = ScriptedIO(["ok", "redo 2: make it night", "ok", "ok"])
    with LLMServer(script) as srv:
        result = run_crew(cfg(shots=3, llm=srv.spec), out, show_progress=False, io=io)
        rewrite_request = srv.llm.requests_of("designer")[1]["messages"][-1]["content"]
    assert "make it night" in rewrite_request and "shot(s) 2" in rewrite_request
    assert result.script.shots[1].background == "the vegetable garden at night"
    assert result.script.shots[0] == base.shots[0] and result.script.shots[2] == base.shots[2]


def test_a_finished_review_is_not_asked_again_even_after_words_rewrote_the_story(tmp_path):
    """The reviewer's own words rewrote shot 2 after the story was approved: that is still the story they
    approved, so reopening the finished run asks nothing and redoes nothing."""
    io = ScriptedIO(["ok", "redo 2: make it night", "ok", "ok"])
    run_crew(cfg(shots=3), tmp_path, show_progress=False, io=io)
    before = contents(tmp_path)
    again = ScriptedIO([])
    result = run_crew(cfg(shots=3), tmp_path, resume=True, show_progress=False, io=again)
    assert again.questions == [] and result.film is not None
    assert contents(tmp_path) == before

"""Issue 23, point 1 on the LLM path: a story that misses the prompt's action or place goes back to the
Story Designer with the reason (bounded), through the real OpenAI-compatible server on 127.0.0.1."""

import json

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.config import RunConfig
from storyagent.models.planner import PlannerConfig, TemplatePlanner, check_keeps_prompt
from storyagent.schemas import StoryScript
from storyagent.workspace import MANIFEST
from tests.support.llm_server import LLMServer, ToolCall
from tests.support.paths import PIP

TOOLS = {"storyboard": [ToolCall("generate_storyboard", {})], "video": [ToolCall("animate_shots", {})]}


def cfg_for(prompt: str, spec: str) -> RunConfig:
    return RunConfig.build(prompt=prompt, subject=PIP, name="Pip", class_word="fox", shots=3, width=128, height=80,
                           fps=4, shot_duration=2.0, llm=spec, review="none")


def story(prompt: str) -> str:
    """An answer the LLM might give: a valid three-shot story told for `prompt`."""
    return TemplatePlanner(PlannerConfig(shot_duration=2.0))(prompt, "Pip", 3, seed=5, class_word="fox").model_dump_json()


def told(out) -> StoryScript:
    return StoryScript.model_validate_json((out / "story.json").read_text())


def test_a_story_without_the_prompts_action_goes_back_with_the_reason(tmp_path):
    prompt = "a fox learns to swim"
    race, swim = story("a fox wins a running race"), story(prompt)
    assert check_keeps_prompt(prompt, StoryScript.model_validate_json(race)), "the first answer misses the action"
    out = tmp_path / "r"
    with LLMServer({"designer": [race, swim], **TOOLS}) as srv:
        result = run_crew(cfg_for(prompt, srv.spec), out, show_progress=False)
        asked = srv.llm.requests_of("designer")
    assert len(asked) == 2
    sent_back = asked[1]["messages"][-1]["content"]
    assert "'swim'" in sent_back and "swimming" in sent_back and "subject_action" in sent_back
    assert asked[1]["messages"][-2]["content"] == race, "the answer it refers to is in the conversation"
    assert result.script == told(out) == StoryScript.model_validate_json(swim)
    manifest = json.loads((out / MANIFEST).read_text())
    assert "warning" not in manifest["artifacts"]["story"]["meta"]


def test_a_story_set_elsewhere_goes_back_naming_the_place(tmp_path):
    prompt = "an astronaut lost in a jungle"
    forest, jungle = story("an astronaut lost in a pine forest"), story(prompt)
    out = tmp_path / "r"
    with LLMServer({"designer": [forest, jungle], **TOOLS}) as srv:
        run_crew(cfg_for(prompt, srv.spec), out, show_progress=False)
        asked = srv.llm.requests_of("designer")
    assert len(asked) == 2 and "'jungle'" in asked[1]["messages"][-1]["content"]
    assert all("jungle" in shot.background for shot in told(out).shots)


def test_retries_are_bounded_and_the_last_story_is_kept_with_a_warning(tmp_path):
    prompt = "a fox learns to swim"
    answers = [story("a fox wins a running race"), "not json at all", story("a fox bakes bread")]
    out = tmp_path / "r"
    with LLMServer({"designer": answers, **TOOLS}) as srv:
        result = run_crew(cfg_for(prompt, srv.spec), out, show_progress=False)
        asked = srv.llm.requests_of("designer")
    assert len(asked) == 3, "three answers in all, whatever was wrong with them"
    assert "malformed" in asked[2]["messages"][-1]["content"] or "no JSON" in asked[2]["messages"][-1]["content"]
    # The last valid story is used (not a refusal), and the run says so where a person looks.
    assert result.script == told(out) == StoryScript.model_validate_json(answers[2])
    warning = json.loads((out / MANIFEST).read_text())["artifacts"]["story"]["meta"]["warning"]
    assert "'swim'" in warning and "3 tries" in warning
    events = json.loads((out / TRANSCRIPT).read_text())["sessions"][-1]["events"]
    assert any(e.startswith("story: accepted with a warning") and "'swim'" in e for e in events)
    assert result.film is not None

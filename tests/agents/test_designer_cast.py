"""Issue 25, point 2 on the LLM path: the Story Designer is told the cast and the `characters` field, and its
answer is held to the cast (`StoryScript.cast_problems`) within its bounded tries; a character nobody uses is a
warning, never a refusal. Through the real crew and a scripted OpenAI-compatible server on 127.0.0.1."""

import json

import pytest

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.cast import CastMember
from storyagent.config import RunConfig
from storyagent.errors import StoryAgentError
from storyagent.models.planner import PlannerConfig, TemplatePlanner
from storyagent.schemas import StoryScript
from storyagent.workspace import MANIFEST
from tests.agents.test_human_review import ScriptedIO
from tests.support.creature import write_owl_blob_png
from tests.support.llm_server import LLMServer, ToolCall
from tests.support.paths import PIP

TOOLS = {"storyboard": [ToolCall("generate_storyboard", {})], "video": [ToolCall("animate_shots", {})]}
PROMPT = "Pip teaches Mo to swim"


@pytest.fixture(scope="module")
def owl(tmp_path_factory):
    """A second character the tests make: a blue owl-ish blob on a transparent ground."""
    return write_owl_blob_png(tmp_path_factory.mktemp("owl") / "mo.png")


def cfg_for(spec: str, owl, review: str = "none", shots: int = 3) -> RunConfig:
    return RunConfig.build(prompt=PROMPT, subject=PIP, name="Pip", class_word="fox", shots=shots, width=128, height=80,
                           fps=4, shot_duration=2.0, llm=spec, review=review,
                           supporting=[CastMember(name="Mo", class_word="owl", media=owl)])


def good(shots: int = 3) -> StoryScript:
    """An answer the LLM might give: a valid story of the cast, told for the prompt."""
    return TemplatePlanner(PlannerConfig(shot_duration=2.0))(PROMPT, "Pip", shots, seed=5, class_word="fox",
                                                             supporting=[("Mo", "owl")])


def with_shot(script: StoryScript, i: int, **change) -> str:
    data = json.loads(script.model_dump_json())
    data["shots"][i]["characters"] = change["characters"](data["shots"][i]["characters"])
    return json.dumps(data)


def told(out) -> StoryScript:
    return StoryScript.model_validate_json((out / "story.json").read_text())


def test_the_designer_is_told_the_cast_and_the_characters_field(tmp_path, owl):
    out = tmp_path / "r"
    with LLMServer({"designer": [good().model_dump_json()], **TOOLS}) as srv:
        result = run_crew(cfg_for(srv.spec, owl), out, show_progress=False)
        (asked,) = srv.llm.requests_of("designer")
    system, brief = asked["messages"][0]["content"], asked["messages"][1]["content"]
    assert "Pip the fox (the lead), Mo the owl" in system and "exactly (Pip, Mo)" in system
    assert '- characters: every character of the cast the shot shows, each as {"name": one of Pip, Mo' in system
    assert "side by side" in system
    assert "Mo the owl" in brief
    assert result.script == told(out) == good()
    assert "warning" not in json.loads((out / MANIFEST).read_text())["artifacts"]["story"]["meta"]


def test_a_one_character_film_gets_todays_role_message(tmp_path):
    cfg = RunConfig.build(prompt=PROMPT, subject=PIP, name="Pip", class_word="fox", shots=3, width=128, height=80,
                          fps=4, shot_duration=2.0, llm="none", review="none")
    story = TemplatePlanner(PlannerConfig(shot_duration=2.0))(PROMPT, "Pip", 3, seed=5, class_word="fox")
    with LLMServer({"designer": [story.model_dump_json()], **TOOLS}) as srv:
        run_crew(cfg.model_copy(update={"llm": srv.spec}), tmp_path / "r", show_progress=False)
        (asked,) = srv.llm.requests_of("designer")
    system = asked["messages"][0]["content"]
    assert "cast" not in system and "characters" not in system
    assert "it must appear in every shot.\n\nFor every shot give:" in system
    assert "(at least 2)\n\nTell the user's story" in system


def test_a_name_not_in_the_cast_goes_back_with_the_reason(tmp_path, owl):
    crongo = with_shot(good(), 1, characters=lambda cs: [cs[0] | {"name": "Crongo"}, *cs[1:]])
    out = tmp_path / "r"
    with LLMServer({"designer": [crongo, good().model_dump_json()], **TOOLS}) as srv:
        result = run_crew(cfg_for(srv.spec, owl), out, show_progress=False)
        asked = srv.llm.requests_of("designer")
    assert len(asked) == 2
    sent_back = asked[1]["messages"][-1]["content"]
    assert "shot 2 names 'Crongo', who is not in the cast (Pip, Mo)" in sent_back
    assert asked[1]["messages"][-2]["content"] == crongo, "the answer it refers to is in the conversation"
    assert result.script == told(out) == good()


def test_a_hidden_character_goes_back_with_the_reason(tmp_path, owl):
    # Mo's box on top of Pip's: one of them would be hidden behind the other.
    hidden = with_shot(good(), 0, characters=lambda cs: [cs[0], cs[1] | {"region": cs[0]["region"]}])
    out = tmp_path / "r"
    with LLMServer({"designer": [hidden, good().model_dump_json()], **TOOLS}) as srv:
        run_crew(cfg_for(srv.spec, owl), out, show_progress=False)
        asked = srv.llm.requests_of("designer")
    assert len(asked) == 2 and "shot 1 hides" in asked[1]["messages"][-1]["content"]
    assert "side by side" in asked[1]["messages"][-1]["content"]
    assert told(out) == good()


def test_an_unused_character_is_a_warning_not_a_refusal(tmp_path, owl):
    # Every shot of the lead alone (no characters): a usable story that leaves Mo out.
    alone = TemplatePlanner(PlannerConfig(shot_duration=2.0))("a fox learns to swim", "Pip", 3, seed=5, class_word="fox")
    out = tmp_path / "r"
    with LLMServer({"designer": [alone.model_dump_json()], **TOOLS}) as srv:
        result = run_crew(cfg_for(srv.spec, owl), out, show_progress=False)
        asked = srv.llm.requests_of("designer")
    assert len(asked) == 1, "not asked again for an unused character"
    assert result.script == told(out) == alone and result.film is not None
    warning = json.loads((out / MANIFEST).read_text())["artifacts"]["story"]["meta"]["warning"]
    assert warning == "Mo is in the cast but in no shot"
    events = json.loads((out / TRANSCRIPT).read_text())["sessions"][-1]["events"]
    assert "story: accepted with a warning: Mo is in the cast but in no shot" in events


def test_a_story_that_never_fits_the_cast_is_refused_after_the_last_try(tmp_path, owl):
    crongo = with_shot(good(), 1, characters=lambda cs: [cs[0] | {"name": "Crongo"}, *cs[1:]])
    with LLMServer({"designer": [crongo, crongo, crongo], **TOOLS}) as srv:
        with pytest.raises(StoryAgentError, match="no valid story in 3 tries .*Crongo"):
            run_crew(cfg_for(srv.spec, owl), tmp_path / "r", show_progress=False)
        assert len(srv.llm.requests_of("designer")) == 3


def test_a_redo_naming_a_character_asks_the_llm_with_the_cast_and_a_stranger_asks_nobody(tmp_path, owl):
    first = good()
    waving = json.loads(first.model_dump_json())
    mo = next(c for c in waving["shots"][1]["characters"] if c["name"] == "Mo")
    mo["action"] = "waves"
    waving["shots"][0]["narration"] = "The LLM changed shot 1 as well."
    out = tmp_path / "r"
    io = ScriptedIO(["redo 2: Crongo waves", "redo 2: Mo waves", "ok", "ok", "ok"])
    script = {"designer": [first.model_dump_json(), json.dumps(waving)],
              "manager": ["story_designer", "story_designer", "storyboard_generator", "video_creator", "nobody"], **TOOLS}
    with LLMServer(script) as srv:
        result = run_crew(cfg_for(srv.spec, owl, review="human"), out, show_progress=False, io=io)
        asked = srv.llm.requests_of("designer")
    # The stranger's name came back in one sentence, and no LLM was asked about it.
    assert "Crongo is not in the cast (Pip, Mo): name one of them" in io.questions[1]
    assert "No shot of the story changed." in io.questions[1]
    assert len(asked) == 2
    ask = asked[1]["messages"][-1]["content"]
    assert "'Mo waves'" in ask and "The cast is Pip, Mo" in ask and "characters" in ask
    # Only shot 2 of the LLM's answer is taken.
    assert result.script.shots[0] == first.shots[0] and result.script.shots[2] == first.shots[2]
    assert next(c for c in result.script.shots[1].characters if c.name == "Mo").action == "waves"
    assert "Story rewritten now: shot 2; unchanged: shot 1, 3." in io.questions[2]

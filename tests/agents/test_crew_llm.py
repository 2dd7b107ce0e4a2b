"""The crew through a real OpenAI-compatible server on 127.0.0.1, via AG2 and the openai client."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.agents.llm import parse_llm
from storyagent.config import RunConfig
from storyagent.errors import StoryAgentError
from storyagent.models.planner import PlannerConfig, TemplatePlanner
from storyagent.workspace import MANIFEST
from tests.support.llm_server import Delay, HTTPError, LLMServer, ToolCall

from tests.support.paths import ROOT
PIP = ROOT / "examples" / "pip" / "pip.png"


def cfg_for(spec: str, review: str = "llm", shots: int = 3) -> RunConfig:
    return RunConfig.build(prompt="a day at the seaside", subject=PIP, name="Pip", class_word="fox", shots=shots,
                           width=128, height=80, fps=4, shot_duration=2.0, llm=spec, review=review)


def script_json(shots: int) -> str:
    return TemplatePlanner(PlannerConfig(shot_duration=2.0))("a day at the seaside", "Pip", shots, seed=7, class_word="fox").model_dump_json()


def night_at(shot: int, shots: int) -> str:
    """The Story Designer's rewrite after "redo N: make it night": the same story, shot N at night."""
    script = json.loads(script_json(shots))
    script["shots"][shot - 1]["background"] = "the harbour wall by the sea at night"
    return json.dumps(script)


def mtimes(root: Path, pattern: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(root.glob(pattern))}


def test_full_crew_with_llm_retries_review_and_guarded_manager(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYAGENT_LLM_API_KEY", "sk-secret-do-not-log-123")
    out = tmp_path / "run"
    snapshot: dict[str, dict[str, int]] = {}

    def bad_storyboard(body):
        snapshot["boards"] = mtimes(out / "storyboard", "shot_*.png")
        content = body["messages"][-1]["content"]
        assert any(part.get("type") == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,")
                   for part in content), "the observer is shown the contact sheet"
        return "redo 2: make it night"

    script = {
        "designer": ["Here you go: {\"title\": \"oops\", \"shots\": [}",  # malformed JSON
                     script_json(2),                                      # wrong shot count
                     "```json\n" + script_json(3) + "\n```",
                     night_at(2, 3)],                                     # the rewrite after "redo 2: make it night"
        "observer": ["good", bad_storyboard, "good", "good"],
        # The manager is asked after every review; its second pick would skip the redo and is overruled.
        "manager": ["storyboard_generator", "video_creator", "video_creator", "nobody"],
        "storyboard": [ToolCall("generate_storyboard", {}), ToolCall("generate_storyboard", {"shots": [2], "feedback": "make it night"})],
        "video": [ToolCall("animate_shots", {})],
    }
    with LLMServer(script) as srv:
        result = run_crew(cfg_for(srv.spec), out, show_progress=False)
        designer_requests = srv.llm.requests_of("designer")

    # Retries: the malformed answer and the wrong shot count went back with the validation message.
    assert len(designer_requests) == 4 and "make it night" in designer_requests[3]["messages"][-1]["content"]
    assert "malformed" in designer_requests[1]["messages"][-1]["content"]
    assert "exactly 3 were asked for" in designer_requests[2]["messages"][-1]["content"]
    assert len(result.script.shots) == 3

    assert result.speakers == ["story_designer", "observer", "storyboard_generator", "storyboard_generator", "observer",
                               "storyboard_generator", "storyboard_generator", "observer", "video_creator",
                               "video_creator", "observer"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert [s["speaker"] for s in manifest["speakers"]] == result.speakers
    transcript = json.loads((out / TRANSCRIPT).read_text())
    assert any("protocol requires 'storyboard_generator'" in e for e in transcript["sessions"][-1]["events"])

    # Only the redone shot's picture changed after the review.
    after = mtimes(out / "storyboard", "shot_*.png")
    changed = {k for k in after if after[k] != snapshot["boards"][k]}
    assert changed == {"shot_02.png", "shot_02_mask.png"}
    assert result.script.shots[1].background == "the harbour wall by the sea at night"
    assert (out / "film.mp4").exists() and len(list((out / "shots").glob("*.mp4"))) == 3

    for path in (out / MANIFEST, out / TRANSCRIPT):
        assert "sk-secret-do-not-log-123" not in path.read_text()


def test_designer_gives_up_after_three_bad_answers(tmp_path):
    with LLMServer({"designer": ["no json here"] * 3}) as srv:
        with pytest.raises(StoryAgentError, match="no valid story in 3 tries"):
            run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False)
        assert len(srv.llm.requests_of("designer")) == 3
    assert not (tmp_path / "r" / "story.json").exists()


def test_model_without_tool_calls_is_a_clear_error(tmp_path):
    script = {"designer": [script_json(3)], "storyboard": ["I would draw a fox."] * 3}
    with LLMServer(script) as srv:
        with pytest.raises(StoryAgentError, match="did not call its tool correctly in 3 tries"):
            run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False)
    assert (tmp_path / "r" / "story.json").exists(), "the story already written is kept"


def test_tool_arguments_are_validated_and_the_agent_may_retry(tmp_path):
    # The designer is asked to rewrite shot 1 from the video feedback; it keeps the story as it was.
    script = {"designer": [script_json(3), script_json(3)],
              "storyboard": [ToolCall("generate_storyboard", {"shots": [9]}), ToolCall("generate_storyboard", {})],
              "video": [ToolCall("animate_shots", {"shots": [1], "feedback": "../../etc/passwd"})]}
    with LLMServer(script) as srv:
        result = run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False)
    transcript = json.loads((tmp_path / "r" / TRANSCRIPT).read_text())["sessions"][-1]["messages"]
    assert any("Shot numbers must be between 1 and 3" in str(m["content"]) for m in transcript)
    assert result.speakers == ["story_designer", "storyboard_generator", "storyboard_generator", "storyboard_generator",
                               "storyboard_generator", "video_creator", "video_creator"]
    # Words from the LLM are only words: nothing is written outside the run folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"] and result.film is not None


def test_server_rejecting_tools_is_explained(tmp_path):
    script = {"designer": [script_json(3)], "storyboard": [HTTPError(400, "this model does not support tools")]}
    with LLMServer(script) as srv:
        with pytest.raises(StoryAgentError, match="does not support tool calls"):
            run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False)


def test_wrong_key_is_explained(tmp_path):
    with LLMServer({"designer": [HTTPError(401, "Incorrect API key provided")]}) as srv:
        with pytest.raises(StoryAgentError, match="rejected the API key; check OPENAI_API_KEY"):
            run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False)


def test_dead_endpoint_is_one_sentence(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = f"openai-compatible:m@http://127.0.0.1:{port}/v1"
    with pytest.raises(StoryAgentError, match=f"Cannot reach the LLM at http://127.0.0.1:{port}/v1"):
        run_crew(cfg_for(spec, review="none"), tmp_path / "r", show_progress=False)


def test_timeout_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYAGENT_LLM_TIMEOUT", "1")
    with LLMServer({"designer": [Delay(3, script_json(3))]}) as srv:
        with pytest.raises(StoryAgentError, match="did not answer within 1 s"):
            run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False, llm=parse_llm(srv.spec))


def test_cli_reports_dead_endpoint_without_traceback(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "storyagent", "run", "a day", "--subject", str(PIP), "-q",
                          "--llm", f"openai-compatible:m@http://127.0.0.1:{port}/v1", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Cannot reach the LLM" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("spec,needle", [("openai:gpt-4o", "OPENAI_API_KEY"), ("banana", "not understood"),
                                         ("openai-compatible:m@ftp://x", "MODEL@http")])
def test_llm_spec_errors(spec, needle, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from storyagent.errors import InputError

    with pytest.raises(InputError, match=needle):
        parse_llm(spec)


def test_llm_spec_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert parse_llm("openai:gpt-4o").config_list[0]["model"] == "gpt-4o"
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:11434")
    assert parse_llm("ollama:llama3.2").config_list[0]["base_url"] == "http://127.0.0.1:11434/v1"
    oai = tmp_path / "OAI_CONFIG_LIST"
    oai.write_text(json.dumps([{"model": "m", "api_key": "k", "base_url": "http://127.0.0.1:1/v1"}]))
    settings = parse_llm(str(oai))
    assert settings.enabled and "k" not in settings.spec
    monkeypatch.setenv("STORYAGENT_LLM", "ollama:qwen")
    assert parse_llm(None).spec == "ollama:qwen"
    monkeypatch.delenv("STORYAGENT_LLM")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "storyagent.toml").write_text('llm = "ollama:from-file"\n')
    assert parse_llm(None).spec == "ollama:from-file"

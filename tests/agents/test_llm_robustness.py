"""A broken or careless LLM, through the real OpenAI-compatible server on 127.0.0.1 (issue 16, finding 7):
malformed answers end the run in one sentence naming --llm, arguments and verdicts the crew cannot use go
back to the LLM (bounded), and credentials in the endpoint URL are never recorded."""

import base64
import json
import os
import subprocess
import sys

import pytest

from storyagent.agents.crew import TRANSCRIPT, run_crew
from storyagent.agents.llm import TIMEOUT_VARIABLE, parse_llm
from storyagent.errors import InputError, StoryAgentError
from storyagent.workspace import MANIFEST
from tests.support.llm_server import LLMServer, Raw, ToolCall
from tests.agents.test_crew_llm import PIP, ROOT, cfg_for, night_at, script_json

COMPLETION = {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "test-model"}
MALFORMED = {
    "garbage body": (Raw(b"<html><body>502 Bad Gateway</body></html>", "text/html"), "a body that is not JSON"),
    "missing choices": (Raw(json.dumps(COMPLETION).encode()), 'without a "choices" list'),
    "empty choices": (Raw(json.dumps(COMPLETION | {"choices": []}).encode()), 'with an empty "choices" list'),
    "non-UTF-8 body": (Raw(b'{"choices": [{"message": {"content": "\xff\xfe caf\xe9"}}]}'), "not UTF-8 text"),
}


def transcript_of(out) -> dict:
    return json.loads((out / TRANSCRIPT).read_text())["sessions"][-1]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_answer_is_one_sentence_naming_llm_and_keeps_the_story(tmp_path, case):
    answer, needle = MALFORMED[case]
    out = tmp_path / "r"
    with LLMServer({"designer": [script_json(3)], "storyboard": [answer]}) as srv:
        with pytest.raises(StoryAgentError) as err:
            run_crew(cfg_for(srv.spec, review="none"), out, show_progress=False)
        assert len(srv.llm.requests_of("storyboard")) == 1, "a malformed answer is not retried"
    message = str(err.value)
    assert needle in message and f"--llm {srv.spec}" in message and f"The LLM at {srv.url} answered" in message
    assert "\n" not in message and message.count("; ") == 1 and message.endswith("or use --llm none.")
    story = json.loads((out / "story.json").read_text())
    assert len(story["shots"]) == 3, "the story written before the failure is kept"


def test_cli_reports_a_garbage_answer_in_one_line_without_internal_error(tmp_path):
    with LLMServer({"designer": [Raw(b"\x00\x01garbage", "application/octet-stream")]}) as srv:
        res = subprocess.run([sys.executable, "-m", "storyagent", "run", "a day", "--subject", str(PIP), "-q",
                              "--llm", srv.spec, "--out", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: The LLM at") and "--llm" in lines[0]
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr


def test_over_long_tool_argument_goes_back_to_the_llm(tmp_path):
    out = tmp_path / "r"
    script = {"designer": [script_json(3), night_at(2, 3)],
              "storyboard": [ToolCall("generate_storyboard", {"shots": [2], "feedback": "night " * 500}),
                             ToolCall("generate_storyboard", {"shots": [2], "feedback": "make it night"})],
              "video": [ToolCall("animate_shots", {})]}
    with LLMServer(script) as srv:
        result = run_crew(cfg_for(srv.spec, review="none"), out, show_progress=False)
        retry = srv.llm.requests_of("storyboard")[1]["messages"]
    assert any("feedback: String should have at most 2000 characters" in str(m.get("content")) for m in retry)
    assert result.film is not None and result.script.shots[1].background.endswith("at night")
    assert "night night" not in (out / "story.json").read_text(), "the refused words were not applied"


def test_over_long_tool_argument_is_retried_a_bounded_number_of_times(tmp_path):
    too_long = ToolCall("generate_storyboard", {"feedback": "x" * 2001})
    with LLMServer({"designer": [script_json(3)], "storyboard": [too_long] * 3}) as srv:
        with pytest.raises(StoryAgentError, match="did not call its tool correctly in 3 tries"):
            run_crew(cfg_for(srv.spec, review="none"), tmp_path / "r", show_progress=False)
    assert (tmp_path / "r" / "story.json").exists(), "the story already written is kept"


def test_observer_verdict_out_of_range_goes_back_to_the_observer(tmp_path):
    out = tmp_path / "r"
    script = {"designer": [script_json(3), night_at(2, 3)],
              "observer": ["good", "redo 99: darker sky", "redo 2: make it night", "good", "good"],
              "manager": ["storyboard_generator", "storyboard_generator", "video_creator"],
              "storyboard": [ToolCall("generate_storyboard", {}),
                             ToolCall("generate_storyboard", {"shots": [2], "feedback": "make it night"})],
              "video": [ToolCall("animate_shots", {})]}
    with LLMServer(script) as srv:
        result = run_crew(cfg_for(srv.spec), out, show_progress=False)
        correction = srv.llm.requests_of("observer")[2]["messages"]
    assert correction[-2] == {"role": "assistant", "content": "redo 99: darker sky"}
    assert "Shot numbers must be between 1 and 3" in correction[-1]["content"]
    assert result.script.shots[1].background.endswith("at night"), "the corrected verdict was acted on"
    assert result.film is not None and transcript_of(out)["events"] == []


def test_observer_that_never_gives_a_usable_verdict_has_the_stage_accepted(tmp_path):
    out = tmp_path / "r"
    script = {"designer": [script_json(3)],
              "observer": ["good", "redo 99", "redo 0: again", "redo 4-7", "good"],
              "manager": ["storyboard_generator", "video_creator"],
              "storyboard": [ToolCall("generate_storyboard", {})],
              "video": [ToolCall("animate_shots", {})]}
    with LLMServer(script) as srv:
        result = run_crew(cfg_for(srv.spec), out, show_progress=False)
        assert len(srv.llm.requests_of("observer")) == 5
    assert result.film is not None
    assert result.speakers.count("storyboard_generator") == 2, "the storyboard was drawn once and accepted"
    (event,) = transcript_of(out)["events"]
    assert event.startswith("storyboard: accepted; the observer's LLM gave no usable verdict in 3 tries")


def test_credentials_in_the_llm_url_are_used_but_never_recorded(tmp_path):
    out = tmp_path / "r"
    script = {"designer": [script_json(3)], "storyboard": [ToolCall("generate_storyboard", {})],
              "video": [ToolCall("animate_shots", {})]}
    with LLMServer(script) as srv:
        secret_url = srv.url.replace("http://", "http://pip:hunter2-secret@")
        res = subprocess.run([sys.executable, "-m", "storyagent", "run", "a day at the seaside", "--subject", str(PIP),
                              "--shots", "3", "--width", "128", "--height", "80", "--fps", "4", "--duration", "2",
                              "-q", "--llm", f"openai-compatible:test-model@{secret_url}", "--out", str(out)],
                             capture_output=True, text=True, timeout=180, cwd=ROOT)
        authorizations = srv.llm.authorizations
    assert res.returncode == 0, res.stderr
    # The client still authenticates with them: they are kept in memory only.
    assert authorizations and set(authorizations) == {"Basic " + base64.b64encode(b"pip:hunter2-secret").decode()}
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["inputs"]["llm"] == f"openai-compatible:test-model@{srv.url}"
    for path in out.rglob("*.json"):
        assert "hunter2" not in path.read_text(), path
    assert "hunter2" not in res.stdout + res.stderr

    settings = parse_llm(f"openai-compatible:m@{secret_url}")
    assert "hunter2" not in settings.spec + settings.endpoint
    assert settings.config_list[0]["base_url"] == secret_url


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "1e999"])
def test_bad_llm_timeout_is_one_sentence_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(TIMEOUT_VARIABLE, value)
    with pytest.raises(InputError) as err:
        parse_llm("none")
    message = str(err.value)
    assert message.startswith(f"{TIMEOUT_VARIABLE}={value!r} is not a timeout; set it to a number of seconds above 0")
    assert "\n" not in message


def test_llm_timeout_takes_seconds(monkeypatch):
    monkeypatch.setenv(TIMEOUT_VARIABLE, " 2.5 ")
    assert parse_llm("none").timeout == 2.5
    monkeypatch.setenv(TIMEOUT_VARIABLE, "")
    assert parse_llm("none").timeout == 120


def test_cli_reports_a_bad_llm_timeout_without_internal_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "storyagent", "run", "a day", "--subject", str(PIP), "-q",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, TIMEOUT_VARIABLE: "abc"})
    assert res.returncode == 2
    expected = ("error: STORYAGENT_LLM_TIMEOUT='abc' is not a timeout; set it to a number of seconds above 0 "
                "(e.g. 300) or unset it for the default 120.")
    assert res.stderr.strip().splitlines() == [expected]


def test_the_python_api_records_no_password_either():
    """`run_crew(cfg)` records `cfg.inputs_record()`: an --llm URL's credentials never reach it."""
    from storyagent.config import RunConfig

    cfg = RunConfig.build(prompt="a day", subject=PIP,
                          name="Pip", llm="openai-compatible:m@http://pip:hunter2-secret@127.0.0.1:9/v1")
    assert cfg.inputs_record()["llm"] == "openai-compatible:m@http://127.0.0.1:9/v1"
    assert cfg.llm.endswith("pip:hunter2-secret@127.0.0.1:9/v1"), "the client still gets them"

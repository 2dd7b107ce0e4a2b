"""Which LLM the crew talks to, from `--llm`, the environment, or the config file.

Specs:
  none                                       offline: template planner, rule-based selection
  openai:MODEL                               OpenAI, key from OPENAI_API_KEY
  ollama:MODEL                               Ollama's OpenAI-compatible API (OLLAMA_HOST, default localhost:11434)
  openai-compatible:MODEL@http://host:port/v1  vLLM, LM Studio, llama.cpp server ... (key: STORYAGENT_LLM_API_KEY)
  PATH                                       an AG2 OAI_CONFIG_LIST JSON file

When `--llm` is not given: STORYAGENT_LLM, then `llm = "..."` in ./storyagent.toml or
~/.config/storyagent/config.toml, then `none`. API keys are never written to logs or the manifest, nor
are credentials inside a URL (`http://user:pass@host/v1`): the client alone keeps them.

Every answer is checked on arrival (UTF-8 JSON with a non-empty `choices` list of messages), so a
broken endpoint ends the run with one sentence naming `--llm` instead of an error deep in the client.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyagent.environment import timeout_from_env, without_credentials
from storyagent.errors import InputError, StoryAgentError

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT = 120.0
TIMEOUT_VARIABLE = "STORYAGENT_LLM_TIMEOUT"
CONFIG_FILES = (Path("storyagent.toml"), Path("~/.config/storyagent/config.toml").expanduser())


class LLMAnswerError(StoryAgentError):
    """The endpoint answered with something that is not a chat completion."""


@dataclass
class LLMSettings:
    spec: str
    """What the user asked for, safe to log (never holds a key)."""
    config_list: list[dict[str, Any]] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    _http: httpx.Client | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def enabled(self) -> bool:
        return bool(self.config_list)

    @property
    def endpoint(self) -> str:
        """Where the LLM is, safe to show (credentials in the URL removed)."""
        if not self.config_list:
            return "none"
        return without_credentials(str(self.config_list[0].get("base_url") or "https://api.openai.com/v1"))

    def llm_config(self, temperature: float | None = None) -> dict[str, Any] | bool:
        """The AG2 `llm_config` for an agent; False when offline."""
        if not self.enabled:
            return False
        entries = [{**entry, "timeout": self.timeout, "max_retries": 0, "http_client": self.http_client()}
                   for entry in self.config_list]
        cfg: dict[str, Any] = {"config_list": entries, "cache_seed": None}
        if temperature is not None:
            cfg["temperature"] = temperature
        return cfg

    def http_client(self) -> httpx.Client:
        """One connection pool for the whole crew, checking every chat completion as it arrives."""
        if self._http is None:
            import openai

            class SharedClient(openai.DefaultHttpxClient):
                def __deepcopy__(self, memo: dict[int, Any]) -> SharedClient:
                    return self  # AG2 deep-copies every llm_config; a connection pool is shared, not copied

            self._http = SharedClient(event_hooks={"response": [self._check_answer]})
        return self._http

    def _check_answer(self, response: httpx.Response) -> None:
        if (response.status_code != 200 or not response.request.url.path.rstrip("/").endswith("/chat/completions")
                or "event-stream" in response.headers.get("content-type", "")):
            return  # error statuses are the client's to explain; only completions have this shape
        response.read()
        problem = answer_problem(response.content)
        if problem is not None:
            # Raised inside the openai client, which wraps it; explain_llm_error finds it in the chain.
            raise LLMAnswerError(f"The LLM at {self.endpoint} answered {problem}; check that --llm {self.spec} "
                                  "points at an OpenAI-compatible chat-completions endpoint, or use --llm none.")


def answer_problem(body: bytes) -> str | None:
    """What is wrong with a chat-completions body, as the end of "The LLM answered ..."; None if usable."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "with a body that is not UTF-8 text"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return f"with a body that is not JSON (it starts {text.strip()[:40]!r})"
    if not isinstance(data, dict):
        return f"with JSON that is not an object (a {type(data).__name__})"
    choices = data.get("choices")
    if choices is None:
        error = data.get("error")
        if error:
            detail = error.get("message") if isinstance(error, dict) else error
            return f"with an error instead of a completion ({str(detail).strip()[:120]!r})"
        return 'without a "choices" list'
    if not isinstance(choices, list):
        return f'with "choices" that is not a list (a {type(choices).__name__})'
    if not choices:
        return 'with an empty "choices" list'
    if not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices):
        return 'with a choice that holds no "message" object'
    return None


def llm_timeout() -> float:
    """Seconds to wait for one LLM answer, from STORYAGENT_LLM_TIMEOUT (default 120)."""
    return timeout_from_env(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)


def file_setting(key: str) -> str | None:
    """`key = "..."` from ./storyagent.toml, else from ~/.config/storyagent/config.toml; None when neither
    sets it (the settings a user keeps for every run: llm, voice, music, soundfont)."""
    for path in CONFIG_FILES:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"{path} is not valid TOML ({exc}); fix or remove it.") from exc
            if isinstance(data.get(key), str):
                return data[key]
    return None


def default_spec() -> str:
    if os.environ.get("STORYAGENT_LLM"):
        return os.environ["STORYAGENT_LLM"]
    return file_setting("llm") or "none"


def parse_llm(spec: str | None) -> LLMSettings:
    spec = (spec or default_spec()).strip()
    timeout = llm_timeout()
    if spec.lower() in ("", "none", "offline"):
        return LLMSettings("none", timeout=timeout)
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "openai" and rest:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise InputError("--llm openai:... needs OPENAI_API_KEY in the environment; set it or use --llm none.")
        return LLMSettings(spec, [{"model": rest, "api_key": key}], timeout)
    if kind == "ollama" and rest:
        host = os.environ.get("OLLAMA_HOST", "http://localhost:11434")
        if not host.startswith("http"):
            host = f"http://{host}"
        return LLMSettings(spec, [{"model": rest, "base_url": host.rstrip("/") + "/v1", "api_key": "ollama"}], timeout)
    if kind == "openai-compatible" and "@" in rest:
        model, _, url = rest.partition("@")
        if not model or not url.startswith(("http://", "https://")):
            raise InputError("--llm openai-compatible needs MODEL@http://host:port/v1, e.g. openai-compatible:llama3@http://127.0.0.1:8000/v1.")
        key = os.environ.get("STORYAGENT_LLM_API_KEY", "not-needed")
        return LLMSettings(f"openai-compatible:{model}@{without_credentials(url)}",
                           [{"model": model, "base_url": url, "api_key": key}], timeout)
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not a valid OAI_CONFIG_LIST JSON file ({exc.msg}, line {exc.lineno}).") from exc
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and "model" in e for e in entries):
            raise InputError(f"{path} must hold a JSON list of {{\"model\": ..., \"api_key\": ...}} entries.")
        return LLMSettings(f"config list {path}", entries, timeout)
    raise InputError(
        f"--llm {spec!r} is not understood; use none, openai:MODEL, ollama:MODEL, "
        "openai-compatible:MODEL@http://host:port/v1, or the path of an OAI_CONFIG_LIST file."
    )


def explain_llm_error(exc: BaseException, settings: LLMSettings) -> str | None:
    """One sentence for an LLM failure, naming the setting to fix; None if `exc` is not one."""
    import openai

    chain = _causes(exc)
    # A malformed answer is found by our check inside the client, which wraps it as a connection error.
    malformed = next((e for e in chain if isinstance(e, LLMAnswerError)), None)
    if malformed is not None:
        return str(malformed)
    where = settings.endpoint
    for current in chain:
        if isinstance(current, openai.APITimeoutError):
            return (f"The LLM at {where} did not answer within {settings.timeout:g} s; "
                    "raise STORYAGENT_LLM_TIMEOUT, use a faster model, or run with --llm none.")
        if isinstance(current, openai.APIConnectionError):
            return f"Cannot reach the LLM at {where}; check that the server is running and the --llm setting, or use --llm none."
        if isinstance(current, openai.AuthenticationError):
            return "The LLM rejected the API key; check OPENAI_API_KEY (or STORYAGENT_LLM_API_KEY / your OAI_CONFIG_LIST)."
        if isinstance(current, openai.NotFoundError):
            return f"The LLM server at {where} does not know the model in --llm {settings.spec}; check the model name."
        if isinstance(current, openai.BadRequestError) and "tool" in str(current).lower():
            return f"The model in --llm {settings.spec} does not support tool calls; choose a model that does."
        if isinstance(current, openai.APIStatusError):
            return f"The LLM at {where} answered with an error ({current.status_code}); check --llm {settings.spec}."
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain

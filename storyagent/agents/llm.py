"""Which LLM the crew talks to, from `--llm`, the environment, or the config file.

Specs:
  none                                       offline: template planner, rule-based selection
  openai:MODEL                               OpenAI, key from OPENAI_API_KEY
  ollama:MODEL                               Ollama's OpenAI-compatible API (OLLAMA_HOST, default localhost:11434)
  openai-compatible:MODEL@http://host:port/v1  vLLM, LM Studio, llama.cpp server ... (key: STORYAGENT_LLM_API_KEY)
  PATH                                       an AG2 OAI_CONFIG_LIST JSON file

When `--llm` is not given: STORYAGENT_LLM, then `llm = "..."` in ./storyagent.toml or
~/.config/storyagent/config.toml, then `none`. API keys are never written to logs or the manifest.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyagent.errors import InputError

DEFAULT_TIMEOUT = 120.0
CONFIG_FILES = (Path("storyagent.toml"), Path("~/.config/storyagent/config.toml").expanduser())


@dataclass
class LLMSettings:
    spec: str
    """What the user asked for, safe to log (never holds a key)."""
    config_list: list[dict[str, Any]] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def enabled(self) -> bool:
        return bool(self.config_list)

    @property
    def endpoint(self) -> str:
        if not self.config_list:
            return "none"
        return str(self.config_list[0].get("base_url") or "https://api.openai.com/v1")

    def llm_config(self, temperature: float | None = None) -> dict[str, Any] | bool:
        """The AG2 `llm_config` for an agent; False when offline."""
        if not self.enabled:
            return False
        entries = []
        for entry in self.config_list:
            e = {**entry, "timeout": self.timeout, "max_retries": 0}
            entries.append(e)
        cfg: dict[str, Any] = {"config_list": entries, "cache_seed": None}
        if temperature is not None:
            cfg["temperature"] = temperature
        return cfg


def default_spec() -> str:
    if os.environ.get("STORYAGENT_LLM"):
        return os.environ["STORYAGENT_LLM"]
    for path in CONFIG_FILES:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"{path} is not valid TOML ({exc}); fix or remove it.") from exc
            if isinstance(data.get("llm"), str):
                return data["llm"]
    return "none"


def parse_llm(spec: str | None) -> LLMSettings:
    spec = (spec or default_spec()).strip()
    timeout = float(os.environ.get("STORYAGENT_LLM_TIMEOUT", DEFAULT_TIMEOUT))
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
        return LLMSettings(f"openai-compatible:{model}@{url}", [{"model": model, "base_url": url, "api_key": key}], timeout)
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

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        where = settings.endpoint
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
        current = current.__cause__ or current.__context__
    return None

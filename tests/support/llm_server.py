"""A real OpenAI-compatible chat-completions server on 127.0.0.1 that replays scripted answers.

Each request is routed by its system message to a role (designer, manager, storyboard, video,
observer); the role's next scripted answer is sent back. An answer is text, a tool call, a
delay, an HTTP error, a raw body (malformed answers), or a callable that sees the request first.
Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROLES = {
    "You are the Story Designer": "designer",
    "You are the Agent Manager": "manager",
    "You are the Storyboard Generator": "storyboard",
    "You are the Video Creator": "video",
    "You are the Observer": "observer",
}


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class Delay:
    seconds: float
    then: Any = "ok"


@dataclass
class HTTPError:
    status: int
    message: str


@dataclass
class Raw:
    """Bytes sent as they are with status 200: a broken server's answer."""

    body: bytes
    content_type: str = "application/json"


@dataclass
class ScriptedLLM:
    script: dict[str, list[Any]]
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    """Each request's Authorization header, in order ("" when none)."""
    cursor: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def role_of(self, body: dict[str, Any]) -> str:
        for m in body.get("messages", []):
            if m.get("role") == "system":
                content = m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
                for prefix, role in ROLES.items():
                    if content.startswith(prefix):
                        return role
        return "unknown"

    def requests_of(self, role: str) -> list[dict[str, Any]]:
        return [body for r, body in self.requests if r == role]

    def next_answer(self, body: dict[str, Any]) -> tuple[str, Any]:
        role = self.role_of(body)
        self.requests.append((role, body))
        answers = self.script.get(role, [])
        i = self.cursor[role]
        self.cursor[role] += 1
        if i >= len(answers):
            raise AssertionError(f"no scripted answer left for {role} (request {i + 1})")
        answer = answers[i]
        if callable(answer) and not isinstance(answer, (ToolCall, Delay, HTTPError, Raw)):
            answer = answer(body)
        return role, answer


def completion(answer: Any, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "stop"
    if isinstance(answer, ToolCall):
        message["tool_calls"] = [{"id": f"call_{time.monotonic_ns()}", "type": "function",
                                  "function": {"name": answer.name, "arguments": json.dumps(answer.arguments)}}]
        finish = "tool_calls"
    else:
        message["content"] = str(answer)
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class LLMServer:
    """`with LLMServer(script) as srv:` serves at `srv.url` (…/v1) until the block ends."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.llm = ScriptedLLM(script)
        llm = self.llm

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                llm.authorizations.append(self.headers.get("Authorization", ""))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                try:
                    _, answer = llm.next_answer(body)
                except AssertionError as exc:
                    return self._send(500, {"error": {"message": str(exc)}})
                while isinstance(answer, Delay):
                    time.sleep(answer.seconds)
                    answer = answer.then
                if isinstance(answer, HTTPError):
                    return self._send(answer.status, {"error": {"message": answer.message, "type": "invalid_request_error"}})
                if isinstance(answer, Raw):
                    return self._send(200, answer.body, answer.content_type)
                self._send(200, completion(answer, body.get("model", "test")))

            def _send(self, status: int, payload: dict[str, Any] | bytes,
                      content_type: str = "application/json") -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def spec(self) -> str:
        return f"openai-compatible:test-model@{self.url}"


def on_request(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """Mark a scripted answer computed from the request (e.g. to snapshot files first)."""
    return fn

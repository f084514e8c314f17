"""A loopback Chat Completions server: Azure OpenAI's v1 API (``/openai/v1/chat/completions``) or any
OpenAI-compatible server (``/v1/chat/completions``), answering from a script.

It checks what a real service checks before answering — the path, ``Authorization: Bearer <expected>``, a known
deployment in ``model``, the shape of ``messages``, ``response_format`` and ``tools`` — and answers like the service:
401/404/400 error bodies, usage with ``prompt_tokens_details.cached_tokens``, 429 with ``retry-after``. Scripted
replies are served in order; a request with nothing left to serve gets a 500 naming the problem.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import LoopbackServer, RecordedRequest, Response

__all__ = ["FakeChatCompletionsServer", "Reply"]

_MESSAGE_ROLES = {"system", "developer", "user", "assistant", "tool"}
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    message: dict[str, Any] = field(default_factory=dict)
    """The assistant message (for 200 answers)."""
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    """The model name reported back; defaults to the requested deployment."""
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(
        cls,
        content: str,
        *,
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        cached_tokens: int = 0,
        model: str | None = None,
        finish_reason: str = "stop",
    ) -> Reply:
        """A plain assistant reply with the given usage."""
        return cls(
            message={"role": "assistant", "content": content, "refusal": None},
            finish_reason=finish_reason,
            usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cached": cached_tokens},
            model=model,
        )

    @classmethod
    def json(cls, value: Any, **kwargs: Any) -> Reply:
        """A reply whose content is ``value`` serialized as JSON."""
        return cls.text(json.dumps(value), **kwargs)

    @classmethod
    def tool_calls(cls, *calls: tuple[str, dict[str, Any] | str], **kwargs: Any) -> Reply:
        """A reply calling tools; arguments given as a str are sent verbatim (to script malformed JSON)."""
        base = cls.text("", **kwargs)
        wire_calls = [
            {
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for index, (name, args) in enumerate(calls)
        ]
        return cls(
            message={"role": "assistant", "content": None, "refusal": None, "tool_calls": wire_calls},
            finish_reason="tool_calls",
            usage=base.usage,
            model=base.model,
        )

    @classmethod
    def throttled(cls, *, retry_after: str | None = "1", retry_after_ms: str | None = None) -> Reply:
        """Azure OpenAI's 429 with ``retry-after`` (seconds) and optionally ``retry-after-ms``."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        message = "Requests to the ChatCompletions_Create Operation have exceeded the token rate limit of your tier."
        return cls(status=429, error={"code": "429", "message": message}, headers=headers)

    @classmethod
    def failure(cls, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> Reply:
        """Any error answer in the service's ``{"error": {"code", "message"}}`` shape."""
        return cls(status=status, error={"code": code, "message": message}, headers=dict(headers or {}))


class FakeChatCompletionsServer(LoopbackServer):
    """Chat Completions on 127.0.0.1.

    ``path_prefix`` is ``/openai/v1`` (Azure v1) or ``/v1`` (OpenAI-compatible). ``bearer`` is the token or key the
    ``Authorization`` header must carry. ``deployments`` are the names ``model`` may take.
    """

    def __init__(self, *, bearer: str, deployments: Iterable[str], path_prefix: str = "/openai/v1") -> None:
        super().__init__()
        self.bearer = bearer
        self.deployments = set(deployments)
        self.path_prefix = path_prefix.rstrip("/")
        self._script: deque[Reply] = deque()
        self._script_lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def endpoint(self) -> str:
        """The resource endpoint (what AZURE_OPENAI_ENDPOINT holds)."""
        return self.url

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` (what LLM_BASE_URL holds for compatible servers)."""
        return f"{self.url}{self.path_prefix}"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Requests to the chat completions path, in arrival order."""
        return [r for r in self.requests if r.path == f"{self.path_prefix}/chat/completions"]

    @property
    def pending(self) -> int:
        """Scripted replies not yet served."""
        return len(self._script)

    def script(self, *replies: Reply) -> None:
        """Queue replies; each request that passes the checks consumes one."""
        with self._script_lock:
            self._script.extend(replies)

    def handle(self, request: RecordedRequest) -> Response:
        if request.method != "POST" or request.path != f"{self.path_prefix}/chat/completions":
            return _error(404, "404", "Resource not found")
        if request.headers.get("authorization") != f"Bearer {self.bearer}":
            return _error(
                401, "401", "Access denied due to invalid subscription key or wrong API endpoint.", kind="auth"
            )
        try:
            body = request.json()
        except ValueError:
            return _error(400, "invalid_json", "We could not parse the JSON body of your request.")
        problem = _request_problem(body)
        if problem is not None:
            return _error(400, "invalid_request_error", problem)
        if body["model"] not in self.deployments:
            return _error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        with self._script_lock:
            reply = self._script.popleft() if self._script else None
        if reply is None:
            return _error(500, "fake_script_exhausted", "The fake server has no scripted reply left.")
        if reply.error is not None:
            return Response(reply.status, {"error": reply.error}, dict(reply.headers))
        return Response(reply.status, self._completion(body["model"], reply), dict(reply.headers))

    def _completion(self, deployment: str, reply: Reply) -> dict[str, Any]:
        prompt, completion = reply.usage.get("prompt_tokens", 0), reply.usage.get("completion_tokens", 0)
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": 1_767_225_600,
            "model": reply.model or deployment,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": reply.message, "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": reply.usage.get("cached", 0), "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }


def _error(status: int, code: str, message: str, *, kind: str = "invalid_request_error") -> Response:
    return Response(status, {"error": {"code": code, "message": message, "type": kind, "param": None}})


def _request_problem(body: Any) -> str | None:
    """What a real service would reject about this request body, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _MESSAGE_ROLES:
            return f"messages[{index}].role is invalid"
        if message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            return f"messages[{index}].tool_call_id is required for tool messages"
        content = message.get("content")
        if content is None and not (message["role"] == "assistant" and message.get("tool_calls")):
            return f"messages[{index}].content is required"
        if content is not None and not isinstance(content, str | list):
            return f"messages[{index}].content must be a string or an array"
    if "response_format" in body:
        problem = _response_format_problem(body["response_format"])
        if problem:
            return problem
    if "tools" in body:
        problem = _tools_problem(body["tools"])
        if problem:
            return problem
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body and (not isinstance(body[name], int) or body[name] < 1):
            return f"'{name}' must be a positive integer"
    return None


def _response_format_problem(response_format: Any) -> str | None:
    if not isinstance(response_format, dict) or response_format.get("type") not in {
        "text",
        "json_object",
        "json_schema",
    }:
        return "response_format.type must be one of text, json_object, json_schema"
    if response_format["type"] != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not _SCHEMA_NAME.fullmatch(str(spec.get("name", ""))):
        return "response_format.json_schema.name must match ^[a-zA-Z0-9_-]{1,64}$"
    if not isinstance(spec.get("schema"), dict):
        return "response_format.json_schema.schema must be an object"
    if "strict" in spec and not isinstance(spec["strict"], bool):
        return "response_format.json_schema.strict must be a boolean"
    return None


def _tools_problem(tools: Any) -> str | None:
    if not isinstance(tools, list) or not tools:
        return "'tools' must be a non-empty array"
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            return f"tools[{index}] must be {{'type': 'function', 'function': {{...}}}}"
        if not isinstance(function.get("name"), str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", function["name"]):
            return f"tools[{index}].function.name is invalid"
        if "parameters" in function and not isinstance(function["parameters"], dict):
            return f"tools[{index}].function.parameters must be a JSON schema object"
    return None

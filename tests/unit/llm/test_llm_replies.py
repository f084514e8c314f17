"""Decoding replies and classifying failures — the provider's pure functions, with the SDK's own types."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError
from openai.types.chat import ChatCompletion

from shared.errors import InvalidRequest, ModelBehaviorError, NotConfigured, UpstreamUnavailable, WeftError
from shared.llm.chat import ChatToolCall, JsonSchemaFormat, ModelThrottled
from shared.llm.providers import (
    azure_v1_base_url,
    parse_completion,
    retry_after_seconds,
    translate_error,
)
from shared.results import TokenUsage

ANSWER_FORMAT = JsonSchemaFormat(
    "answer",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
        "required": ["city", "temp_c"],
        "additionalProperties": False,
    },
)


def completion(
    content: str | None = "ok",
    *,
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    refusal: str | None = None,
    usage: dict[str, Any] | None = None,
) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4.1-2025-04-14",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage,
        }
    )


def call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# ---------------------------------------------------------------------------------------------------------- decoding


def test_text_reply_with_usage() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "total_tokens": 110,
        "prompt_tokens_details": {"cached_tokens": 64},
    }

    result = parse_completion(completion("hello", usage=usage), role="worker", deployment="weft-worker")

    assert (result.content, result.parsed, result.role, result.deployment) == ("hello", None, "worker", "weft-worker")
    assert result.model == "gpt-4.1-2025-04-14"
    assert result.usage == TokenUsage(prompt_tokens=100, completion_tokens=10, cached_tokens=64)


def test_missing_usage_counts_as_zero() -> None:
    assert parse_completion(completion("x"), role="planner", deployment="d").usage == TokenUsage()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"city": "Paris", "temp_c": 21}', id="bare"),
        pytest.param('```json\n{"city": "Paris", "temp_c": 21}\n```', id="fenced"),
        pytest.param('  \n{"city": "Paris", "temp_c": 21}\n', id="padded"),
    ],
)
def test_structured_reply_is_parsed(content: str) -> None:
    result = parse_completion(completion(content), role="planner", deployment="d", response_format=ANSWER_FORMAT)

    assert result.parsed == {"city": "Paris", "temp_c": 21}


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        pytest.param(completion('{"city": "Paris",'), "not valid JSON (Expecting property name", id="truncated"),
        pytest.param(completion("It is sunny."), "not valid JSON", id="prose"),
        pytest.param(completion(None), "Your reply was empty", id="none"),
        pytest.param(completion('{"city": "Paris"}'), "at `$`: 'temp_c' is a required property", id="missing-field"),
        pytest.param(
            completion('{"city": "Paris", "temp_c": "warm"}'), "at `$.temp_c`: 'warm' is not of type", id="wrong-type"
        ),
        pytest.param(completion('{"city": "Par', finish_reason="length"), "cut off", id="length"),
        pytest.param(completion(None, refusal="I can't help with that."), "You declined", id="refusal"),
        pytest.param(completion("", finish_reason="content_filter"), "content filter", id="content-filter"),
    ],
)
def test_unusable_structured_replies_raise_model_behavior_error(reply: ChatCompletion, fragment: str) -> None:
    with pytest.raises(ModelBehaviorError) as raised:
        parse_completion(reply, role="planner", deployment="d", response_format=ANSWER_FORMAT)

    assert fragment in raised.value.message


def test_tool_calls_are_decoded_and_skip_structured_parsing() -> None:
    reply = completion(None, finish_reason="tool_calls", tool_calls=[call("get_weather", '{"city": "Paris"}')])

    result = parse_completion(reply, role="planner", deployment="d", response_format=ANSWER_FORMAT)

    assert result.tool_calls == (ChatToolCall("call_1", "get_weather", {"city": "Paris"}),)
    assert result.parsed is None


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        pytest.param("{city: Paris}", "were not valid JSON", id="not-json"),
        pytest.param('["Paris"]', "must be a JSON object, not list", id="not-an-object"),
    ],
)
def test_bad_tool_arguments_raise_model_behavior_error_naming_the_tool(arguments: str, fragment: str) -> None:
    reply = completion(None, finish_reason="tool_calls", tool_calls=[call("get_weather", arguments)])

    with pytest.raises(ModelBehaviorError, match="`get_weather`") as raised:
        parse_completion(reply, role="planner", deployment="d")

    assert fragment in raised.value.message


def test_empty_tool_arguments_mean_no_arguments() -> None:
    reply = completion(None, finish_reason="tool_calls", tool_calls=[call("now", "")])

    assert parse_completion(reply, role="worker", deployment="d").tool_calls[0].arguments == {}


# ------------------------------------------------------------------------------------------------------------ errors

REQUEST = httpx2.Request("POST", "https://r.openai.azure.com/openai/v1/chat/completions")


def status_error(
    cls: type[openai.APIStatusError], status: int, code: str = "x", headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    body = {"error": {"code": code, "message": f"message for {code}"}}
    response = httpx2.Response(status, headers=headers or {}, json=body, request=REQUEST)
    return cls(f"Error code: {status}", response=response, body=body["error"])


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        pytest.param(
            status_error(openai.RateLimitError, 429, headers={"retry-after": "42"}), ModelThrottled, True, id="429"
        ),
        pytest.param(
            status_error(openai.RateLimitError, 429, "insufficient_quota"), NotConfigured, False, id="429-quota"
        ),
        pytest.param(status_error(openai.InternalServerError, 500), UpstreamUnavailable, True, id="500"),
        pytest.param(status_error(openai.InternalServerError, 503), UpstreamUnavailable, True, id="503"),
        pytest.param(status_error(openai.ConflictError, 409), UpstreamUnavailable, True, id="409"),
        pytest.param(status_error(openai.BadRequestError, 400), InvalidRequest, False, id="400"),
        pytest.param(status_error(openai.UnprocessableEntityError, 422), InvalidRequest, False, id="422"),
        pytest.param(status_error(openai.AuthenticationError, 401), NotConfigured, False, id="401"),
        pytest.param(status_error(openai.PermissionDeniedError, 403), NotConfigured, False, id="403"),
        pytest.param(status_error(openai.NotFoundError, 404), NotConfigured, False, id="404"),
        pytest.param(openai.APITimeoutError(request=REQUEST), UpstreamUnavailable, True, id="timeout"),
        pytest.param(openai.APIConnectionError(request=REQUEST), UpstreamUnavailable, True, id="connection"),
        pytest.param(CredentialUnavailableError("no identity"), NotConfigured, False, id="no-credential"),
        pytest.param(ClientAuthenticationError("token endpoint down"), UpstreamUnavailable, True, id="token-failure"),
    ],
)
def test_every_failure_maps_to_one_leaf(exc: BaseException, expected: type[WeftError], retryable: bool) -> None:
    error = translate_error(exc, provider="Azure OpenAI", deployment="weft-planner")

    assert type(error) is expected
    assert error.retryable is retryable
    assert "weft-planner" in error.message


def test_the_throttling_error_carries_the_servers_hint() -> None:
    exc = status_error(openai.RateLimitError, 429, headers={"retry-after": "42", "retry-after-ms": "41500"})

    error = translate_error(exc, provider="Azure OpenAI", deployment="d")

    assert isinstance(error, ModelThrottled)
    assert error.retry_after_seconds == 41.5


def test_programming_errors_are_not_translated() -> None:
    assert translate_error(TypeError("bad call"), provider="p", deployment="d") is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({"retry-after": "7"}, 7.0, id="seconds"),
        pytest.param({"retry-after-ms": "250", "retry-after": "1"}, 0.25, id="ms-wins"),
        pytest.param({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="http-date-past"),
        pytest.param({"retry-after": "soon"}, None, id="garbage"),
        pytest.param({"retry-after": "-3"}, None, id="negative"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after_header_parsing(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_a_future_http_date_counts_down() -> None:
    wait = retry_after_seconds({"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"})

    assert wait is not None and wait > 365 * 24 * 3600


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("https://r.openai.azure.com", id="bare"),
        pytest.param("https://r.openai.azure.com/", id="slash"),
        pytest.param("https://r.openai.azure.com/openai/v1/", id="already-v1"),
        pytest.param(" https://r.openai.azure.com/openai ", id="openai-suffix"),
    ],
)
def test_azure_endpoint_becomes_the_v1_base_url(endpoint: str) -> None:
    assert azure_v1_base_url(endpoint) == "https://r.openai.azure.com/openai/v1/"

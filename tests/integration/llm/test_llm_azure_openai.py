"""Azure OpenAI through the real openai SDK and the real azure-identity managed-identity path, against loopbacks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.errors import InvalidRequest, ModelBehaviorError, NotConfigured, UpstreamUnavailable, is_retryable
from shared.llm.chat import (
    ChatMessage,
    JsonSchemaFormat,
    LlmSettings,
    ModelThrottled,
    ToolSchema,
    UnusableReply,
    build_chat_model,
    render_prompt,
)
from shared.llm.providers import ChatCompletionsModel
from shared.results import TokenUsage
from tests.fakes.identity_server import FakeManagedIdentityEndpoint
from tests.fakes.openai_server import FakeChatCompletionsServer, Reply

PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "tool": {"type": "string"},
                    "args_json": {"type": "string"},
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "tool", "args_json", "depends_on"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["steps"],
    "additionalProperties": False,
}
PLAN_FORMAT = JsonSchemaFormat("plan", PLAN_SCHEMA)
WEATHER = ToolSchema(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = [ChatMessage.system("You are terse."), ChatMessage.user("Weather in Paris?")]
COGNITIVE = "https://cognitiveservices.azure.com"


def test_roles_hit_their_own_deployments_with_the_managed_identity_token(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer, identity: FakeManagedIdentityEndpoint
) -> None:
    azure_openai.script(
        Reply.text("plan", prompt_tokens=120, completion_tokens=30, cached_tokens=64, model="gpt-4.1-2025-04-14"),
        Reply.text("answer", prompt_tokens=80, completion_tokens=20, cached_tokens=0, model="gpt-4.1-mini"),
    )

    planned = azure_model.complete(ASK, role="planner")
    answered = azure_model.complete(ASK, role="worker")

    assert [r.json()["model"] for r in azure_openai.chat_requests] == ["weft-planner", "weft-worker"]
    assert all(r.path == "/openai/v1/chat/completions" for r in azure_openai.chat_requests)
    assert all("api-version" not in r.query for r in azure_openai.chat_requests)
    bearer = f"Bearer {identity.token_for(COGNITIVE)}"
    assert [r.headers["authorization"] for r in azure_openai.chat_requests] == [bearer, bearer]
    # One token request, for the user-assigned identity, reused for the second call.
    assert identity.issued(COGNITIVE) == 1
    assert identity.requests[0].query["client_id"] == identity.client_id
    assert (planned.deployment, planned.model, planned.role) == ("weft-planner", "gpt-4.1-2025-04-14", "planner")
    assert (answered.deployment, answered.model, answered.content) == ("weft-worker", "gpt-4.1-mini", "answer")
    assert planned.usage == TokenUsage(prompt_tokens=120, completion_tokens=30, cached_tokens=64)
    assert sum([planned.usage, answered.usage]) == TokenUsage(prompt_tokens=200, completion_tokens=50, cached_tokens=64)


def test_default_credential_uses_the_system_assigned_identity(system_identity: FakeManagedIdentityEndpoint) -> None:
    with FakeChatCompletionsServer(bearer=system_identity.token_for(COGNITIVE), deployments={"gpt-4o"}) as server:
        server.script(Reply.text("hi"))
        settings = LlmSettings.from_env(
            {"AZURE_OPENAI_ENDPOINT": f"{server.endpoint}/", "LLM_PLANNER_DEPLOYMENT": "gpt-4o"}
        )
        model = build_chat_model(settings)
        assert isinstance(model, ChatCompletionsModel)
        try:
            result = model.complete([ChatMessage.user("hello")])
        finally:
            model.close()

    assert result.content == "hi"
    assert result.deployment == "gpt-4o"
    assert "client_id" not in system_identity.requests[0].query
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {system_identity.token_for(COGNITIVE)}"


def test_structured_plan_sends_the_json_schema_and_returns_the_parsed_value(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    plan = {"steps": [{"id": "w", "tool": "get_weather", "args_json": '{"city": "Paris"}', "depends_on": []}]}
    azure_openai.script(Reply.json(plan))
    system = render_prompt("task_planner", style="plan", style_rules=render_prompt("task_style_plan", max_steps="8"),
                           tools="get_weather(city: str)")

    result = azure_model.complete(
        [ChatMessage.system(system), ChatMessage.user("Weather in Paris?")], response_format=PLAN_FORMAT
    )

    assert result.parsed == plan
    sent = azure_openai.chat_requests[0].json()
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": PLAN_SCHEMA, "strict": True},
    }
    assert sent["messages"][0] == {"role": "system", "content": system}
    assert sent["max_completion_tokens"] == 4096


def test_tools_are_offered_and_tool_calls_come_back_decoded(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    azure_openai.script(
        Reply.tool_calls(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})),
        Reply.text("Paris 21 C, Oslo 9 C"),
    )

    first = azure_model.complete(ASK, tools=[WEATHER], role="worker")
    conversation = [
        *ASK,
        first.to_message(),
        ChatMessage.tool(first.tool_calls[0].id, '{"temp_c": 21}'),
        ChatMessage.tool(first.tool_calls[1].id, '{"temp_c": 9}'),
    ]
    second = azure_model.complete(conversation, tools=[WEATHER], role="worker")

    assert [(c.name, dict(c.arguments)) for c in first.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert first.finish_reason == "tool_calls"
    first_request, second_request = (r.json() for r in azure_openai.chat_requests)
    assert first_request["tools"] == [WEATHER.to_wire()]
    assert second_request["messages"][2]["tool_calls"][1]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    assert second_request["messages"][3] == {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": "call_0"}
    assert second.content == "Paris 21 C, Oslo 9 C"


def test_short_throttling_is_retried_by_the_sdk(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    azure_openai.script(Reply.throttled(retry_after="0.01"), Reply.text("after the wait"))

    result = azure_model.complete(ASK)

    assert result.content == "after the wait"
    assert [r.headers["x-stainless-retry-count"] for r in azure_openai.chat_requests] == ["0", "1"]


def test_persistent_throttling_raises_a_retryable_error_with_the_hint(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    azure_openai.script(*[Reply.throttled(retry_after="0.01")] * 3)

    with pytest.raises(ModelThrottled) as raised:
        azure_model.complete(ASK)

    assert len(azure_openai.chat_requests) == 3  # the first try and LLM_MAX_RETRIES=2 SDK retries
    assert isinstance(raised.value, UpstreamUnavailable)
    assert is_retryable(raised.value)
    assert raised.value.retry_after_seconds == pytest.approx(0.01)
    assert "weft-planner" in raised.value.message


def test_a_long_retry_after_is_left_to_durable_retries(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    azure_openai.script(Reply.throttled(retry_after="30"), Reply.text("never reached"))

    with pytest.raises(ModelThrottled) as raised:
        azure_model.complete(ASK)

    assert len(azure_openai.chat_requests) == 1  # 30 s > LLM_MAX_RETRY_WAIT_SECONDS=1: no in-call wait
    assert raised.value.retry_after_seconds == 30
    assert "retry after 30 s" in raised.value.message
    assert azure_openai.pending == 1


def test_server_errors_are_retried_then_surface_as_upstream_unavailable(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    boom = Reply.failure(500, "InternalServerError", "The server had an error.", headers={"retry-after-ms": "5"})
    azure_openai.script(boom, Reply.text("recovered"), boom, boom, boom)

    assert azure_model.complete(ASK).content == "recovered"
    with pytest.raises(UpstreamUnavailable) as raised:
        azure_model.complete(ASK)

    assert len(azure_openai.chat_requests) == 5
    assert is_retryable(raised.value)
    assert not isinstance(raised.value, ModelThrottled)


@pytest.mark.parametrize(
    ("reply", "error_type", "fragment"),
    [
        pytest.param(
            Reply.failure(400, "context_length_exceeded", "This model's maximum context length is 128000 tokens."),
            InvalidRequest,
            "context_length_exceeded",
            id="400-context-length",
        ),
        pytest.param(
            Reply.failure(400, "content_filter", "The response was filtered due to the prompt triggering a policy."),
            InvalidRequest,
            "content_filter",
            id="400-content-filter",
        ),
        pytest.param(
            Reply.failure(403, "PermissionDenied", "The principal lacks the required data action."),
            NotConfigured,
            "Cognitive Services OpenAI User",
            id="403-missing-role",
        ),
        pytest.param(
            Reply.failure(429, "insufficient_quota", "You exceeded your current quota."),
            NotConfigured,
            "no quota left",
            id="429-insufficient-quota",
        ),
    ],
)
def test_client_errors_are_not_retried(
    azure_model: ChatCompletionsModel,
    azure_openai: FakeChatCompletionsServer,
    reply: Reply,
    error_type: type[Exception],
    fragment: str,
) -> None:
    azure_openai.script(reply, Reply.text("never reached"))

    with pytest.raises(error_type) as raised:
        azure_model.complete(ASK)

    assert len(azure_openai.chat_requests) == 1
    assert not is_retryable(raised.value)
    assert fragment in str(raised.value)


def test_an_unknown_deployment_is_a_configuration_error(
    azure_openai: FakeChatCompletionsServer, azure_env: Callable[..., dict[str, str]]
) -> None:
    model = build_chat_model(LlmSettings.from_env(azure_env(LLM_WORKER_DEPLOYMENT="gpt-typo")))
    assert isinstance(model, ChatCompletionsModel)
    try:
        with pytest.raises(NotConfigured, match="gpt-typo"):
            model.complete(ASK, role="worker")
    finally:
        model.close()


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        pytest.param(Reply.text('{"steps": [ {"id": "a",'), "not valid JSON", id="truncated-json"),
        pytest.param(Reply.text("Sure! Here is the plan: step 1..."), "not valid JSON", id="prose"),
        pytest.param(Reply.json({"steps": [{"id": "a"}]}), "at `$.steps[0]`", id="schema-mismatch"),
        pytest.param(Reply.text(""), "empty", id="empty"),
        pytest.param(
            Reply.text('{"steps": [', finish_reason="length"), "cut off at the output token limit", id="length"
        ),
    ],
)
def test_an_unusable_plan_is_a_model_behavior_error_worded_for_a_repair_round(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer, reply: Reply, fragment: str
) -> None:
    azure_openai.script(reply)

    with pytest.raises(ModelBehaviorError) as raised:
        azure_model.complete(ASK, response_format=PLAN_FORMAT)

    assert isinstance(raised.value, UnusableReply)
    assert raised.value.usage == TokenUsage(prompt_tokens=11, completion_tokens=7)  # the failed call still counts
    assert raised.value.deployment == "weft-planner"
    assert fragment in raised.value.message
    assert "`plan`" in raised.value.message
    assert not is_retryable(raised.value)
    repair = render_prompt("repair", error=raised.value.message)
    assert raised.value.message in repair


def test_malformed_tool_arguments_are_a_model_behavior_error(
    azure_model: ChatCompletionsModel, azure_openai: FakeChatCompletionsServer
) -> None:
    azure_openai.script(Reply.tool_calls(("get_weather", "{city: Paris")))

    with pytest.raises(ModelBehaviorError, match="arguments of your call to `get_weather` were not valid JSON"):
        azure_model.complete(ASK, tools=[WEATHER])


def test_an_unreachable_endpoint_is_upstream_unavailable(
    identity: FakeManagedIdentityEndpoint, azure_env: Callable[..., dict[str, str]]
) -> None:
    with FakeChatCompletionsServer(bearer="x", deployments={"weft-planner"}) as gone:
        dead_endpoint = gone.endpoint
    model = build_chat_model(LlmSettings.from_env(azure_env(AZURE_OPENAI_ENDPOINT=dead_endpoint, LLM_MAX_RETRIES="0")))
    assert isinstance(model, ChatCompletionsModel)

    with pytest.raises(UpstreamUnavailable, match="could not be reached") as raised:
        model.complete(ASK)

    model.close()
    assert is_retryable(raised.value)


def test_a_missing_managed_identity_is_a_configuration_error(
    identity: FakeManagedIdentityEndpoint,
    azure_openai: FakeChatCompletionsServer,
    azure_env: Callable[..., dict[str, str]],
) -> None:
    model = build_chat_model(LlmSettings.from_env(azure_env(AZURE_CLIENT_ID="11111111-2222-3333-4444-555555555555")))
    assert isinstance(model, ChatCompletionsModel)

    with pytest.raises(NotConfigured, match="No Azure credential is available"):
        model.complete(ASK)

    model.close()
    assert azure_openai.chat_requests == []

"""The LLM seam's value types, settings and factory decisions (no servers)."""

from __future__ import annotations

import pytest

from shared.errors import NotConfigured
from shared.llm.chat import (
    LLM_NOT_CONFIGURED_MESSAGE,
    ChatMessage,
    ChatModel,
    ChatResult,
    ChatToolCall,
    JsonSchemaFormat,
    LlmSettings,
    ModelThrottled,
    ToolSchema,
    build_chat_model,
)
from shared.llm.providers import ChatCompletionsModel
from shared.results import TokenUsage


class DictSecrets:
    """A SecretSource over a dict, counting reads."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads: list[str] = []

    def get(self, name: str) -> str:
        self.reads.append(name)
        return self.values[name]


# ------------------------------------------------------------------------------------------------------------ usage


def test_usage_adds_field_by_field() -> None:
    assert TokenUsage(prompt_tokens=100, completion_tokens=20, cached_tokens=64) + TokenUsage(
        prompt_tokens=50, completion_tokens=5) == TokenUsage(prompt_tokens=150, completion_tokens=25, cached_tokens=64)


def test_usage_sums_over_a_run_with_or_without_a_start_value() -> None:
    calls = [TokenUsage(prompt_tokens=10, completion_tokens=1),
             TokenUsage(prompt_tokens=20, completion_tokens=2, cached_tokens=8),
             TokenUsage(prompt_tokens=30, completion_tokens=3, cached_tokens=16)]

    assert sum(calls) == TokenUsage(prompt_tokens=60, completion_tokens=6, cached_tokens=24)
    assert sum(calls, TokenUsage()) == TokenUsage(prompt_tokens=60, completion_tokens=6, cached_tokens=24)
    assert sum([], TokenUsage()) == TokenUsage()


def test_usage_total_and_round_trip() -> None:
    usage = TokenUsage(prompt_tokens=120, completion_tokens=30, cached_tokens=64)

    assert usage.total_tokens == 150
    assert TokenUsage.model_validate(usage.model_dump()) == usage
    assert TokenUsage.model_validate({}) == TokenUsage()


def test_usage_does_not_add_other_types() -> None:
    with pytest.raises(TypeError):
        _ = TokenUsage(prompt_tokens=1, completion_tokens=1, cached_tokens=0) + 3


# --------------------------------------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        pytest.param(ChatMessage.system("rules"), {"role": "system", "content": "rules"}, id="system"),
        pytest.param(ChatMessage.user("hi"), {"role": "user", "content": "hi"}, id="user"),
        pytest.param(
            ChatMessage.tool("call_1", '{"ok": true}'),
            {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_1"},
            id="tool-result",
        ),
        pytest.param(
            ChatMessage.assistant(None, [ChatToolCall("call_1", "get_weather", {"city": "Paris"})]),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            id="assistant-tool-calls",
        ),
    ],
)
def test_messages_render_to_the_chat_completions_shape(message: ChatMessage, wire: dict[str, object]) -> None:
    assert message.to_wire() == wire


def test_a_result_continues_the_conversation_as_an_assistant_message() -> None:
    call = ChatToolCall("call_9", "lookup", {"q": "x"})
    result = ChatResult(content=None, usage=TokenUsage(), deployment="d", model="m", role="worker", tool_calls=(call,))

    assert result.to_message() == ChatMessage("assistant", None, tool_calls=(call,))


def test_tool_schema_renders_a_function_tool() -> None:
    tool = ToolSchema("add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"}}})

    assert tool.to_wire() == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}}},
        },
    }


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        pytest.param("has space", {"type": "object"}, id="bad-name"),
        pytest.param("plan", {"type": "no-such-type"}, id="invalid-schema"),
    ],
)
def test_json_schema_format_rejects_what_the_service_would(name: str, schema: dict[str, object]) -> None:
    with pytest.raises(Exception, match=r"name must match|is not valid under any of the given schemas"):
        JsonSchemaFormat(name, schema)


def test_model_throttled_is_an_upstream_unavailable_carrying_the_hint() -> None:
    error = ModelThrottled("busy", retry_after_seconds=12.5)

    assert error.retryable
    assert error.retry_after_seconds == 12.5
    assert error.to_dict() == {"code": "model_throttled", "message": "busy", "field": None}


# --------------------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "provider"),
    [
        pytest.param({}, "none", id="nothing-set"),
        pytest.param({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"}, "azure_openai", id="azure-inferred"),
        pytest.param({"LLM_BASE_URL": "http://localhost:11434/v1"}, "openai_compatible", id="compatible-inferred"),
        pytest.param(
            {"LLM_PROVIDER": "none", "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"}, "none", id="explicit-off"
        ),
        pytest.param(
            {"LLM_PROVIDER": "OpenAI_Compatible", "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"},
            "openai_compatible",
            id="explicit-wins-case-insensitive",
        ),
    ],
)
def test_provider_is_chosen_from_the_settings(env: dict[str, str], provider: str) -> None:
    assert LlmSettings.from_env(env).provider == provider


def test_defaults() -> None:
    settings = LlmSettings.from_env({})

    assert not settings.configured
    assert (settings.max_retries, settings.max_retry_wait_seconds, settings.timeout_seconds) == (2, 10.0, 120.0)
    assert settings.max_output_tokens == 4096


def test_the_api_key_stays_out_of_repr() -> None:
    settings = LlmSettings.from_env({"LLM_API_KEY": "sk-very-secret"})

    assert settings.api_key == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)


def test_worker_defaults_to_the_planner_deployment() -> None:
    settings = LlmSettings.from_env({"LLM_PLANNER_DEPLOYMENT": "gpt-4.1"})

    assert settings.deployments() == {"planner": "gpt-4.1", "worker": "gpt-4.1"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"LLM_PROVIDER": "bedrock"}, "LLM_PROVIDER must be one of", id="unknown-provider"),
        pytest.param({"LLM_MAX_RETRIES": "-1"}, "LLM_MAX_RETRIES must be >= 0", id="negative-retries"),
        pytest.param({"LLM_TIMEOUT_SECONDS": "soon"}, "LLM_TIMEOUT_SECONDS must be a number", id="bad-timeout"),
    ],
)
def test_malformed_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LlmSettings.from_env(env)


# ---------------------------------------------------------------------------------------------------------- factory


def test_no_llm_configured_gives_none_and_a_message_saying_how_to_configure_one() -> None:
    assert build_chat_model(LlmSettings.from_env({})) is None
    for setting in (
        "AZURE_OPENAI_ENDPOINT",
        "LLM_PLANNER_DEPLOYMENT",
        "LLM_BASE_URL",
        "Cognitive Services OpenAI User",
    ):
        assert setting in LLM_NOT_CONFIGURED_MESSAGE


@pytest.mark.parametrize(
    ("env", "field"),
    [
        pytest.param(
            {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"}, "LLM_PLANNER_DEPLOYMENT", id="no-deployment"
        ),
        pytest.param(
            {"LLM_PROVIDER": "azure_openai", "LLM_PLANNER_DEPLOYMENT": "gpt-4.1"},
            "AZURE_OPENAI_ENDPOINT",
            id="azure-without-endpoint",
        ),
        pytest.param(
            {"LLM_PROVIDER": "openai_compatible", "LLM_PLANNER_DEPLOYMENT": "llama3"},
            "LLM_BASE_URL",
            id="compatible-without-url",
        ),
        pytest.param(
            {"LLM_BASE_URL": "http://localhost:8000/v1", "LLM_PLANNER_DEPLOYMENT": "m", "LLM_API_KEY_SECRET_NAME": "k"},
            "KEY_VAULT_URL",
            id="secret-name-without-vault",
        ),
    ],
)
def test_half_done_configuration_is_not_configured_naming_the_setting(env: dict[str, str], field: str) -> None:
    with pytest.raises(NotConfigured) as raised:
        build_chat_model(LlmSettings.from_env(env))

    assert raised.value.field == field
    assert field in raised.value.message


def test_a_compatible_endpoint_without_a_key_is_a_chat_model() -> None:
    settings = LlmSettings.from_env({"LLM_BASE_URL": "http://localhost:11434/v1", "LLM_PLANNER_DEPLOYMENT": "llama3"})

    model = build_chat_model(settings)

    assert isinstance(model, ChatCompletionsModel)
    assert isinstance(model, ChatModel)
    model.close()


def test_a_key_vault_key_is_read_per_request_not_at_build_time() -> None:
    secrets = DictSecrets({"llm-key": "sk-1"})
    settings = LlmSettings.from_env(
        {"LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_PLANNER_DEPLOYMENT": "m", "LLM_API_KEY_SECRET_NAME": "llm-key"}
    )

    model = build_chat_model(settings, secrets)

    assert isinstance(model, ChatCompletionsModel)
    assert secrets.reads == []
    model.close()

"""A generic OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp) with its key from the environment or Key Vault."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.keyvault.secrets import SecretClient

from shared.errors import NotConfigured
from shared.llm.chat import ChatMessage, LlmSettings, build_chat_model
from shared.llm.providers import ChatCompletionsModel
from shared.secrets import KeyVaultSecrets
from tests.fakes.keyvault_server import FakeKeyVault
from tests.fakes.openai_server import FakeChatCompletionsServer, Reply

ASK = [ChatMessage.user("Say hi.")]


@pytest.fixture
def local_server() -> Iterator[FakeChatCompletionsServer]:
    """What Ollama's OpenAI-compatible API looks like: ``/v1/chat/completions``, models by name."""
    with FakeChatCompletionsServer(
        bearer="sk-local-7f3b9c1e5d2a4b6c8e0f", deployments={"qwen2.5:7b", "llama3.2:3b"}, path_prefix="/v1"
    ) as server:
        yield server


def test_key_from_the_environment_and_model_names_per_role(local_server: FakeChatCompletionsServer) -> None:
    local_server.script(Reply.text("hi"), Reply.text("hello"))
    settings = LlmSettings.from_env(
        {
            "LLM_BASE_URL": local_server.base_url,
            "LLM_PLANNER_DEPLOYMENT": "qwen2.5:7b",
            "LLM_WORKER_DEPLOYMENT": "llama3.2:3b",
            "LLM_API_KEY": "sk-local-7f3b9c1e5d2a4b6c8e0f",
            "LLM_MAX_OUTPUT_TOKENS": "512",
        }
    )
    model = build_chat_model(settings)
    assert isinstance(model, ChatCompletionsModel)
    try:
        planner = model.complete(ASK, role="planner")
        worker = model.complete(ASK, role="worker")
    finally:
        model.close()

    assert (planner.content, worker.content) == ("hi", "hello")
    sent = [r.json() for r in local_server.chat_requests]
    assert [body["model"] for body in sent] == ["qwen2.5:7b", "llama3.2:3b"]
    assert all(body["max_tokens"] == 512 and "max_completion_tokens" not in body for body in sent)
    assert local_server.chat_requests[0].path == "/v1/chat/completions"


def test_key_from_key_vault_is_fetched_once_and_sent_as_the_bearer(
    vault: FakeKeyVault, secret_client: SecretClient
) -> None:
    with FakeChatCompletionsServer(
        bearer=vault.secrets["llm-api-key"], deployments={"qwen2.5:7b"}, path_prefix="/v1"
    ) as server:
        server.script(Reply.text("one"), Reply.text("two"))
        settings = LlmSettings.from_env(
            {
                "LLM_BASE_URL": server.base_url,
                "LLM_PLANNER_DEPLOYMENT": "qwen2.5:7b",
                "LLM_API_KEY_SECRET_NAME": "llm-api-key",
            }
        )
        model = build_chat_model(settings, KeyVaultSecrets(secret_client, ttl_seconds=300))
        assert isinstance(model, ChatCompletionsModel)
        try:
            replies = [model.complete(ASK).content, model.complete(ASK).content]
        finally:
            model.close()

    assert replies == ["one", "two"]
    assert vault.reads["llm-api-key"] == 1


def test_a_wrong_key_is_a_configuration_error(local_server: FakeChatCompletionsServer) -> None:
    settings = LlmSettings.from_env(
        {"LLM_BASE_URL": local_server.base_url, "LLM_PLANNER_DEPLOYMENT": "qwen2.5:7b", "LLM_API_KEY": "sk-wrong"}
    )
    model = build_chat_model(settings)
    assert isinstance(model, ChatCompletionsModel)

    with pytest.raises(NotConfigured, match="LLM_API_KEY"):
        model.complete(ASK)
    model.close()

    assert len(local_server.chat_requests) == 1

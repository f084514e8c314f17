"""Nothing secret reaches the logs, even with every SDK logger at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from azure.keyvault.secrets import SecretClient

from shared.llm.chat import ChatMessage, LlmSettings, build_chat_model
from shared.llm.providers import ChatCompletionsModel
from shared.secrets import KeyVaultSecrets
from tests.fakes.identity_server import FakeManagedIdentityEndpoint
from tests.fakes.keyvault_server import KEY_VAULT_RESOURCE, FakeKeyVault
from tests.fakes.openai_server import FakeChatCompletionsServer, Reply

SDK_LOGGERS = ("", "azure", "azure.core", "azure.identity", "msal", "openai", "httpx2", "httpcore", "urllib3", "shared")


def test_no_token_key_secret_or_prompt_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
    identity: FakeManagedIdentityEndpoint,
    azure_openai: FakeChatCompletionsServer,
    azure_env: Callable[..., dict[str, str]],
    vault: FakeKeyVault,
    secret_client: SecretClient,
) -> None:
    for name in SDK_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    prompt = "PROMPT-7c1d: the launch code is in the basement"
    reply = "REPLY-93ab: the basement is flooded"
    azure_openai.script(Reply.throttled(retry_after="0.01"), Reply.text(reply))

    model = build_chat_model(LlmSettings.from_env(azure_env()))
    assert isinstance(model, ChatCompletionsModel)
    result = model.complete([ChatMessage.user(prompt)], role="worker")
    model.close()
    secret = KeyVaultSecrets(secret_client, ttl_seconds=60).get("db-password")

    assert (result.content, secret) == (reply, "hunter2-correct-horse")
    never_logged = {
        "Azure OpenAI token": identity.token_for("https://cognitiveservices.azure.com"),
        "Key Vault token": identity.token_for(KEY_VAULT_RESOURCE),
        "IDENTITY_HEADER": identity.identity_header,
        "secret value": secret,
        "other secret value": vault.secrets["llm-api-key"],
        "prompt": prompt,
        "reply": reply,
    }
    assert len(caplog.records) > 20, "the SDKs should have logged at DEBUG"
    logged = caplog.text + "\n".join(repr(record.args) for record in caplog.records)
    leaks = [label for label, value in never_logged.items() if value in logged]
    assert leaks == []
    # Our own line for the call carries the usage, not the content.
    ours = [r.getMessage() for r in caplog.records if r.name == "shared.llm.providers"]
    assert any("role=worker deployment=weft-worker" in line and "prompt_tokens=11" in line for line in ours)

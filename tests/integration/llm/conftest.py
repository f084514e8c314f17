"""Loopback servers for the LLM and secrets layers: managed identity, Azure OpenAI / OpenAI-compatible, Key Vault.

Every server binds 127.0.0.1 on an ephemeral port and is stopped at teardown. The real ``openai``, ``azure-identity``
and ``azure-keyvault-secrets`` SDKs talk to them; only the environment variables the platform would set are patched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.keyvault.secrets import SecretClient

from shared.llm.chat import LlmSettings, build_chat_model
from shared.llm.providers import COGNITIVE_SERVICES_SCOPE, ChatCompletionsModel
from shared.secrets import SecretsSettings, build_secret_client
from tests.fakes.identity_server import FakeManagedIdentityEndpoint
from tests.fakes.keyvault_server import KEY_VAULT_RESOURCE, FakeKeyVault, LoopbackTls, make_loopback_tls
from tests.fakes.openai_server import FakeChatCompletionsServer

CLIENT_ID = "3c5e1d2a-7a6b-4f0e-9d8c-1b2a3c4d5e6f"
"""The user-assigned managed identity the fake platform gives the app."""
PLANNER = "weft-planner"
WORKER = "weft-worker"
COGNITIVE_RESOURCE = COGNITIVE_SERVICES_SCOPE.removesuffix("/.default")
LLM_KEY_SECRET = "llm-api-key"
LLM_KEY_VALUE = "sk-local-7f3b9c1e5d2a4b6c8e0f"

# Anything azure-identity or the openai SDK would pick up from a developer's shell.
_AMBIENT_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_LOG",
)


def _platform_identity(monkeypatch: pytest.MonkeyPatch, client_id: str | None) -> Iterator[FakeManagedIdentityEndpoint]:
    for name in _AMBIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeManagedIdentityEndpoint(client_id=client_id) as server:
        for name, value in server.environment.items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeManagedIdentityEndpoint]:
    """The App Service managed-identity endpoint with one user-assigned identity (``CLIENT_ID``)."""
    yield from _platform_identity(monkeypatch, CLIENT_ID)


@pytest.fixture
def system_identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeManagedIdentityEndpoint]:
    """The managed-identity endpoint for an app with only a system-assigned identity."""
    yield from _platform_identity(monkeypatch, None)


@pytest.fixture
def azure_openai(identity: FakeManagedIdentityEndpoint) -> Iterator[FakeChatCompletionsServer]:
    """Azure OpenAI v1 accepting only the managed identity's Cognitive Services token."""
    with FakeChatCompletionsServer(
        bearer=identity.token_for(COGNITIVE_RESOURCE), deployments={PLANNER, WORKER}
    ) as server:
        yield server


@pytest.fixture
def azure_env(azure_openai: FakeChatCompletionsServer) -> Callable[..., dict[str, str]]:
    """Builds app settings for Azure OpenAI at the fake, with the user-assigned identity; keywords override."""

    def build(**overrides: str) -> dict[str, str]:
        env = {
            "AZURE_OPENAI_ENDPOINT": azure_openai.endpoint,
            "LLM_PLANNER_DEPLOYMENT": PLANNER,
            "LLM_WORKER_DEPLOYMENT": WORKER,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "LLM_MAX_RETRY_WAIT_SECONDS": "1",
        }
        env.update(overrides)
        return env

    return build


@pytest.fixture
def azure_model(azure_env: Callable[..., dict[str, str]]) -> Iterator[ChatCompletionsModel]:
    """The model ``build_chat_model`` makes for Azure OpenAI (real credential, real SDK)."""
    model = build_chat_model(LlmSettings.from_env(azure_env()))
    assert isinstance(model, ChatCompletionsModel)
    yield model
    model.close()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    """A throwaway CA and a 127.0.0.1 server certificate."""
    directory: Path = tmp_path_factory.mktemp("tls")
    return make_loopback_tls(directory)


@pytest.fixture
def vault(identity: FakeManagedIdentityEndpoint, tls: LoopbackTls) -> Iterator[FakeKeyVault]:
    """Key Vault over TLS accepting only the managed identity's Key Vault token."""
    with FakeKeyVault(
        tls,
        bearer=identity.token_for(KEY_VAULT_RESOURCE),
        secrets={LLM_KEY_SECRET: LLM_KEY_VALUE, "db-password": "hunter2-correct-horse"},
        forbidden={"payroll-key"},
    ) as server:
        yield server


@pytest.fixture
def secret_client(vault: FakeKeyVault, tls: LoopbackTls) -> Iterator[SecretClient]:
    """A real ``SecretClient`` for the fake vault (trusting the test CA; the challenge names vault.azure.net, not
    127.0.0.1, so resource verification is off; no SDK retries so failures surface at once)."""
    settings = SecretsSettings.from_env({"KEY_VAULT_URL": vault.vault_url, "AZURE_CLIENT_ID": CLIENT_ID})
    client = build_secret_client(
        settings, connection_verify=str(tls.ca_file), verify_challenge_resource=False, retry_total=0
    )
    yield client
    client.close()

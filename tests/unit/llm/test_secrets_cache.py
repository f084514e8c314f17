"""Secrets: the start-up reference check, the TTL cache and the error mapping (no servers)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import KeyVaultSecret, SecretProperties

from shared.errors import NotConfigured, UpstreamUnavailable, WeftError
from shared.secrets import KeyVaultSecrets, SecretSource, SecretsSettings, check_unresolved_references

VAULT = "https://weft-kv.vault.azure.net"


class FakeSecretClient:
    """Answers ``get_secret`` from a dict, or raises a scripted error; counts calls."""

    vault_url = VAULT

    def __init__(self, values: dict[str, str], error: Exception | None = None) -> None:
        self.values = values
        self.error = error
        self.calls: list[str] = []

    def get_secret(self, name: str, version: str | None = None, **kwargs: Any) -> KeyVaultSecret:
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        return KeyVaultSecret(SecretProperties(vault_id=f"{VAULT}/secrets/{name}/v1"), self.values[name])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------- unresolved references


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="empty"),
        pytest.param({"DB_PASSWORD": "resolved-value", "TASKHUB_NAME": "weft"}, id="resolved"),
        pytest.param({"NOTE": "see @Microsoft.KeyVault(...) docs"}, id="mentioned-mid-value"),
    ],
)
def test_resolved_settings_pass(env: dict[str, str]) -> None:
    check_unresolved_references(env)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param(
            {"DB_PASSWORD": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/db/)"},
            ["DB_PASSWORD"],
            id="secret-uri",
        ),
        pytest.param(
            {"LLM_API_KEY": "  @microsoft.keyvault(VaultName=v;SecretName=llm)", "OK": "x"},
            ["LLM_API_KEY"],
            id="vault-name-form-lowercase-padded",
        ),
        pytest.param(
            {"B_KEY": "@Microsoft.KeyVault(VaultName=v;SecretName=b)", "A_KEY": "@Microsoft.KeyVault(x)"},
            ["A_KEY", "B_KEY"],
            id="several-sorted",
        ),
    ],
)
def test_an_unresolved_reference_fails_start_up_naming_the_setting(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(NotConfigured) as raised:
        check_unresolved_references(env)

    message = raised.value.message
    assert all(name in message for name in names)
    assert raised.value.field == names[0]
    assert "Key Vault Secrets User" in message
    assert "SecretUri" not in message and "SecretName" not in message


# ----------------------------------------------------------------------------------------------------------- caching


def test_cached_within_ttl_refetched_after() -> None:
    client, clock = FakeSecretClient({"k": "v1"}), Clock()
    secrets = KeyVaultSecrets(client, ttl_seconds=60, clock=clock)

    assert secrets.get("k") == "v1"
    clock.now = 59.9
    assert secrets.get("k") == "v1"
    client.values["k"] = "v2"
    clock.now = 60.0
    assert secrets.get("k") == "v2"
    assert client.calls == ["k", "k"]
    assert isinstance(secrets, SecretSource)


def test_zero_ttl_always_fetches() -> None:
    client = FakeSecretClient({"k": "v"})
    secrets = KeyVaultSecrets(client, ttl_seconds=0, clock=Clock())

    secrets.get("k")
    secrets.get("k")

    assert client.calls == ["k", "k"]


def test_invalidate_all() -> None:
    client = FakeSecretClient({"a": "1", "b": "2"})
    secrets = KeyVaultSecrets(client, ttl_seconds=60, clock=Clock())
    secrets.get("a")
    secrets.get("b")

    secrets.invalidate()
    secrets.get("a")

    assert client.calls == ["a", "b", "a"]


def test_concurrent_misses_fetch_once() -> None:
    client = FakeSecretClient({"k": "v"})
    secrets = KeyVaultSecrets(client, ttl_seconds=60)
    start = threading.Barrier(8)
    results: list[str] = []

    def read() -> None:
        start.wait()
        results.append(secrets.get("k"))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == ["v"] * 8
    assert client.calls == ["k"]


def test_values_stay_out_of_repr() -> None:
    secrets = KeyVaultSecrets(FakeSecretClient({"db": "hunter2"}), ttl_seconds=60)
    secrets.get("db")

    assert "hunter2" not in repr(secrets)
    assert "hunter2" not in repr(secrets._cache)


# ------------------------------------------------------------------------------------------------------------ errors


def http_error(cls: type[HttpResponseError], status: int) -> HttpResponseError:
    error = cls(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "expected", "fragment"),
    [
        pytest.param(ResourceNotFoundError("gone"), NotConfigured, "no secret named 'db'", id="404"),
        pytest.param(http_error(HttpResponseError, 403), NotConfigured, "Key Vault Secrets User", id="403"),
        pytest.param(http_error(ClientAuthenticationError, 401), NotConfigured, "refused", id="401"),
        pytest.param(http_error(HttpResponseError, 429), UpstreamUnavailable, "HTTP 429", id="429"),
        pytest.param(http_error(HttpResponseError, 503), UpstreamUnavailable, "HTTP 503", id="503"),
        pytest.param(http_error(HttpResponseError, 400), NotConfigured, "rejected", id="400"),
        pytest.param(ServiceRequestError("connection refused"), UpstreamUnavailable, "could not be reached", id="down"),
    ],
)
def test_vault_failures_map_to_leaves(error: Exception, expected: type[WeftError], fragment: str) -> None:
    secrets = KeyVaultSecrets(FakeSecretClient({}, error=error), ttl_seconds=60)

    with pytest.raises(expected) as raised:
        secrets.get("db")

    assert type(raised.value) is expected
    assert fragment in raised.value.message
    assert VAULT in raised.value.message or "db" in raised.value.message


def test_a_failed_fetch_is_not_cached() -> None:
    client = FakeSecretClient({"k": "v"}, error=ServiceRequestError("down"))
    secrets = KeyVaultSecrets(client, ttl_seconds=60, clock=Clock())
    with pytest.raises(UpstreamUnavailable):
        secrets.get("k")

    client.error = None

    assert secrets.get("k") == "v"


# ---------------------------------------------------------------------------------------------------------- settings


def test_settings_defaults_and_overrides() -> None:
    assert SecretsSettings.from_env({}) == SecretsSettings(key_vault_url="", cache_ttl_seconds=300.0, client_id="")
    assert SecretsSettings.from_env(
        {"KEY_VAULT_URL": f" {VAULT} ", "SECRETS_CACHE_TTL_SECONDS": "30", "AZURE_CLIENT_ID": "cid"}
    ) == SecretsSettings(key_vault_url=VAULT, cache_ttl_seconds=30.0, client_id="cid")


def test_negative_ttl_is_rejected() -> None:
    with pytest.raises(ValueError, match="SECRETS_CACHE_TTL_SECONDS"):
        SecretsSettings.from_env({"SECRETS_CACHE_TTL_SECONDS": "-1"})

"""Key Vault through the real SecretClient (TLS, challenge handshake, managed-identity token) against a loopback."""

from __future__ import annotations

import pytest
from azure.keyvault.secrets import SecretClient

from shared.errors import NotConfigured, is_retryable
from shared.secrets import KeyVaultSecrets, SecretsSettings, build_secrets
from tests.fakes.identity_server import FakeManagedIdentityEndpoint
from tests.fakes.keyvault_server import KEY_VAULT_RESOURCE, FakeKeyVault, LoopbackTls


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_secret_is_fetched_once_and_cached_within_the_ttl(
    secret_client: SecretClient, vault: FakeKeyVault, identity: FakeManagedIdentityEndpoint
) -> None:
    clock = FakeClock()
    secrets = KeyVaultSecrets(secret_client, ttl_seconds=300, clock=clock)

    first = secrets.get("db-password")
    clock.now += 299
    second = secrets.get("db-password")

    assert first == second == "hunter2-correct-horse"
    assert vault.reads["db-password"] == 1
    # The challenge handshake ran once: an unauthenticated probe, then the managed identity's Key Vault token.
    assert vault.challenges == 1
    assert vault.requests[-1].headers["authorization"] == f"Bearer {identity.token_for(KEY_VAULT_RESOURCE)}"
    assert identity.issued(KEY_VAULT_RESOURCE) == 1
    assert identity.requests[0].query["client_id"] == identity.client_id


def test_a_secret_is_read_again_after_the_ttl_and_sees_rotation(
    secret_client: SecretClient, vault: FakeKeyVault
) -> None:
    clock = FakeClock()
    secrets = KeyVaultSecrets(secret_client, ttl_seconds=300, clock=clock)
    assert secrets.get("db-password") == "hunter2-correct-horse"

    vault.secrets["db-password"] = "rotated-battery-staple"
    clock.now += 301

    assert secrets.get("db-password") == "rotated-battery-staple"
    assert vault.reads["db-password"] == 2


def test_invalidate_forces_a_fresh_read(secret_client: SecretClient, vault: FakeKeyVault) -> None:
    secrets = KeyVaultSecrets(secret_client, ttl_seconds=300, clock=FakeClock())
    secrets.get("db-password")

    secrets.invalidate("db-password")
    secrets.get("db-password")

    assert vault.reads["db-password"] == 2


def test_a_missing_secret_is_a_configuration_error_naming_it(secret_client: SecretClient) -> None:
    secrets = KeyVaultSecrets(secret_client, ttl_seconds=300)

    with pytest.raises(NotConfigured, match="no secret named 'no-such-secret'") as raised:
        secrets.get("no-such-secret")

    assert raised.value.field == "no-such-secret"
    assert not is_retryable(raised.value)


def test_a_forbidden_secret_says_which_role_is_missing(secret_client: SecretClient) -> None:
    secrets = KeyVaultSecrets(secret_client, ttl_seconds=300)

    with pytest.raises(NotConfigured, match="Key Vault Secrets User"):
        secrets.get("payroll-key")


def test_build_secrets_reads_through_the_configured_vault(
    vault: FakeKeyVault, tls: LoopbackTls, identity: FakeManagedIdentityEndpoint
) -> None:
    settings = SecretsSettings.from_env(
        {
            "KEY_VAULT_URL": vault.vault_url,
            "AZURE_CLIENT_ID": identity.client_id or "",
            "SECRETS_CACHE_TTL_SECONDS": "60",
        }
    )
    secrets = build_secrets(settings, connection_verify=str(tls.ca_file), verify_challenge_resource=False)

    assert secrets is not None
    assert [secrets.get("db-password") for _ in range(3)] == ["hunter2-correct-horse"] * 3
    assert vault.reads["db-password"] == 1
    assert "hunter2" not in repr(secrets)


def test_build_secrets_without_a_vault_is_none() -> None:
    assert build_secrets(SecretsSettings.from_env({})) is None

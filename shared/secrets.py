"""Secrets: Key Vault through an Azure credential, cached with a TTL; start-up refusal of unresolved references.

- :func:`build_credential` — ``ManagedIdentityCredential(client_id=AZURE_CLIENT_ID)`` when a user-assigned identity
  is named, else ``DefaultAzureCredential`` (managed identity in Azure, ``az login`` and friends locally). Shared by
  the Key Vault client and the Azure OpenAI token provider.
- :class:`KeyVaultSecrets` — ``get(name)`` reads a secret's current version through a ``SecretClient`` and keeps it
  for ``SECRETS_CACHE_TTL_SECONDS``, so rotated secrets are picked up without a restart.
- :func:`check_unresolved_references` — App Service leaves the literal ``@Microsoft.KeyVault(...)`` text in an app
  setting it could not resolve; starting with it would send that text where a secret belongs, so start-up fails and
  names the setting.

Secret values are never logged, never put in exception messages, and never part of a ``repr``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import NotConfigured, UpstreamUnavailable, WeftError
from shared.settings import env_float, env_str

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.secrets import KeyVaultSecret, SecretClient

__all__ = [
    "KEY_VAULT_REFERENCE_PREFIX",
    "KeyVaultSecrets",
    "SecretReader",
    "SecretSource",
    "SecretsSettings",
    "build_credential",
    "build_secret_client",
    "build_secrets",
    "check_unresolved_references",
    "translate_credential_error",
]

_log = logging.getLogger(__name__)

KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("
"""How an App Service / Functions Key Vault reference starts (matched case-insensitively)."""

_MAX_DETAIL = 300


@dataclass(frozen=True)
class SecretsSettings:
    """Secrets settings; build with :meth:`from_env`."""

    key_vault_url: str = ""
    """``https://<vault>.vault.azure.net`` (KEY_VAULT_URL); empty means no vault."""
    cache_ttl_seconds: float = 300.0
    """How long a fetched secret is reused before it is read again (SECRETS_CACHE_TTL_SECONDS)."""
    client_id: str = ""
    """User-assigned managed identity client id (AZURE_CLIENT_ID); empty uses DefaultAzureCredential."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecretsSettings:
        """Read the settings from an environment mapping (raises ValueError on malformed values)."""
        return cls(
            key_vault_url=env_str(env, "KEY_VAULT_URL", "").strip(),
            cache_ttl_seconds=env_float(env, "SECRETS_CACHE_TTL_SECONDS", cls.cache_ttl_seconds, minimum=0),
            client_id=env_str(env, "AZURE_CLIENT_ID", "").strip(),
        )


@runtime_checkable
class SecretSource(Protocol):
    """Where named secrets come from."""

    def get(self, name: str) -> str:
        """The current value of secret ``name``; raises ``NotConfigured`` or ``UpstreamUnavailable``."""
        ...


class SecretReader(Protocol):
    """The part of ``azure.keyvault.secrets.SecretClient`` that :class:`KeyVaultSecrets` uses."""

    @property
    def vault_url(self) -> str: ...

    def get_secret(self, name: str, version: str | None = None, **kwargs: Any) -> KeyVaultSecret: ...


@dataclass(frozen=True)
class _Cached:
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"_Cached(value=<redacted>, expires_at={self.expires_at})"


class KeyVaultSecrets:
    """A :class:`SecretSource` over a Key Vault ``SecretClient``, caching each secret for ``ttl_seconds``.

    Thread-safe: concurrent misses for one secret cause one fetch, and a slow fetch of one secret does not hold up
    reads of others. ``clock`` is injectable for tests.
    """

    def __init__(
        self, client: SecretReader, *, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def client(self) -> Any:
        """The underlying ``SecretClient`` (for readiness probes)."""
        return self._client

    def get(self, name: str) -> str:
        """The secret's current value, from the cache while it is fresh."""
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            cached = self._cache.get(name)
            if cached is not None and self._clock() < cached.expires_at:
                return cached.value
            value = self._fetch(name)
            self._cache[name] = _Cached(value, self._clock() + self._ttl)
            return value

    def invalidate(self, name: str | None = None) -> None:
        """Forget one cached secret (or all), e.g. after the secret was rejected as stale."""
        with self._locks_guard:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)

    def _fetch(self, name: str) -> str:
        vault = self._client.vault_url
        try:
            secret = self._client.get_secret(name)
        except ResourceNotFoundError:
            raise NotConfigured(f"Key Vault {vault} has no secret named {name!r}.", field=name) from None
        except ClientAuthenticationError as exc:
            raise translate_credential_error(exc, purpose=f"reading secret {name!r} from {vault}") from None
        except HttpResponseError as exc:
            raise _vault_error(exc, vault=vault, name=name) from None
        except (ServiceRequestError, ServiceResponseError):
            raise UpstreamUnavailable(f"Key Vault {vault} could not be reached.") from None
        if secret.value is None:
            raise NotConfigured(f"Key Vault secret {name!r} in {vault} has no value.", field=name)
        _log.debug("fetched Key Vault secret %s (cached for %s s)", name, self._ttl)
        return secret.value

    def __repr__(self) -> str:
        return f"KeyVaultSecrets(vault_url={self._client.vault_url!r}, cached={sorted(self._cache)})"


def _vault_error(exc: HttpResponseError, *, vault: str, name: str) -> WeftError:
    status = exc.status_code or 0
    code = exc.error.code if exc.error is not None else None
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    if status == 403:
        return NotConfigured(
            f"The app's identity may not read secret {name!r} from {vault} ({detail}). Grant it the "
            "'Key Vault Secrets User' role (or a get-secret access policy) on the vault.",
            field=name,
        )
    if status == 429 or status >= 500:
        return UpstreamUnavailable(f"Key Vault {vault} failed reading secret {name!r} ({detail}).")
    return NotConfigured(f"Key Vault {vault} rejected the request for secret {name!r} ({detail}).", field=name)


def translate_credential_error(exc: ClientAuthenticationError, *, purpose: str) -> WeftError:
    """Map an authentication failure (credential or service 401) to ``NotConfigured`` or ``UpstreamUnavailable``."""
    from azure.identity import CredentialUnavailableError

    if isinstance(exc, CredentialUnavailableError):
        return NotConfigured(
            f"No Azure credential is available for {purpose}: {str(exc.message)[:_MAX_DETAIL]} "
            "In Azure enable the app's managed identity (set AZURE_CLIENT_ID for a user-assigned one); "
            "locally run `az login`."
        )
    if exc.status_code in (401, 403):
        return NotConfigured(f"Authentication was refused when {purpose} (HTTP {exc.status_code}).")
    return UpstreamUnavailable(f"Could not get an access token for {purpose}.")


def build_credential(client_id: str = "") -> TokenCredential:
    """``ManagedIdentityCredential(client_id=...)`` for a user-assigned identity, else ``DefaultAzureCredential``."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


def build_secret_client(
    settings: SecretsSettings, *, credential: TokenCredential | None = None, **client_options: Any
) -> SecretClient:
    """A ``SecretClient`` for ``settings.key_vault_url``; ``client_options`` go to the client (e.g. ``retry_total``).

    Raises ``NotConfigured`` when no vault URL is set.
    """
    from azure.keyvault.secrets import SecretClient

    if not settings.key_vault_url:
        raise NotConfigured("KEY_VAULT_URL is not set.", field="KEY_VAULT_URL")
    if credential is None:
        credential = build_credential(settings.client_id)
    return SecretClient(settings.key_vault_url, credential, **client_options)


def build_secrets(
    settings: SecretsSettings, *, credential: TokenCredential | None = None, **client_options: Any
) -> KeyVaultSecrets | None:
    """The cached Key Vault secret source, or None when ``KEY_VAULT_URL`` is not set."""
    if not settings.key_vault_url:
        return None
    client = build_secret_client(settings, credential=credential, **client_options)
    return KeyVaultSecrets(client, ttl_seconds=settings.cache_ttl_seconds)


def check_unresolved_references(env: Mapping[str, str]) -> None:
    """Fail start-up when an app setting still holds an unresolved ``@Microsoft.KeyVault(`` reference.

    Raises ``NotConfigured`` naming every such setting (``field`` is the first); the values are not repeated.
    """
    prefix = KEY_VAULT_REFERENCE_PREFIX.lower()
    unresolved = sorted(
        name for name, value in env.items() if isinstance(value, str) and value.lstrip().lower().startswith(prefix)
    )
    if not unresolved:
        return
    names = ", ".join(unresolved)
    plural = "s" if len(unresolved) > 1 else ""
    raise NotConfigured(
        f"App setting{plural} {names} still hold{'' if plural else 's'} an unresolved Key Vault reference "
        f"({KEY_VAULT_REFERENCE_PREFIX}...). Check that the app's managed identity has the 'Key Vault Secrets User' "
        "role on the vault, that the secret exists and the reference is well-formed; the portal shows each "
        "reference's status under Settings > Environment variables.",
        field=unresolved[0],
    )

"""Liveness (``GET /api/health``) and readiness (``GET /api/ready``).

- :func:`liveness` is cheap: no dependency is called, so a slow dependency never makes the host think the worker
  is dead.
- :func:`run_checks` runs :class:`ReadinessCheck` objects concurrently, each in its own daemon thread, and waits at
  most ``timeout_s`` (``WEFT_READY_TIMEOUT_S``) for all of them: a hung dependency is reported as failed, it does not
  hang the endpoint. A check that is still running from an earlier call is joined, not started again, so a dependency
  that hangs for minutes costs one thread per check name, not one per request.

The app is ready when no check failed; ``skipped`` (something optional not configured, such as the LLM or Key
Vault) does not make it unready. A check that raises fails with the exception's type (and HTTP status and error code,
when it has them) as its detail, and its message goes to the log: the body is anonymous, so no detail names a file
system path, host name, connection string or resource (a secret, container or model deployment); what an operator
needs beyond it is logged.

Concrete checks: :class:`BlobContainerCheck` / :class:`LocalFolderCheck` (storage), :class:`KeyVaultCheck`,
:class:`LlmConfigCheck`, :class:`CatalogCheck`, :class:`SearchIndexCheck`, :class:`SessionPoolCheck` (only with the
session-pool sandbox backend). Clients are passed in, never built here.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from shared.llm.chat import LLM_NOT_CONFIGURED_MESSAGE

if TYPE_CHECKING:
    from shared.llm.chat import LlmSettings

__all__ = [
    "BlobContainerCheck",
    "CatalogCheck",
    "CheckResult",
    "CheckStatus",
    "KeyVaultCheck",
    "LlmConfigCheck",
    "LocalFolderCheck",
    "ReadinessCheck",
    "SearchIndexCheck",
    "SessionPoolCheck",
    "liveness",
    "readiness_body",
    "run_checks",
]

_log = logging.getLogger(__name__)

_MAX_DETAIL = 300
_PROCESS_STARTED = time.monotonic()


class CheckStatus(StrEnum):
    """How a readiness check went."""

    OK = "ok"
    FAIL = "fail"
    SKIPPED = "skipped"
    """Not configured, and optional: does not make the app unready."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one readiness check."""

    status: CheckStatus
    """ok, fail or skipped."""
    detail: str = ""
    """What is wrong or fine, for anyone (the body is anonymous): never a secret, path, host, connection string or
    resource name (the check logs those)."""
    latency_ms: float = 0.0
    """How long the check took (filled in by :func:`run_checks`)."""
    name: str = ""
    """The check's name (filled in by :func:`run_checks`)."""

    @classmethod
    def ok(cls, detail: str = "") -> CheckResult:
        """A passing result."""
        return cls(CheckStatus.OK, detail)

    @classmethod
    def fail(cls, detail: str) -> CheckResult:
        """A failing result; the app is not ready."""
        return cls(CheckStatus.FAIL, detail)

    @classmethod
    def skipped(cls, detail: str) -> CheckResult:
        """Not configured (optional); says how to configure it."""
        return cls(CheckStatus.SKIPPED, detail)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the ``/api/ready`` body."""
        return {"name": self.name, "status": self.status.value, "latency_ms": round(self.latency_ms, 1),
                "detail": self.detail}


class ReadinessCheck(Protocol):
    """One dependency probe. ``check`` may block or raise; :func:`run_checks` bounds and catches it."""

    @property
    def name(self) -> str:
        """Unique, stable name (``storage``, ``key_vault``, ``llm``, ``catalog``, ``search_index``)."""
        ...

    def check(self) -> CheckResult:
        """Probe the dependency once."""
        ...


def _describe(exc: BaseException) -> str:
    """The exception's type, and its HTTP status and error code when it has them (Azure SDK errors): not its
    message, which names accounts, URLs and paths."""
    found = (getattr(exc, "status_code", None), getattr(exc, "error_code", None))
    parts = [str(getattr(value, "value", value)) for value in found if isinstance(value, int | str) and value]
    text = type(exc).__name__ + (f" ({', '.join(parts)})" if parts else "") + "; the log has the error"
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


# ------------------------------------------------------------------------------------------------ the runner


class _Probe:
    """One running ``check()`` in a daemon thread; joined by every caller that asks for the same name meanwhile."""

    def __init__(self, check: ReadinessCheck) -> None:
        self.check = check
        self.name = check.name
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: CheckResult | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"weft-ready-{self.name}", daemon=True).start()

    def _run(self) -> None:
        result: object = CheckResult.fail("the check ended without a result")
        try:
            result = self.check.check()
        except Exception as exc:
            _log.warning("readiness check %s raised", self.name, exc_info=True)
            result = CheckResult.fail(_describe(exc))
        finally:
            if not isinstance(result, CheckResult):
                result = CheckResult.fail(f"the check returned {type(result).__name__}, not a CheckResult")
            self.result = replace(result, name=self.name, latency_ms=(time.monotonic() - self.started) * 1000.0)
            with _inflight_lock:
                if _inflight.get(self.name) is self:
                    del _inflight[self.name]
            self.done.set()


_inflight_lock = threading.Lock()
_inflight: dict[str, _Probe] = {}


def run_checks(checks: Sequence[ReadinessCheck], timeout_s: float) -> tuple[bool, list[CheckResult]]:
    """Run ``checks`` concurrently; return ``(ready, results)`` within about ``timeout_s`` seconds.

    ``results`` are in the order of ``checks``. A check that has not answered by the deadline fails with
    "no answer within …" (its thread keeps running and is joined by later calls). ``ready`` is false if any check
    failed. Blocking: from an ``async`` trigger call it through ``asyncio.to_thread``.
    """
    names = [check.name for check in checks]
    if len(set(names)) != len(names):
        raise ValueError(f"readiness check names must be unique, got {names}")
    deadline = time.monotonic() + timeout_s
    probes: list[_Probe] = []
    for check in checks:
        with _inflight_lock:
            probe = _inflight.get(check.name)
            fresh = probe is None
            if probe is None:
                probe = _inflight[check.name] = _Probe(check)
        if fresh:
            probe.start()
        probes.append(probe)
    results = []
    for probe in probes:
        if probe.done.wait(max(0.0, deadline - time.monotonic())) and probe.result is not None:
            results.append(probe.result)
        else:
            elapsed_ms = (time.monotonic() - probe.started) * 1000.0
            _log.warning("readiness check %s gave no answer within %.3g s", probe.name, timeout_s)
            results.append(CheckResult(CheckStatus.FAIL, f"no answer within {timeout_s:g} s", elapsed_ms, probe.name))
    ready = all(result.status is not CheckStatus.FAIL for result in results)
    return ready, results


def readiness_body(ready: bool, results: Sequence[CheckResult]) -> dict[str, Any]:
    """The ``/api/ready`` JSON body (answer 200 when ``ready``, else 503)."""
    return {"status": "ready" if ready else "not_ready", "checks": [result.to_dict() for result in results]}


def liveness(version: str = "unknown", *, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """The ``/api/health`` body: ``{"status": "ok", "version", "uptime_s"}``; calls no dependency.

    Uptime counts from the first import of this module in the worker process.
    """
    return {"status": "ok", "version": version, "uptime_s": round(max(0.0, clock() - _PROCESS_STARTED), 3)}


# ------------------------------------------------------------------------------------------------ the checks


class BlobContainerCheck:
    """Storage reachable: reads the blob container's properties (proves network, DNS and the identity's access).

    ``container_client`` is an ``azure.storage.blob.ContainerClient``. A container that does not exist yet passes
    (the account answered; the payload store creates it on first write).
    """

    def __init__(self, container_client: Any, *, name: str = "storage") -> None:
        self._container = container_client
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        from azure.core.exceptions import ResourceNotFoundError

        container = getattr(self._container, "container_name", "?")
        try:
            self._container.get_container_properties()
        except ResourceNotFoundError:
            _log.info("readiness check %s: container %s does not exist yet", self._name, container)
            return CheckResult.ok("the payload container does not exist yet (created on first write)")
        _log.debug("readiness check %s: container %s reachable", self._name, container)
        return CheckResult.ok("the payload container is reachable")


class LocalFolderCheck:
    """Storage writable: creates ``folder`` if needed and writes and deletes a temporary file in it."""

    def __init__(self, folder: str | Path, *, name: str = "storage") -> None:
        self._folder = Path(folder)
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self._folder, prefix=".weft-ready-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            _log.warning("readiness check %s: folder %s is not writable", self._name, self._folder, exc_info=True)
            return CheckResult.fail(f"the payload folder is not writable: {_describe(exc)}")
        return CheckResult.ok("the payload folder is writable")


class KeyVaultCheck:
    """Key Vault reachable, with a ``SecretClient`` (``None``: skipped, no vault configured).

    With ``secret_name`` the probe reads that secret (its value is discarded); otherwise it lists one page of
    secret properties (no values; needs the list permission, which *Key Vault Secrets User* has).
    """

    def __init__(self, secret_client: Any | None, *, secret_name: str | None = None, name: str = "key_vault") -> None:
        self._client = secret_client
        self._secret_name = secret_name
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        if self._client is None:
            return CheckResult.skipped("KEY_VAULT_URL is not set; no secrets are read from Key Vault")
        if self._secret_name:
            from azure.core.exceptions import ResourceNotFoundError

            try:
                self._client.get_secret(self._secret_name)
            except ResourceNotFoundError:
                _log.warning("readiness check %s: secret %s does not exist in the vault", self._name, self._secret_name)
                return CheckResult.fail("the configured secret does not exist in the vault")
            _log.debug("readiness check %s: secret %s readable", self._name, self._secret_name)
            return CheckResult.ok("the configured secret is readable")
        next(iter(self._client.list_properties_of_secrets(max_page_size=1).by_page()), None)
        return CheckResult.ok("vault reachable")


class LlmConfigCheck:
    """LLM configuration present (no call is made): ok, skipped when no LLM is configured, fail when half-set."""

    def __init__(self, settings: LlmSettings, *, name: str = "llm") -> None:
        self._settings = settings
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        s = self._settings
        if not s.configured:
            return CheckResult.skipped(LLM_NOT_CONFIGURED_MESSAGE)
        missing = [
            setting for setting, value in (
                ("AZURE_OPENAI_ENDPOINT", s.azure_openai_endpoint if s.provider == "azure_openai" else "set"),
                ("LLM_BASE_URL", s.base_url if s.provider == "openai_compatible" else "set"),
                ("LLM_PLANNER_DEPLOYMENT", s.planner_deployment),
            ) if not value
        ]
        if missing:
            return CheckResult.fail(f"LLM provider {s.provider} is selected but {', '.join(missing)} is not set")
        deployments = s.deployments()
        _log.debug("readiness check %s: %s planner=%s, worker=%s", self._name, s.provider, deployments["planner"],
                   deployments["worker"])
        return CheckResult.ok(f"{s.provider}: deployments configured")


class CatalogCheck:
    """Catalog loaded: ``count()`` (the number of tools) is above zero."""

    def __init__(self, count: Callable[[], int], *, name: str = "catalog") -> None:
        self._count = count
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        count = self._count()
        if count > 0:
            return CheckResult.ok(f"{count} tools")
        return CheckResult.fail("the catalog has no tools (set WEFT_CATALOG_FILES or WEFT_DEMO_TOOLS=true)")


class SearchIndexCheck:
    """Tool-search index loaded: ``loaded()`` returns true."""

    def __init__(self, loaded: Callable[[], bool], *, name: str = "search_index") -> None:
        self._loaded = loaded
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        if self._loaded():
            return CheckResult.ok("search index loaded")
        return CheckResult.fail("the tool search index is not loaded")


class SessionPoolCheck:
    """Session pool usable: the app's identity gets a token for it (``token_lifetime()``, the seconds the cached or
    new token stays valid; no session is started, so nothing is billed). Fails when no token can be had: code-mode
    runs would all fail with ``upstream_unavailable``."""

    def __init__(self, endpoint: str, token_lifetime: Callable[[], float], *, name: str = "session_pool") -> None:
        self._endpoint = endpoint
        self._token_lifetime = token_lifetime
        self._name = name

    @property
    def name(self) -> str:
        """See :class:`ReadinessCheck`."""
        return self._name

    def check(self) -> CheckResult:
        """See :class:`ReadinessCheck`."""
        host = urlsplit(self._endpoint).hostname or "?"
        try:
            lifetime = self._token_lifetime()
        except Exception as exc:
            _log.warning("readiness check %s: no token for the session pool at %s", self._name, host, exc_info=True)
            return CheckResult.fail(f"no token for the session pool: {_describe(exc)}")
        if lifetime <= 0:
            _log.warning("readiness check %s: the token for the session pool at %s has expired", self._name, host)
            return CheckResult.fail("the token for the session pool has expired")
        return CheckResult.ok(f"token for the session pool (valid {lifetime:.0f} s)")

"""The composition root: settings, catalog, tool executor and payload store, built once per worker process.

Nothing is built at import time; :func:`get_runtime` builds on first use and caches. Tests build their own
:class:`Runtime` with :func:`build_runtime` and explicit settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError

from shared.catalog.breaker import BlobBreakerStore, BreakerStore, CircuitBreaker, SqliteBreakerStore
from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor, ToolSettings
from shared.demo_tools import register_demo_tools
from shared.health import (
    BlobContainerCheck,
    CatalogCheck,
    KeyVaultCheck,
    LlmConfigCheck,
    LocalFolderCheck,
    ReadinessCheck,
    SearchIndexCheck,
    SessionPoolCheck,
)
from shared.identity.audit import AuditSettings, build_audit_log
from shared.identity.authenticate import Authenticator
from shared.identity.quotas import QuotaSettings, build_quotas, table_endpoint
from shared.identity.settings import IdentitySettings
from shared.identity.trust import Trust, TrustSettings
from shared.llm.chat import ChatModel, LlmSettings, build_chat_model
from shared.models import ModelLimits, ToolCall
from shared.payloads import BlobPayloadStore, PayloadSettings, PayloadStore, build_payload_store, container_client
from shared.runs.run_index import CachedRunIndex, RunIndex, SqliteRunIndex, TableRunIndex
from shared.sandbox import Capacity, CodeExecutor, DynamicSessionsExecutor, Limits, SandboxBackend, build_code_executor
from shared.search.background import run_in_background
from shared.search.embedding import shared_encoder
from shared.search.embedding.cache import BlobContainerStore, EmbeddingCache
from shared.search.retrieval import HybridRetriever, RetrievalSettings
from shared.secrets import (
    KeyVaultSecrets,
    SecretsSettings,
    build_credential,
    build_secrets,
    check_unresolved_references,
)
from shared.settings import env_bool, env_float, env_int, env_str
from shared.sources.cache import DiscoveryCache
from shared.sources.config import SourceSettings
from shared.sources.loader import SourceReport, build_discovery_cache, load_sources
from shared.sources.registry import BlobRegistryStore, FileRegistryStore, RegistryStore, SourceRegistry
from shared.sources.registry_sync import REMOVED, RegistrySync
from shared.telemetry import Telemetry, TelemetrySettings, configure_telemetry, get_telemetry
from shared.telemetry.events import custom_events

__all__ = ["Runtime", "RuntimeSettings", "build_runtime", "get_runtime", "reset_runtime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings of the app as a whole; subsystems' own settings objects are composed here."""

    demo_tools: bool = True
    """Register the built-in demo toolset (WEFT_DEMO_TOOLS)."""
    catalog_files: tuple[str, ...] = ()
    """JSON/YAML catalog files to load, separated by ``;`` (WEFT_CATALOG_FILES)."""
    state_dir: str = ".weft-cache"
    """Folder for local state (WEFT_STATE_DIR): the demo tools' notes, and the breaker state, discovery cache and
    source registry when Blob Storage is not configured."""
    max_fan_out: int = 200
    """Most tool calls one orchestration has in flight as its own activities; a wider batch of ready calls goes out as
    sub-orchestrations of at most that many (WEFT_MAX_FAN_OUT)."""
    plan_checkpoint_calls: int = 25
    """Tool calls one generation of a plan run makes before it continues as new with its state, which keeps every
    replay short so a long chain costs the same per step as a short one (WEFT_PLAN_CHECKPOINT_CALLS)."""
    plan_window_steps: int = 40
    """A plan of more steps carries only a window of about this many into each continued generation (the whole plan
    waits in payload storage), so a generation's input does not grow with the plan; 0: whole plans
    (WEFT_PLAN_WINDOW_STEPS)."""
    tools: ToolSettings = field(default_factory=ToolSettings)
    payloads: PayloadSettings = field(default_factory=PayloadSettings)
    limits: ModelLimits = field(default_factory=ModelLimits)
    sandbox: Limits = field(default_factory=Limits)
    sandbox_capacity: Capacity = field(default_factory=Capacity)
    sandbox_backend: SandboxBackend = field(default_factory=SandboxBackend)
    task_tools_k: int = 8
    """Tools the task planner is shown from tool search (WEFT_TASK_TOOLS_K)."""
    task_max_turns: int = 4
    """Planner turns per task run (WEFT_TASK_MAX_TURNS)."""
    approval_timeout_s: int = 3600
    """How long a run waits for a human to approve a tool marked ``requires_approval`` (WEFT_APPROVAL_TIMEOUT_S)."""
    llm_retry_interval_ms: int = 2000
    """Durable retry interval of LLM activities after throttling or an outage (WEFT_LLM_RETRY_INTERVAL_MS)."""
    llm_retry_attempts: int = 5
    """Attempts per LLM activity (WEFT_LLM_RETRY_ATTEMPTS)."""
    llm: LlmSettings = field(default_factory=LlmSettings)
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    search: RetrievalSettings = field(default_factory=RetrievalSettings)
    sources: SourceSettings = field(default_factory=SourceSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    run_wait_max_s: float = 60.0
    """Longest ``GET /api/runs/{id}?wait=`` holds a request open (WEFT_RUN_WAIT_MAX_S)."""
    run_wait_poll_s: tuple[float, float] = (0.05, 1.0)
    """While a ``?wait=`` request is open, the run's status is read first after this many seconds, then 1.5 times
    later each time, up to the second value (WEFT_RUN_WAIT_POLL_FIRST_MS, WEFT_RUN_WAIT_POLL_MAX_MS)."""
    runs_table: str = "weftruns"
    """Table of the run index (owners, per-caller listing) when storage is configured (WEFT_RUNS_TABLE); else
    ``<WEFT_STATE_DIR>/runs.sqlite``."""
    run_index_cache_entries: int = 10_000
    """Run-index entries an instance keeps in memory (WEFT_RUN_INDEX_CACHE_ENTRIES; 0: read storage every time)."""
    run_index_cache_s: float = 60.0
    """How long an instance trusts a cached run-index entry (WEFT_RUN_INDEX_CACHE_S); a GET or cancel of a run
    Durable no longer knows reads the index again (:func:`~shared.runs.run_index.purged`)."""

    @property
    def inline_result_bytes(self) -> int:
        """The largest tool result (UTF-8 JSON bytes) a step keeps inline, in Durable history: the smaller of
        WEFT_TOOL_MAX_RESULT_BYTES and WEFT_PAYLOAD_INLINE_MAX_BYTES. A larger result is stored whole in the payload
        store and the step keeps its reference and a WEFT_PAYLOAD_PREVIEW_BYTES preview."""
        return min(self.tools.max_result_bytes, self.payloads.inline_max_bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if env is None else env
        files = tuple(p for p in env_str(env, "WEFT_CATALOG_FILES", "").split(";") if p.strip())
        return cls(
            demo_tools=env_bool(env, "WEFT_DEMO_TOOLS", cls.demo_tools),
            catalog_files=files,
            state_dir=env_str(env, "WEFT_STATE_DIR", cls.state_dir),
            max_fan_out=env_int(env, "WEFT_MAX_FAN_OUT", cls.max_fan_out, minimum=1),
            plan_checkpoint_calls=env_int(env, "WEFT_PLAN_CHECKPOINT_CALLS", cls.plan_checkpoint_calls, minimum=1),
            plan_window_steps=env_int(env, "WEFT_PLAN_WINDOW_STEPS", cls.plan_window_steps, minimum=0),
            tools=ToolSettings.from_env(env),
            payloads=PayloadSettings.from_env(env),
            limits=ModelLimits.from_env(env),
            sandbox=Limits.from_env(env),
            sandbox_capacity=Capacity.from_env(env),
            sandbox_backend=SandboxBackend.from_env(env),
            task_tools_k=env_int(env, "WEFT_TASK_TOOLS_K", cls.task_tools_k, minimum=1),
            task_max_turns=env_int(env, "WEFT_TASK_MAX_TURNS", cls.task_max_turns, minimum=1),
            approval_timeout_s=env_int(env, "WEFT_APPROVAL_TIMEOUT_S", cls.approval_timeout_s, minimum=1),
            llm_retry_interval_ms=env_int(env, "WEFT_LLM_RETRY_INTERVAL_MS", cls.llm_retry_interval_ms, minimum=1),
            llm_retry_attempts=env_int(env, "WEFT_LLM_RETRY_ATTEMPTS", cls.llm_retry_attempts, minimum=1),
            llm=LlmSettings.from_env(env),
            secrets=SecretsSettings.from_env(env),
            search=RetrievalSettings.from_env(env),
            sources=SourceSettings.from_env(env),
            identity=IdentitySettings.from_env(env),
            quotas=QuotaSettings.from_env(env),
            audit=AuditSettings.from_env(env),
            trust=TrustSettings(approval_separation=env_bool(env, "WEFT_APPROVAL_SEPARATION", True)),
            runs_table=env_str(env, "WEFT_RUNS_TABLE", cls.runs_table),
            run_index_cache_entries=env_int(env, "WEFT_RUN_INDEX_CACHE_ENTRIES", cls.run_index_cache_entries,
                                            minimum=0),
            run_index_cache_s=env_float(env, "WEFT_RUN_INDEX_CACHE_S", cls.run_index_cache_s, minimum=0.0),
            run_wait_max_s=env_float(env, "WEFT_RUN_WAIT_MAX_S", cls.run_wait_max_s, minimum=0.0),
            run_wait_poll_s=_wait_poll(env, cls.run_wait_poll_s),
        )


class _PayloadSink:
    """Adapts a :class:`PayloadStore` to the executor's ``ResultSink``."""

    def __init__(self, store: PayloadStore) -> None:
        self.store = store

    async def put(self, call: ToolCall, payload: bytes) -> str:
        import json

        return await asyncio.to_thread(self.store.put, json.loads(payload), prefix=call.run_id)


@dataclass
class Runtime:
    """Everything the activities and triggers need, for one worker process.

    The chat model, the Key Vault client and the search index are built on first use: they cost network set-up or
    seconds of model loading that plan and code runs never need.
    """

    settings: RuntimeSettings
    catalog: Catalog
    executor: ToolExecutor
    payloads: PayloadStore
    telemetry: Telemetry = field(default_factory=get_telemetry)
    """Spans and metrics (Application Insights when configured; Prometheus always)."""
    source_reports: list[SourceReport] = field(default_factory=list)
    """What loading each configured tool source (OpenAPI, MCP) gave: tool counts or errors."""
    _lazy: dict[str, Any] = field(default_factory=dict)
    _lazy_lock: threading.RLock = field(default_factory=threading.RLock)
    _search_lock: threading.Lock = field(default_factory=threading.Lock)

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lazy_lock:
            if name not in self._lazy:
                self._lazy[name] = build()
            return self._lazy[name]

    @property
    def secrets(self) -> KeyVaultSecrets | None:
        """Key Vault secrets (cached), or None when ``KEY_VAULT_URL`` is not set."""
        return self._once("secrets", lambda: build_secrets(self.settings.secrets))

    @property
    def chat_model(self) -> ChatModel | None:
        """The configured chat model, or None (task mode then answers 503)."""
        return self._once("chat_model", lambda: build_chat_model(self.settings.llm, self.secrets))

    @property
    def code_executor(self) -> CodeExecutor:
        """Where code-mode runs execute (WEFT_SANDBOX_BACKEND): the process-wide local sandbox, or the Azure
        Container Apps session pool with a token from the app's identity."""
        return self._once("code_executor", lambda: build_code_executor(
            self.settings.sandbox_backend, lambda: build_credential(self.settings.secrets.client_id)))

    @property
    def trust(self) -> Trust:
        """Callers (WEFT_AUTH_*), their quotas (WEFT_QUOTA_*, shared through Table Storage when storage is
        configured) and the audit trail (WEFT_AUDIT_*: append blobs, else ``<WEFT_STATE_DIR>/audit.sqlite``)."""
        return self._once("trust", self._build_trust)

    def _build_trust(self) -> Trust:
        s = self.settings
        quotas = build_quotas(s.quotas, storage=s.payloads, state_dir=s.state_dir,
                              client_options=_FAIL_FAST_CLIENT_OPTIONS) if s.quotas.enabled else None
        audit = build_audit_log(s.audit, storage=s.payloads, state_dir=s.state_dir,
                                events=custom_events(self.telemetry), client_options=_FAIL_FAST_CLIENT_OPTIONS)
        return Trust(s.identity, Authenticator(s.identity), quotas, audit, s.trust)

    @property
    def run_index(self) -> RunIndex:
        """Who owns each run (see :mod:`shared.runs.run_index`): WEFT_RUNS_TABLE in Table Storage when storage is
        configured, else ``<WEFT_STATE_DIR>/runs.sqlite``."""
        return self._once("run_index", lambda: CachedRunIndex(
            _run_index(self.settings), entries=self.settings.run_index_cache_entries,
            ttl_s=self.settings.run_index_cache_s))

    @property
    def discovery_cache(self) -> DiscoveryCache:
        """What each tool source offered last time (reused for WEFT_DISCOVERY_TTL_S, and when rediscovery fails):
        see :func:`_discovery_cache`."""
        return self._once("discovery_cache", lambda: _discovery_cache(self.settings))

    @property
    def source_sync(self) -> RegistrySync:
        """Sources registered through the API, shared by every instance: the registry is a blob in
        ``WEFT_SOURCE_REGISTRY_CONTAINER`` when Blob Storage is configured, else
        ``<WEFT_STATE_DIR>/source-registry.json``."""
        return self._once("source_sync", self._build_source_sync)

    def _build_source_sync(self) -> RegistrySync:
        sync = RegistrySync(self.catalog, SourceRegistry(self._registry_store()), self.settings.sources,
                            secrets=self.secrets, cache=self.discovery_cache, on_change=self._sources_loaded)
        sync.note_loaded(self.source_reports)
        return sync

    def _registry_store(self) -> RegistryStore:
        container = container_client(self.settings.payloads, self.settings.sources.registry_container,
                                     **_FAIL_FAST_CLIENT_OPTIONS)
        if container is not None:
            return BlobRegistryStore(container)
        return FileRegistryStore(Path(self.settings.state_dir) / "source-registry.json")

    def _sources_loaded(self, reports: list[SourceReport]) -> None:
        """A registry check or a registration loaded sources: keep one report per source, rebuild search later."""
        with self._lazy_lock:
            fresh = {report.source_id: report for report in reports}
            kept = [fresh.pop(r.source_id) if r.source_id in fresh else r for r in self.source_reports]
            self.source_reports[:] = [r for r in kept + list(fresh.values()) if r.error != REMOVED]
        if any(report.tool_count or report.error == REMOVED for report in reports):
            self.catalog_changed()

    def refresh_sources_if_due(self) -> None:
        """Look for sources registered on other instances when the refresh interval has passed (in the background;
        costs a clock read otherwise)."""
        sync = self._lazy.get("source_sync")
        if sync is not None:
            sync.refresh_if_due()

    def catalog_changed(self) -> None:
        """Forget what was derived from the catalog (the search index is rebuilt on next use)."""
        with self._lazy_lock:
            self._lazy.pop("search_index", None)

    @property
    def search_index_loaded(self) -> bool:
        return "search_index" in self._lazy

    def warm_up_search_index(self) -> None:
        """Build the search index and load the embedding model on a background thread (readiness reports the index
        loading until then); searches meanwhile wait for it on their worker threads, nothing else does."""
        with self._lazy_lock:
            if self._lazy.get("_warming") or self.search_index_loaded:
                return
            self._lazy["_warming"] = True
        run_in_background(self._warm_search_index, name="weft-search-warm-up",
                          exit_wait_s=self.settings.search.warm_exit_wait_s)

    def _warm_search_index(self) -> None:
        try:
            self.search_index.warm_up()
        finally:
            with self._lazy_lock:
                self._lazy.pop("_warming", None)

    def readiness_checks(self) -> list[ReadinessCheck]:
        """What ``GET /api/ready`` checks: storage, Key Vault, LLM configuration, catalog, search index, and with
        ``WEFT_SANDBOX_BACKEND=dynamic_sessions`` a token for the session pool."""
        storage: ReadinessCheck
        if isinstance(self.payloads, BlobPayloadStore):
            storage = BlobContainerCheck(self.payloads.container)
        else:
            storage = LocalFolderCheck(self.settings.payloads.local_dir)
        vault = self.secrets
        checks: list[ReadinessCheck] = [
            storage,
            KeyVaultCheck(vault.client if vault is not None else None),
            LlmConfigCheck(self.settings.llm),
            CatalogCheck(lambda: len(self.catalog)),
            SearchIndexCheck(lambda: self.search_index_loaded),
        ]
        backend = self.settings.sandbox_backend
        if backend.kind == "dynamic_sessions":
            checks.append(SessionPoolCheck(backend.session_pool_endpoint, self._session_token_lifetime))
        return checks

    def _session_token_lifetime(self) -> float:
        executor = self.code_executor
        if not isinstance(executor, DynamicSessionsExecutor):
            raise TypeError(f"the code executor is {type(executor).__name__}, not the session pool's")
        return executor.token_lifetime()

    @property
    def search_index(self) -> HybridRetriever:
        """Hybrid tool search over the catalog (the embedding model loads on first use; embeddings are cached in
        Blob Storage when ``WEFT_SEARCH_CACHE_CONTAINER`` and storage are configured, else per
        ``WEFT_SEARCH_CACHE_DIR``)."""
        index = self._lazy.get("search_index")
        if index is not None:
            return index
        # Its own lock, not _lazy_lock: a build takes seconds (minutes when many tools need embedding) and must not
        # hold up the other lazily built parts. Call this off the event loop.
        with self._search_lock:
            index = self._lazy.get("search_index")
            if index is None:
                version = self.catalog.version
                index = HybridRetriever.from_specs(
                    self.catalog.search_entries(),
                    settings=self.settings.search, cache=self._blob_embedding_cache(), content_key=version)
                with self._lazy_lock:
                    if self.catalog.version == version:  # else the catalog changed meanwhile: rebuild next time
                        self._lazy["search_index"] = index
            return index

    def _blob_embedding_cache(self) -> EmbeddingCache | None:
        search = self.settings.search
        if not search.cache_container:
            return None
        container = container_client(self.settings.payloads, search.cache_container)
        if container is None:
            return None
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        return EmbeddingCache(shared_encoder(search.max_tokens).cache_key, BlobContainerStore(container))


def _wait_poll(env: Mapping[str, str], default: tuple[float, float]) -> tuple[float, float]:
    first = env_int(env, "WEFT_RUN_WAIT_POLL_FIRST_MS", round(default[0] * 1000), minimum=1)
    longest = env_int(env, "WEFT_RUN_WAIT_POLL_MAX_MS", round(default[1] * 1000), minimum=1)
    if longest < first:
        raise ValueError("WEFT_RUN_WAIT_POLL_MAX_MS must be at least WEFT_RUN_WAIT_POLL_FIRST_MS")
    return first / 1000.0, longest / 1000.0


def _discovery_cache(settings: RuntimeSettings) -> DiscoveryCache:
    """The discovery cache of tool sources: blobs ``discovery/<source id>.json`` in the source registry's container
    (WEFT_SOURCE_REGISTRY_CONTAINER) when Blob Storage is configured, so every instance and every cold start shares
    it; else files in WEFT_DISCOVERY_CACHE_DIR (default ``<WEFT_STATE_DIR>/discovery``)."""
    container = container_client(settings.payloads, settings.sources.registry_container, **_FAIL_FAST_CLIENT_OPTIONS)
    return build_discovery_cache(settings.sources, container=container, state_dir=settings.state_dir)


_FAIL_FAST_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 1, "initial_backoff": 0.5, "increment_base": 2, "connection_timeout": 5, "read_timeout": 10,
}
"""Client options for stores on the hot or start-up path: the breaker (read on every tool call, fails open), the
source registry and the discovery cache (read while the runtime is built and on refresh). An unreachable store then
costs about a second, not the storage SDK's default minute of retries that would hold a worker's first request (and
``/api/ready``) hostage; a registration that meets it fails with 503 and can be sent again."""


def _run_index(settings: RuntimeSettings) -> RunIndex:
    from azure.data.tables import TableClient

    storage = settings.payloads
    if storage.connection_string:
        return TableRunIndex(TableClient.from_connection_string(storage.connection_string, settings.runs_table,
                                                                **_FAIL_FAST_CLIENT_OPTIONS))
    if storage.account_url or settings.quotas.table_account_url:
        from azure.identity import DefaultAzureCredential

        endpoint = table_endpoint(settings.quotas, storage.account_url)
        return TableRunIndex(TableClient(endpoint, settings.runs_table, credential=DefaultAzureCredential(),
                                         **_FAIL_FAST_CLIENT_OPTIONS))
    return SqliteRunIndex(Path(settings.state_dir) / "runs.sqlite")


def _breaker_store(settings: RuntimeSettings) -> BreakerStore:
    """Where circuit breakers keep their state: one blob per tool in WEFT_BREAKER_CONTAINER when Blob Storage is
    configured, so every instance sees the same circuit; else ``<WEFT_STATE_DIR>/breakers.sqlite`` (one machine)."""
    container = container_client(settings.payloads, settings.tools.breaker.container, **_FAIL_FAST_CLIENT_OPTIONS)
    if container is not None:
        return BlobBreakerStore(container)
    return SqliteBreakerStore(Path(settings.state_dir) / "breakers.sqlite")


def build_runtime(settings: RuntimeSettings, telemetry: Telemetry | None = None) -> Runtime:
    """Build the catalog (demo tools, catalog files, tool sources, sources registered through the API), the breaker,
    the executor and the payload store."""
    telemetry = telemetry or get_telemetry()
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    catalog = Catalog()
    if settings.demo_tools:
        register_demo_tools(catalog, notes_path=state / "notes.sqlite")
    for path in settings.catalog_files:
        catalog.load_file(path.strip(), cache_dir=settings.search.cache_dir or None)
    reports: list[SourceReport] = []
    if settings.sources.sources_file:
        reports = load_sources(catalog, settings.sources, secrets=build_secrets(settings.secrets),
                               cache=_discovery_cache(settings))
        for report in reports:
            if report.error:
                log.warning("tool source %s (%s) failed: %s", report.alias or report.source_id[:12], report.type,
                            report.error)
    breaker = CircuitBreaker(_breaker_store(settings), settings.tools.breaker,
                             on_transition=telemetry.breaker_transition_hook)
    payloads = build_payload_store(settings.payloads)
    tool_settings = replace(settings.tools, max_result_bytes=settings.inline_result_bytes)
    executor = ToolExecutor(catalog, breaker, tool_settings, result_sink=_PayloadSink(payloads))
    runtime = Runtime(settings=settings, catalog=catalog, executor=executor, payloads=payloads, telemetry=telemetry,
                      source_reports=reports)
    runtime.source_sync.refresh()
    log.info("weft runtime ready: %d tools (catalog %s)", len(catalog), catalog.version[:12])
    if settings.search.warm_at_start:
        runtime.warm_up_search_index()
    return runtime


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime, built from the environment on first use."""
    global _runtime
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                check_unresolved_references(os.environ)
                telemetry = configure_telemetry(TelemetrySettings.from_env(os.environ))
                _runtime = build_runtime(RuntimeSettings.from_env(), telemetry)
            runtime = _runtime
    runtime.refresh_sources_if_due()
    return runtime


async def get_runtime_async() -> Runtime:
    """:func:`get_runtime` for async functions: the first call builds the runtime (catalog files, tool sources, the
    source registry: network and seconds) on a worker thread instead of blocking the event loop."""
    if _runtime is not None:
        return get_runtime()
    return await asyncio.to_thread(get_runtime)


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Replace (or drop) the process-wide runtime: for tests."""
    global _runtime
    with _lock:
        _runtime = runtime

"""One instance's catalog kept in step with the shared source registry (:mod:`shared.sources.registry`).

:class:`RegistrySync` is how sources registered on any instance reach the catalog of this one:

- **start-up** — :meth:`RegistrySync.refresh` loads every registered source (beside the ``WEFT_TOOL_SOURCES`` file);
- **periodically** — :meth:`RegistrySync.refresh_if_due`, called on every use of the runtime, costs one clock read
  until ``WEFT_SOURCE_REGISTRY_REFRESH_S`` has passed; then a background thread asks the store for the registry's
  version (one ``HEAD`` on Blob Storage) and reads and loads the document only when the version changed;
- **on demand** — :meth:`RegistrySync.ensure` (before a run is admitted, a tool is called, a tool is described): when
  a named tool is not in the catalog, one check right away, shared by the callers that wait on it;
- **registration** — :meth:`RegistrySync.register` validates and discovers the source, adds it to the registry
  (idempotent: the same source again changes nothing there, and its tools are rediscovered and replaced) and then to
  this catalog.

A registered source that cannot be discovered here (its server is down) is reported and tried again at the next
check, even when the registry did not change; one whose tool names clash with the catalog's is reported and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.catalog.catalog import Catalog, Tool
from shared.errors import InvalidRequest, NotFound, ToolNotFound, WeftError
from shared.secrets import SecretSource
from shared.sources.cache import DiscoveryCache
from shared.sources.config import McpSourceConfig, OpenApiSourceConfig, SourceSettings, parse_source, source_id
from shared.sources.loader import SourceReport, _run, check_registrable, discover_tools, failure_report
from shared.sources.registry import RegisteredSource, SourceRegistry
from shared.sources.ssrf import SsrfGuard

__all__ = ["REMOVED", "Registration", "RegistrySync"]

log = logging.getLogger(__name__)


REMOVED = "removed from the source registry"
"""The error of the report :class:`RegistrySync` gives ``on_change`` for a source it dropped."""


@dataclass(frozen=True)
class Registration:
    """What registering a source did."""

    report: SourceReport
    """The source's tools here (as :func:`~shared.sources.loader.discover_tools` reports them)."""
    created: bool
    """Whether the registry gained the source (``False``: it was registered already)."""


class RegistrySync:
    """Loads registered sources into ``catalog``; thread-safe. ``on_change(reports)`` is told what each check or
    registration loaded or failed to load (the runtime forgets its search index and keeps the reports).

    ``clock`` is monotonic seconds (injectable for tests); ``interval_s`` defaults to
    ``settings.registry_refresh_s``.
    """

    def __init__(
        self,
        catalog: Catalog,
        registry: SourceRegistry,
        settings: SourceSettings,
        *,
        secrets: SecretSource | None = None,
        cache: DiscoveryCache | None = None,
        on_change: Callable[[list[SourceReport]], None] | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        allow_local: bool = False,
    ) -> None:
        self.catalog = catalog
        self.allow_local = allow_local
        """Load stdio MCP and OpenAPI ``path`` entries found in the registry (tests on one machine only): by default
        they are refused like at registration, so write access to the registry's storage cannot run commands or
        read files on the app's instances."""
        self.registry = registry
        self.settings = settings
        self.secrets = secrets
        self.cache = cache
        self.on_change = on_change
        self.interval_s = settings.registry_refresh_s if interval_s is None else interval_s
        self.clock = clock
        self._owned: dict[str, tuple[str, ...]] = {}
        self._registered: set[str] = set()
        """Sources this instance loaded from the registry (not from the sources file): dropped when removed there."""
        self._version: str | None = None
        self._pending: set[str] = set()
        self._check_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._next_check = -math.inf
        self._checks = 0
        self._background: threading.Thread | None = None

    # ---- what is loaded

    def note_loaded(self, reports: Iterable[SourceReport]) -> None:
        """Record sources loaded by other means (the ``WEFT_TOOL_SOURCES`` file), so the registry does not load them
        a second time."""
        with self._state_lock:
            for report in reports:
                if report.source_id and report.tool_count:
                    self._owned[report.source_id] = tuple(report.tools)

    def loaded(self) -> dict[str, tuple[str, ...]]:
        """Source id → the tool names it put in the catalog, for every source this instance loaded."""
        with self._state_lock:
            return dict(self._owned)

    # ---- checks

    def refresh(self) -> list[SourceReport]:
        """Check the registry now and load the sources this catalog lacks (and retry those that failed before).
        Blocking; storage failures are logged and leave the catalog as it is."""
        with self._check_lock:
            return self._check(self.clock())

    def refresh_if_due(self) -> threading.Thread | None:
        """When the refresh interval has passed and no check is running, start one on a background thread (returned,
        so tests can join it); otherwise do nothing. Cheap enough for every request."""
        now = self.clock()
        if now < self._next_check:
            return None
        with self._state_lock:
            if now < self._next_check or (self._background is not None and self._background.is_alive()):
                return None
            self._next_check = now + self.interval_s
            thread = threading.Thread(target=self.refresh, name="weft-source-registry", daemon=True)
            self._background = thread
        thread.start()
        return thread

    def ensure(self, names: Iterable[str]) -> list[str]:
        """Make sure ``names`` are in the catalog if the registry can provide them: when one is missing, check the
        registry unless a check started since this call did. Returns the names still missing. Blocking."""
        wanted = list(dict.fromkeys(names))
        if all(name in self.catalog for name in wanted):
            return []
        checks_before = self._checks
        with self._check_lock:
            if self._checks == checks_before and any(name not in self.catalog for name in wanted):
                # Sources that failed to load are retried by the periodic refresh only: a stream of unknown tool
                # names (typos, bad plans) must not each wait for a dead source's discovery timeout.
                self._check(self.clock(), retry_failed=False)
        return [name for name in wanted if name not in self.catalog]

    async def ensure_async(self, names: Iterable[str]) -> list[str]:
        """:meth:`ensure` for async code: no thread hop when every name is in the catalog already."""
        wanted = list(names)
        if all(name in self.catalog for name in wanted):
            return []
        return await asyncio.to_thread(self.ensure, wanted)

    def _check(self, started: float, *, retry_failed: bool = True) -> list[SourceReport]:
        self._checks += 1  # under the check lock: a check counted after a caller looked started after it asked
        try:
            version = self.registry.version()
            if version == self._version and not (self._pending and retry_failed):
                return []
            snapshot = self.registry.read()
        except Exception:
            log.warning("the source registry (%r) cannot be read; trying again later", self.registry.store,
                        exc_info=True)
            return []
        finally:
            self._next_check = max(self._next_check, started + self.interval_s)
        if snapshot.version != self._version:
            for problem in snapshot.problems:
                log.warning("source registry entry skipped: %s", problem)
        owned = self.loaded()
        listed = {entry.id for entry in snapshot.sources}
        for gone in sorted(self._registered - listed):  # removed on another instance (or here, a moment ago)
            self._drop(gone)
        todo = list({entry.id: entry for entry in snapshot.sources if entry.id not in owned}.values())
        skipped = set() if retry_failed else {entry.id for entry in todo if entry.id in self._pending}
        todo = [entry for entry in todo if entry.id not in skipped]
        outcomes = _run(lambda: self._load(todo)) if todo else []
        self._version = snapshot.version
        self._pending = {report.source_id for report, retry in outcomes if retry} | skipped
        reports = [report for report, _ in outcomes]
        for report in reports:
            if report.error and not report.tool_count:
                log.warning("registered source %s (%s) not loaded: %s", report.location, report.type, report.error)
            else:
                log.info("registered source %s (%s): %d tools (%s)", report.location, report.type, report.tool_count,
                         report.origin)
        if reports and self.on_change is not None:
            self.on_change(reports)
        return reports

    async def _load(self, entries: Sequence[RegisteredSource]) -> list[tuple[SourceReport, bool]]:
        """``(report, retry later)`` per entry, discovered concurrently."""
        guard = SsrfGuard(self.settings.network)

        async def one(entry: RegisteredSource) -> tuple[SourceReport, bool]:
            try:
                if not self.allow_local:
                    check_registrable(entry.config, self.settings)
            except WeftError as exc:
                return failure_report(entry.config, exc.message), False
            try:
                tools, report = await discover_tools(entry.config, self.settings, secrets=self.secrets,
                                                     cache=self.cache, guard=guard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return failure_report(entry.config, exc), True
            return self._install(entry.id, tools, report), False

        return list(await asyncio.gather(*(one(entry) for entry in entries)))

    # ---- registration

    async def register(self, source_config: Any, *, allow_local: bool = False) -> Registration:
        """Register a source for every instance: validate it (a dict, e.g. an endpoint's JSON body, or a parsed
        config), discover it afresh, add it to the registry, then add its tools here. Registering a source that is
        registered already is not an error: its tools are rediscovered and replace the old ones.

        Raises :class:`InvalidRequest` (bad entry, discovery failure, a tool name another source has),
        :class:`~shared.errors.UpstreamUnavailable` or :class:`~shared.errors.NotConfigured` (the registry cannot be
        written; the catalog is then unchanged).
        """
        config = (source_config if isinstance(source_config, OpenApiSourceConfig | McpSourceConfig)
                  else parse_source(source_config))
        if not allow_local:
            check_registrable(config, self.settings)
        sid = source_id(config)
        tools, report = await discover_tools(config, self.settings, secrets=self.secrets, cache=self.cache,
                                             refresh=True)
        if not tools and report.error:
            raise InvalidRequest(report.error, field="source")
        clash = self._clash(sid, [tool.name for tool in tools])
        if clash:
            raise InvalidRequest(clash, field="source")
        created = await asyncio.to_thread(self.registry.add, config)
        report = self._install(sid, tools, report)
        if report.error and not report.tool_count:
            raise InvalidRequest(report.error, field="source")
        if self.on_change is not None:
            self.on_change([report])
        return Registration(report, created)

    async def unregister(self, sid: str) -> list[str]:
        """Remove the source ``sid`` from the registry (every instance drops its tools at its next check) and its
        tools from this catalog now; the names removed. :class:`~shared.errors.NotFound` for a source that is not
        registered (a source of the sources file cannot be removed through the API)."""
        if not await asyncio.to_thread(self.registry.remove, sid):
            raise NotFound("no registered source with this id", field="id")
        return self._drop(sid)

    def _drop(self, sid: str) -> list[str]:
        with self._state_lock:
            names = list(self._owned.pop(sid, ()))
            self._registered.discard(sid)
            for name in names:
                with contextlib.suppress(ToolNotFound):
                    self.catalog.remove(name)
        if self.on_change is not None:
            self.on_change([SourceReport(source_id=sid, type="removed", error=REMOVED)])
        log.info("registered source %s removed: %d tools dropped", sid[:12], len(names))
        return names

    def _clash(self, sid: str, names: Sequence[str]) -> str | None:
        with self._state_lock:
            return self._clash_locked(sid, names)

    def _install(self, sid: str, tools: Sequence[Tool], report: SourceReport) -> SourceReport:
        """Add a source's tools, replacing the ones it added before; a name another source has refuses them all."""
        names = [tool.name for tool in tools]
        with self._state_lock:
            clash = self._clash_locked(sid, names)
            if clash is None:
                try:
                    self.catalog.add_all(tools, replace=True)
                except ValueError as exc:
                    clash = f"{exc}; give the source an alias"
            if clash is not None:
                return report.model_copy(update={"tool_count": 0, "tools": [], "error": clash})
            for gone in set(self._owned.get(sid, ())) - set(names):
                with contextlib.suppress(ToolNotFound):
                    self.catalog.remove(gone)
            self._owned[sid] = tuple(names)
            self._registered.add(sid)
        return report

    def _clash_locked(self, sid: str, names: Sequence[str]) -> str | None:
        """Why ``names`` cannot join the catalog for source ``sid`` (a name another source or tool has), or None."""
        own = set(self._owned.get(sid, ()))
        taken = next((name for name in names if name in self.catalog and name not in own), None)
        return None if taken is None else f"tool {taken!r} is already registered; give the source an alias"

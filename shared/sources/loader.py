"""Source loading: discover the configured sources (through the cache) and add their tools to the catalog.

:func:`load_sources` (start-up) discovers every source of the ``WEFT_TOOL_SOURCES`` file concurrently and reports each;
a broken source is reported and skipped, never fatal for the others. The file and its entries are described in
:mod:`shared.sources.config`.

Sources registered through the API (``POST /api/tools/sources``) do not come through here as a whole:
:meth:`shared.sources.registry_sync.RegistrySync.register` validates one with :func:`check_registrable` (a stdio
command runs code and a path reads local files, so those are refused), discovers it with :func:`discover_tools`, adds
it to the shared source registry (:mod:`shared.sources.registry`), and every instance loads it from there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from shared.catalog.catalog import Catalog, Tool
from shared.errors import Forbidden, InvalidRequest
from shared.secrets import SecretSource
from shared.sources.cache import DiscoveredTool, DiscoveryCache, FileCacheStore, Origin
from shared.sources.config import (
    McpSourceConfig,
    OpenApiSourceConfig,
    SourceConfig,
    SourceSettings,
    parse_source,
    read_sources_file,
    source_id,
)
from shared.sources.mcp import McpClient, McpTransport, mcp_tools
from shared.sources.openapi import load_document, openapi_tools
from shared.sources.openapi_transport import OpenApiClient, OpenApiTransport, host_allowed
from shared.sources.ssrf import SsrfGuard

__all__ = [
    "SourceReport",
    "bind_tools",
    "build_discovery_cache",
    "check_registrable",
    "discover_source",
    "discover_tools",
    "failure_report",
    "load_sources",
    "load_sources_async",
    "secret_hosts",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def build_discovery_cache(
    settings: SourceSettings, *, container: Any = None, state_dir: str | Path = ".weft-cache"
) -> DiscoveryCache:
    """The discovery cache: blobs ``discovery/<source id>.json`` in ``container`` (a ``ContainerClient``) when one is
    given, else files in ``settings.discovery_cache_dir`` or, when that is empty, in ``<state_dir>/discovery``."""
    from shared.sources.cache import BlobCacheStore

    if container is not None:
        store: BlobCacheStore | FileCacheStore = BlobCacheStore(container)
    else:
        store = FileCacheStore(settings.discovery_folder(state_dir))
    return DiscoveryCache(store, ttl_s=settings.discovery_ttl_s)


# ------------------------------------------------------------------------------------------------------ reports


class SourceReport(BaseModel):
    """What loading one source did."""

    source_id: str
    """sha256 of the source's configuration (empty when the entry itself is invalid)."""
    type: str
    """``openapi`` or ``mcp`` (or what the entry said, when invalid)."""
    alias: str | None = None
    """The source's alias."""
    location: str = ""
    """Document URL or path, MCP URL or command name."""
    tool_count: int = 0
    """Tools added to the catalog."""
    tools: list[str] = Field(default_factory=list)
    """Their names."""
    origin: Origin | None = None
    """``fresh`` (just discovered), ``cache`` (fresh cache entry) or ``stale`` (cached; discovery failed)."""
    version: str | None = None
    """Content hash of the discovered specs."""
    error: str | None = None
    """Why the source was not loaded, or why a stale discovery was used."""


# ------------------------------------------------------------------------------------------------- discovery


async def discover_source(
    config: SourceConfig, settings: SourceSettings, *, secrets: SecretSource | None, guard: SsrfGuard | None = None,
    trusted: bool = False,
) -> list[DiscoveredTool]:
    """Ask the source what it offers now (no cache). ``trusted``: the source comes from the operator's sources file
    (see :func:`secret_hosts`)."""
    guard = guard or SsrfGuard(settings.network)
    if isinstance(config, OpenApiSourceConfig):
        document = await load_document(config.location(), guard=guard, settings=settings.openapi)
        excluded = frozenset({config.auth.header.lower()}) if config.auth else frozenset()
        return openapi_tools(
            document, alias=config.alias, document_url=config.url, exclude_headers=excluded,
            timeout_s=config.timeout_s, max_ref_depth=settings.openapi.max_ref_depth,
        )
    client = McpClient(config.server_params(secret_hosts(config, settings, trusted=trusted)), guard=guard,
                       secrets=secrets, settings=settings.mcp)
    return mcp_tools(await client.list_tools(), alias=config.alias, timeout_s=config.timeout_s)


def secret_hosts(config: SourceConfig, settings: SourceSettings, *, trusted: bool) -> tuple[str, ...]:
    """Where the source's auth secret may be sent: the hosts an operator bound it to (WEFT_SECRET_BINDINGS), plus,
    for a source of the operator's own sources file (``trusted``), the host its entry names — the operator wrote
    the secret's name and the host together. A source registered through the API gets the bindings only."""
    if config.auth is None:
        return ()
    bound = settings.secret_bindings.hosts_for(config.auth.secret)
    if not trusted:
        return bound
    own = urlsplit(_auth_url(config)).hostname
    return (*bound, own) if own else bound


def _auth_url(config: SourceConfig) -> str:
    if isinstance(config, OpenApiSourceConfig):
        return config.base_url or config.url or ""
    return config.url or ""


def bind_tools(
    config: SourceConfig,
    discovered: Sequence[DiscoveredTool],
    settings: SourceSettings,
    *,
    secrets: SecretSource | None,
    guard: SsrfGuard | None = None,
    trusted: bool = False,
) -> list[Tool]:
    """Catalog tools for discovered specs, with transports sharing one client for the source."""
    guard = guard or SsrfGuard(settings.network)
    hosts = secret_hosts(config, settings, trusted=trusted)
    if isinstance(config, OpenApiSourceConfig):
        client = OpenApiClient(
            guard=guard, settings=settings.openapi, auth=config.auth.http_auth(hosts) if config.auth else None,
            secrets=secrets, base_url=config.base_url,
        )
        return [Tool(item.spec, OpenApiTransport(client, item.binding)) for item in discovered]
    mcp = McpClient(config.server_params(hosts), guard=guard, secrets=secrets, settings=settings.mcp)
    return [
        Tool(item.spec, McpTransport(mcp, str(item.binding["tool"]), retry_safe=item.spec.idempotent))
        for item in discovered
    ]


async def _discover(
    config: SourceConfig,
    settings: SourceSettings,
    *,
    secrets: SecretSource | None,
    cache: DiscoveryCache | None,
    guard: SsrfGuard,
    refresh: bool = False,
    trusted: bool = False,
) -> tuple[list[DiscoveredTool], Origin, str, str | None]:
    """``(tools, origin, version, stale reason)`` for one source, through the cache when there is one."""
    sid = source_id(config)

    async def discover() -> list[DiscoveredTool]:
        return await asyncio.wait_for(
            discover_source(config, settings, secrets=secrets, guard=guard, trusted=trusted),
            settings.discovery_timeout_s,
        )

    if cache is None:
        from shared.sources.cache import discovery_version

        tools = await discover()
        return tools, "fresh", discovery_version(tools), None
    found = await cache.get_or_discover(sid, discover, refresh=refresh)
    return list(found.discovery.tools), found.origin, found.discovery.version, found.error


async def discover_tools(
    config: SourceConfig,
    settings: SourceSettings,
    *,
    secrets: SecretSource | None,
    cache: DiscoveryCache | None = None,
    guard: SsrfGuard | None = None,
    refresh: bool = False,
) -> tuple[list[Tool], SourceReport]:
    """One source's catalog tools (discovered through the cache, not yet added to any catalog) and its report, whose
    ``error`` says why a stale discovery was used. Raises when the source cannot be discovered."""
    guard = guard or SsrfGuard(settings.network)
    discovered, origin, version, stale_reason = await _discover(
        config, settings, secrets=secrets, cache=cache, guard=guard, refresh=refresh
    )
    tools = bind_tools(config, discovered, settings, secrets=secrets, guard=guard)
    names = [tool.name for tool in tools]
    return tools, _report(config, tool_count=len(names), tools=names, origin=origin, version=version,
                          error=stale_reason)


def failure_report(config: SourceConfig, exc: BaseException | str) -> SourceReport:
    """The report of a source that was not loaded: ``exc`` (or the text) becomes its error."""
    return _report(config, error=exc if isinstance(exc, str) else _error_text(exc))


def _report(config: SourceConfig, **fields: Any) -> SourceReport:
    return SourceReport(
        source_id=source_id(config), type=config.type, alias=config.alias, location=config.location(), **fields
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "discovery timed out"
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


async def load_sources_async(
    catalog: Catalog,
    settings: SourceSettings,
    *,
    secrets: SecretSource | None = None,
    cache: DiscoveryCache | None = None,
) -> list[SourceReport]:
    """Discover every source of ``settings.sources_file`` concurrently and add their tools to ``catalog``, in file
    order. Each source gets a report; a broken source (bad entry, discovery failure, name clash) is skipped. An
    unreadable sources file is a start-up error (:class:`NotConfigured`)."""
    if not settings.sources_file:
        return []
    path = Path(settings.sources_file)
    entries = await asyncio.to_thread(read_sources_file, path)
    guard = SsrfGuard(settings.network)
    configs: list[SourceConfig | SourceReport] = []
    for index, entry in enumerate(entries):
        try:
            configs.append(parse_source(entry, field=f"sources[{index}]", base_dir=path.parent))
        except InvalidRequest as exc:
            kind = str(entry.get("type", "?")) if isinstance(entry, Mapping) else "?"
            configs.append(SourceReport(source_id="", type=kind, error=exc.message))

    async def one(config: SourceConfig) -> tuple[list[DiscoveredTool], Origin, str, str | None] | BaseException:
        try:
            return await _discover(config, settings, secrets=secrets, cache=cache, guard=guard, trusted=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return exc

    pending = [one(c) for c in configs if not isinstance(c, SourceReport)]
    results = iter(await asyncio.gather(*pending))
    reports: list[SourceReport] = []
    for config in configs:
        if isinstance(config, SourceReport):
            reports.append(config)
            continue
        outcome = next(results)
        if isinstance(outcome, BaseException):
            reports.append(_report(config, error=_error_text(outcome)))
            continue
        reports.append(_add(catalog, config, outcome, settings, secrets=secrets, guard=guard))
    for report in reports:
        if report.error and not report.tool_count:
            log.warning("tool source %s (%s) not loaded: %s", report.location or "?", report.type, report.error)
        else:
            log.info("tool source %s (%s): %d tools (%s)", report.location, report.type, report.tool_count,
                     report.origin)
    return reports


def _add(
    catalog: Catalog,
    config: SourceConfig,
    outcome: tuple[list[DiscoveredTool], Origin, str, str | None],
    settings: SourceSettings,
    *,
    secrets: SecretSource | None,
    guard: SsrfGuard,
) -> SourceReport:
    discovered, origin, version, stale_reason = outcome
    tools = bind_tools(config, discovered, settings, secrets=secrets, guard=guard, trusted=True)
    try:
        catalog.add_all(tools)
    except ValueError as exc:
        return _report(config, origin=origin, version=version, error=f"{exc}; give the source an alias")
    names = [tool.name for tool in tools]
    return _report(config, tool_count=len(names), tools=names, origin=origin, version=version, error=stale_reason)


def load_sources(
    catalog: Catalog,
    settings: SourceSettings,
    *,
    secrets: SecretSource | None = None,
    cache: DiscoveryCache | None = None,
) -> list[SourceReport]:
    """:func:`load_sources_async` for synchronous callers (the composition root); safe to call from a thread that
    runs an event loop (the work then runs on a helper thread)."""
    return _run(lambda: load_sources_async(catalog, settings, secrets=secrets, cache=cache))


def check_registrable(config: SourceConfig, settings: SourceSettings) -> None:
    """Refuse sources the API may not register: stdio MCP sources run a command and OpenAPI ``path`` sources read a
    local file, so those belong in ``WEFT_TOOL_SOURCES`` (:class:`InvalidRequest`); a source that names a secret the
    operator did not bind to its host (WEFT_SECRET_BINDINGS) is :class:`Forbidden`."""
    if isinstance(config, McpSourceConfig) and config.transport == "stdio":
        raise InvalidRequest("stdio MCP sources run a command; configure them in WEFT_TOOL_SOURCES", field="source")
    if isinstance(config, OpenApiSourceConfig) and config.path:
        raise InvalidRequest("OpenAPI sources read from a path are only allowed in WEFT_TOOL_SOURCES; give a url",
                             field="source.path")
    if config.auth is not None:
        hosts = settings.secret_bindings.hosts_for(config.auth.secret)
        if not hosts:
            raise Forbidden(f"secret {config.auth.secret[:100]!r} is not bound to any host by the operator "
                            "(WEFT_SECRET_BINDINGS): a registered source may use only a bound secret",
                            field="auth.secret")
        host = urlsplit(_auth_url(config)).hostname or ""
        if not host_allowed(host, hosts):
            raise Forbidden(f"secret {config.auth.secret[:100]!r} is not bound to host {host[:255]!r} "
                            "(WEFT_SECRET_BINDINGS)", field="auth.secret")


def _run(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from synchronous code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(factory))
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(_awaited(factory))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name="weft-load-sources")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _awaited(factory: Callable[[], Awaitable[_T]]) -> _T:
    return await factory()

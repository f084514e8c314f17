"""Catalog sources: the configured OpenAPI documents and MCP servers, discovered (through the cache) into the catalog.

The source list is a JSON or YAML file named by ``WEFT_TOOL_SOURCES`` (``{"sources": [...]}`` or a bare list)::

    sources:
      - {type: openapi, url: https://api.example.com/openapi.json, alias: pets,
         auth: {header: Authorization, scheme: Bearer, secret: petstore-token}}
      - {type: openapi, path: specs/notes.yaml, base_url: https://notes.example.com}
      - {type: mcp, transport: stdio, command: python, args: [-m, notes_server], alias: notes}
      - {type: mcp, transport: http, url: https://mcp.example.com/mcp, auth: {secret: mcp-token}}

Relative ``path`` and ``cwd`` values are relative to the file. :func:`load_sources` (start-up) discovers every source
concurrently and reports each; a broken source is reported and skipped, never fatal for the others.
:func:`register_source` (the "register a source" endpoint) adds one source and raises on failure; since a stdio
command runs code and a path reads local files, those are refused there unless ``allow_local``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from shared.catalog import Catalog, Tool
from shared.errors import InvalidRequest, NotConfigured
from shared.models import canonical_json, parse_model
from shared.secrets import SecretSource
from shared.settings import env_float, env_str
from shared.sources.cache import DiscoveredTool, DiscoveryCache, FileCacheStore, Origin
from shared.sources.mcp import McpClient, McpServerParams, McpSettings, McpTransport, mcp_tools
from shared.sources.openapi import load_document, openapi_tools
from shared.sources.openapi_transport import HttpAuth, OpenApiClient, OpenApiSettings, OpenApiTransport
from shared.sources.ssrf import NetworkPolicy, SsrfGuard

__all__ = [
    "AuthConfig",
    "McpSourceConfig",
    "OpenApiSourceConfig",
    "SourceConfig",
    "SourceReport",
    "SourceSettings",
    "bind_tools",
    "build_discovery_cache",
    "discover_source",
    "load_sources",
    "load_sources_async",
    "parse_source",
    "read_sources_file",
    "register_source",
    "source_id",
]

log = logging.getLogger(__name__)

ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,31}$"
"""Aliases prefix tool names (``alias.tool``), so they have no dots of their own."""
_T = TypeVar("_T")


# ------------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class SourceSettings:
    """Settings of catalog sources. Build with :meth:`from_env`."""

    sources_file: str = ""
    """JSON/YAML file listing the sources; empty means none (WEFT_TOOL_SOURCES)."""
    discovery_ttl_s: float = 3600.0
    """How long a discovery is reused before the source is asked again (WEFT_DISCOVERY_TTL_S)."""
    discovery_cache_dir: str = ".weft-cache/discovery"
    """Folder of the local discovery cache (WEFT_DISCOVERY_CACHE_DIR)."""
    discovery_timeout_s: float = 60.0
    """Longest one source's discovery may take at start-up (WEFT_DISCOVERY_TIMEOUT_S)."""
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    """SSRF policy (WEFT_ALLOW_PRIVATE_NETWORK, WEFT_ALLOWED_HOSTS)."""
    openapi: OpenApiSettings = field(default_factory=OpenApiSettings)
    """OpenAPI limits (WEFT_OPENAPI_*)."""
    mcp: McpSettings = field(default_factory=McpSettings)
    """MCP client settings (WEFT_MCP_*)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SourceSettings:
        """Read the settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(
            sources_file=env_str(env, "WEFT_TOOL_SOURCES", "").strip(),
            discovery_ttl_s=env_float(env, "WEFT_DISCOVERY_TTL_S", cls.discovery_ttl_s, minimum=0),
            discovery_cache_dir=env_str(env, "WEFT_DISCOVERY_CACHE_DIR", cls.discovery_cache_dir),
            discovery_timeout_s=env_float(env, "WEFT_DISCOVERY_TIMEOUT_S", cls.discovery_timeout_s, minimum=0.001),
            network=NetworkPolicy.from_env(env),
            openapi=OpenApiSettings.from_env(env),
            mcp=McpSettings.from_env(env),
        )


def build_discovery_cache(settings: SourceSettings, *, container: Any = None) -> DiscoveryCache:
    """The discovery cache: in Blob Storage when a ``ContainerClient`` is given, else in the local folder."""
    from shared.sources.cache import BlobCacheStore

    store = BlobCacheStore(container) if container is not None else FileCacheStore(settings.discovery_cache_dir)
    return DiscoveryCache(store, ttl_s=settings.discovery_ttl_s)


# ------------------------------------------------------------------------------------------------------- configs


class AuthConfig(BaseModel):
    """An auth header whose value is a named secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str = Field(min_length=1)
    """Name of the secret holding the credential (never the credential itself)."""
    header: str = Field("Authorization", min_length=1)
    """Header to send."""
    scheme: str | None = "Bearer"
    """Value prefix; ``null`` sends the secret as it is."""

    def http_auth(self) -> HttpAuth:
        """As the transports' :class:`HttpAuth`."""
        return HttpAuth(secret=self.secret, header=self.header, scheme=self.scheme or None)


class OpenApiSourceConfig(BaseModel):
    """An OpenAPI 3 document: each operation becomes a tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["openapi"]
    url: str | None = None
    """Where to fetch the document (http/https)."""
    path: str | None = None
    """Or a local file."""
    base_url: str | None = None
    """Overrides the document's ``servers[0].url``."""
    auth: AuthConfig | None = None
    """Auth header sent with every call."""
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)
    """Prefix of the tool names (``alias.operationId``)."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-call timeout of these tools (default: the executor's)."""

    @model_validator(mode="after")
    def _one_location(self) -> OpenApiSourceConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        return self

    def location(self) -> str:
        """The URL or path of the document."""
        return self.url or self.path or ""


class McpSourceConfig(BaseModel):
    """An MCP server: each of its tools becomes a tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mcp"]
    transport: Literal["stdio", "http"]
    command: str | None = None
    """Executable to start (stdio)."""
    args: list[str] = Field(default_factory=list)
    """Its arguments (stdio)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables (stdio)."""
    secret_env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set from named secrets: ``{"API_TOKEN": "secret-name"}`` (stdio)."""
    cwd: str | None = None
    """Working directory (stdio)."""
    url: str | None = None
    """Endpoint (http)."""
    auth: AuthConfig | None = None
    """Auth header (http)."""
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)
    """Prefix of the tool names (``alias.tool``)."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-call timeout of these tools (default: the executor's)."""

    @model_validator(mode="after")
    def _fits_transport(self) -> McpSourceConfig:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio MCP source needs a command")
            if self.url or self.auth:
                raise ValueError("url and auth are for http MCP sources")
        else:
            if not self.url:
                raise ValueError("an http MCP source needs a url")
            if self.command or self.args or self.env or self.secret_env or self.cwd:
                raise ValueError("command, args, env, secret_env and cwd are for stdio MCP sources")
        return self

    def location(self) -> str:
        """The URL, or the command's name (arguments may hold anything, so they are left out)."""
        return self.url or Path(self.command or "").name

    def server_params(self) -> McpServerParams:
        """As :class:`McpServerParams`."""
        return McpServerParams(
            transport=self.transport, command=self.command or "", args=tuple(self.args), env=dict(self.env),
            secret_env=dict(self.secret_env), cwd=self.cwd, url=self.url or "",
            auth=self.auth.http_auth() if self.auth else None,
        )


SourceConfig = Annotated[OpenApiSourceConfig | McpSourceConfig, Field(discriminator="type")]


class _SourceEntry(RootModel[SourceConfig]):
    pass


def parse_source(data: Any, *, field: str = "source", base_dir: Path | None = None) -> SourceConfig:
    """Validate one source entry (:class:`InvalidRequest` naming the field); relative paths resolve in ``base_dir``."""
    config = parse_model(_SourceEntry, data, field=field).root
    if base_dir is None:
        return config
    if isinstance(config, OpenApiSourceConfig) and config.path and not Path(config.path).is_absolute():
        return config.model_copy(update={"path": str(base_dir / config.path)})
    if isinstance(config, McpSourceConfig) and config.cwd and not Path(config.cwd).is_absolute():
        return config.model_copy(update={"cwd": str(base_dir / config.cwd)})
    return config


def source_id(config: SourceConfig) -> str:
    """sha256 of the canonical JSON of the configuration: the cache key of its discoveries."""
    return hashlib.sha256(canonical_json(config.model_dump(mode="json")).encode("utf-8")).hexdigest()


def read_sources_file(path: str | Path) -> list[Any]:
    """The raw entries of a sources file (JSON by extension, else YAML); :class:`NotConfigured` if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise NotConfigured(f"WEFT_TOOL_SOURCES file {path} cannot be read: {exc}", field="WEFT_TOOL_SOURCES") from None
    if isinstance(data, Mapping) and set(data) == {"sources"}:
        data = data["sources"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise NotConfigured(f"{path}: expected a list of sources or {{sources: [...]}}", field="WEFT_TOOL_SOURCES")
    return data


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
    config: SourceConfig, settings: SourceSettings, *, secrets: SecretSource | None, guard: SsrfGuard | None = None
) -> list[DiscoveredTool]:
    """Ask the source what it offers now (no cache)."""
    guard = guard or SsrfGuard(settings.network)
    if isinstance(config, OpenApiSourceConfig):
        document = await load_document(config.location(), guard=guard, settings=settings.openapi)
        excluded = frozenset({config.auth.header.lower()}) if config.auth else frozenset()
        return openapi_tools(
            document, alias=config.alias, document_url=config.url, exclude_headers=excluded,
            timeout_s=config.timeout_s, max_ref_depth=settings.openapi.max_ref_depth,
        )
    client = McpClient(config.server_params(), guard=guard, secrets=secrets, settings=settings.mcp)
    return mcp_tools(await client.list_tools(), alias=config.alias, timeout_s=config.timeout_s)


def bind_tools(
    config: SourceConfig,
    discovered: Sequence[DiscoveredTool],
    settings: SourceSettings,
    *,
    secrets: SecretSource | None,
    guard: SsrfGuard | None = None,
) -> list[Tool]:
    """Catalog tools for discovered specs, with transports sharing one client for the source."""
    guard = guard or SsrfGuard(settings.network)
    if isinstance(config, OpenApiSourceConfig):
        client = OpenApiClient(
            guard=guard, settings=settings.openapi, auth=config.auth.http_auth() if config.auth else None,
            secrets=secrets, base_url=config.base_url,
        )
        return [Tool(item.spec, OpenApiTransport(client, item.binding)) for item in discovered]
    mcp = McpClient(config.server_params(), guard=guard, secrets=secrets, settings=settings.mcp)
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
) -> tuple[list[DiscoveredTool], Origin, str, str | None]:
    """``(tools, origin, version, stale reason)`` for one source, through the cache when there is one."""
    sid = source_id(config)

    async def discover() -> list[DiscoveredTool]:
        return await asyncio.wait_for(
            discover_source(config, settings, secrets=secrets, guard=guard), settings.discovery_timeout_s
        )

    if cache is None:
        from shared.sources.cache import discovery_version

        tools = await discover()
        return tools, "fresh", discovery_version(tools), None
    found = await cache.get_or_discover(sid, discover, refresh=refresh)
    return list(found.discovery.tools), found.origin, found.discovery.version, found.error


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
            return await _discover(config, settings, secrets=secrets, cache=cache, guard=guard)
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
        reports.append(_add(catalog, config, outcome, settings, secrets=secrets, guard=guard, replace=False))
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
    replace: bool,
) -> SourceReport:
    discovered, origin, version, stale_reason = outcome
    tools = bind_tools(config, discovered, settings, secrets=secrets, guard=guard)
    try:
        catalog.add_all(tools, replace=replace)
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


async def register_source(
    catalog: Catalog,
    source_config: Any,
    settings: SourceSettings,
    *,
    secrets: SecretSource | None = None,
    cache: DiscoveryCache | None = None,
    replace: bool = False,
    allow_local: bool = False,
    refresh: bool = True,
) -> SourceReport:
    """Validate, discover (``refresh`` skips a fresh cache entry) and add one source; raises on any failure.

    ``source_config`` is a dict (an endpoint's JSON body) or a parsed config. Without ``allow_local``, stdio MCP
    sources (they run a command) and OpenAPI ``path`` sources (they read a local file) are refused.
    """
    config = source_config if isinstance(source_config, BaseModel) else parse_source(source_config)
    if not allow_local:
        if isinstance(config, McpSourceConfig) and config.transport == "stdio":
            raise InvalidRequest("stdio MCP sources run a command; configure them in WEFT_TOOL_SOURCES", field="source")
        if isinstance(config, OpenApiSourceConfig) and config.path:
            raise InvalidRequest("OpenAPI sources read from a path are only allowed in WEFT_TOOL_SOURCES; give a url",
                                 field="source.path")
    guard = SsrfGuard(settings.network)
    outcome = await _discover(config, settings, secrets=secrets, cache=cache, guard=guard, refresh=refresh)
    report = _add(catalog, config, outcome, settings, secrets=secrets, guard=guard, replace=replace)
    if not report.tool_count and report.error:
        raise InvalidRequest(report.error, field="source")
    return report


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

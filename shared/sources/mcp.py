"""MCP servers as tools, through the official ``mcp`` SDK (2.x): stdio (a command) or streamable HTTP (a URL).

:class:`McpClient` owns one server: :meth:`~McpClient.list_tools` discovers over a session of its own (discovery
often runs in a short-lived event loop at start-up), and :meth:`~McpClient.call_tool` uses a *pooled* session, one
per event loop (an MCP session's streams and tasks belong to the loop that opened them). The pooled session lives
in a background task of that loop, so callers in any task of the loop share it, and is discarded when the
connection is lost (the next call opens a new one; a call of a tool marked safe to repeat is retried on it once).
With ``WEFT_MCP_POOL=false`` every call opens and closes its own session: simple, but a stdio server is started
for each call (about a second for a Python server).

Tool specs: the server's ``inputSchema`` as parameters (``$ref`` s inlined, as for every tool), ``alias.name``
names, and side effects read from the annotations as the MCP spec defines their defaults: a tool is side-effect free
only if ``readOnlyHint`` is true, and idempotent if read-only or ``idempotentHint`` is true.

Results: ``isError`` becomes :class:`ToolFailed` with the tool's text; otherwise ``structuredContent`` when present,
else each content block (text parsed as JSON when it is JSON), a list when there are several.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp import types as mcp_types
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from shared.catalog import inline_refs
from shared.errors import (
    InvalidRequest,
    NotConfigured,
    ToolArgumentsInvalid,
    ToolFailed,
    UpstreamUnavailable,
    WeftError,
)
from shared.models import ToolSpec
from shared.secrets import SecretSource
from shared.settings import env_bool, env_float
from shared.sources.cache import DiscoveredTool
from shared.sources.openapi import safe_tool_name
from shared.sources.openapi_transport import HttpAuth
from shared.sources.ssrf import GuardedTransport, SsrfGuard

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "McpClient",
    "McpServerParams",
    "McpSettings",
    "McpTransport",
    "mcp_tools",
    "result_value",
    "translate_error",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_META_KEY = "weft/idempotencyKey"
"""``_meta`` key of a ``tools/call`` request carrying the call's idempotency key."""
_CONNECTION_LOST = frozenset({mcp_types.CONNECTION_CLOSED})
_MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class McpSettings:
    """MCP client settings. Build with :meth:`from_env`."""

    pool: bool = True
    """Share one session per event loop between calls (WEFT_MCP_POOL); off opens a session per call."""
    connect_timeout_s: float = 30.0
    """Time to start (or reach) a server and complete ``initialize`` (WEFT_MCP_CONNECT_TIMEOUT_S)."""
    call_timeout_s: float = 60.0
    """Timeout of discovery requests and of calls when the executor gives none (WEFT_MCP_CALL_TIMEOUT_S)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> McpSettings:
        """Read the ``WEFT_MCP_*`` settings."""
        return cls(
            pool=env_bool(env, "WEFT_MCP_POOL", cls.pool),
            connect_timeout_s=env_float(env, "WEFT_MCP_CONNECT_TIMEOUT_S", cls.connect_timeout_s, minimum=0.001),
            call_timeout_s=env_float(env, "WEFT_MCP_CALL_TIMEOUT_S", cls.call_timeout_s, minimum=0.001),
        )


@dataclass(frozen=True)
class McpServerParams:
    """How to reach one MCP server."""

    transport: Literal["stdio", "http"]
    """``stdio``: start ``command`` and talk over its stdin/stdout; ``http``: streamable HTTP at ``url``."""
    command: str = ""
    """Executable (stdio)."""
    args: tuple[str, ...] = ()
    """Its arguments (stdio)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables (stdio); the SDK passes only a safe base environment (PATH, HOME...) besides."""
    secret_env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables whose values are named secrets, read when the server starts (stdio)."""
    cwd: str | None = None
    """Working directory (stdio)."""
    url: str = ""
    """Endpoint, e.g. ``https://host/mcp`` (http)."""
    auth: HttpAuth | None = None
    """Auth header from a named secret (http)."""

    def describe(self) -> str:
        """A short, secret-free description for messages."""
        return f"MCP server {self.url}" if self.transport == "http" else f"MCP server {self.command!r}"


# ------------------------------------------------------------------------------------------------------ errors


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def translate_error(exc: BaseException, params: McpServerParams) -> BaseException:
    """The Weft error for a failure of the SDK or the server (task-group exception groups unwrapped); exceptions
    this module does not know are returned as they are."""
    leaves = _leaves(exc)
    known = next((leaf for leaf in leaves if isinstance(leaf, WeftError)), None)
    if known is not None:
        return known
    leaf = leaves[0]
    where = params.describe()
    if isinstance(leaf, MCPError):
        detail = f"{where} answered error {leaf.code}: {leaf.message}"[:_MESSAGE_CHARS]
        if leaf.code in (mcp_types.CONNECTION_CLOSED, mcp_types.REQUEST_TIMEOUT):
            return UpstreamUnavailable(detail)
        if leaf.code == mcp_types.INVALID_PARAMS:
            return ToolArgumentsInvalid(detail)
        if leaf.code in (mcp_types.METHOD_NOT_FOUND, mcp_types.INVALID_REQUEST):
            return InvalidRequest(detail)
        return ToolFailed(detail)
    if isinstance(leaf, httpx2.HTTPError | anyio.ClosedResourceError | anyio.BrokenResourceError | ConnectionError):
        return UpstreamUnavailable(f"{where} could not be reached: {type(leaf).__name__}: {leaf}"[:_MESSAGE_CHARS])
    if isinstance(leaf, TimeoutError):
        return UpstreamUnavailable(f"{where} did not answer in time")
    if isinstance(leaf, OSError):  # the command could not be started
        return NotConfigured(f"cannot start {where}: {leaf.strerror or leaf}")
    return exc


def _connection_lost(exc: BaseException) -> bool:
    return any(
        (isinstance(leaf, MCPError) and leaf.code in _CONNECTION_LOST)
        or isinstance(
            leaf, anyio.ClosedResourceError | anyio.BrokenResourceError | httpx2.TransportError | UpstreamUnavailable
        )
        for leaf in _leaves(exc)
    )


# ------------------------------------------------------------------------------------------------------ sessions


def _server_stderr() -> TextIO:
    """Where a stdio server's stderr goes: our stderr if it is a real file (test runners and hosts may replace it
    with an object without a descriptor, which a child process cannot write to), else the original, else nowhere."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None and stream.fileno() >= 0:
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    global _devnull
    if _devnull is None:
        _devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the life of the process
    return _devnull


_devnull: TextIO | None = None


class _PooledSession:
    """A session kept open by a background task of one event loop, shared by the loop's callers."""

    def __init__(self, client: McpClient) -> None:
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[ClientSession] = loop.create_future()
        self._ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen even with no waiter
        self._closing = asyncio.Event()
        self.closed = False
        self._task = loop.create_task(self._run(client), name=f"mcp-session {client.params.describe()}")

    async def _run(self, client: McpClient) -> None:
        try:
            async with client.open_session() as session:
                self._ready.set_result(session)
                await self._closing.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError("session closed"))
            elif not isinstance(exc, asyncio.CancelledError):
                reason = translate_error(exc, client.params)
                log.info("pooled session of %s ended: %s", client.params.describe(), reason)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            self.closed = True

    async def session(self) -> ClientSession:
        """The session once it is initialized (a caller's cancellation does not cancel it for the others)."""
        return await asyncio.shield(self._ready)

    def close(self) -> None:
        """Ask the owning task to close the session (call from the session's loop)."""
        self._closing.set()

    async def wait_closed(self) -> None:
        """Wait until the owning task has finished."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task


class McpClient:
    """One MCP server: discovery and calls. Safe to share between threads and event loops."""

    def __init__(
        self,
        params: McpServerParams,
        *,
        guard: SsrfGuard,
        secrets: SecretSource | None = None,
        settings: McpSettings | None = None,
    ) -> None:
        self.params = params
        self.guard = guard
        self.secrets = secrets
        self.settings = settings or McpSettings()
        self._pool: dict[asyncio.AbstractEventLoop, _PooledSession] = {}
        self._lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def open_session(self) -> AsyncIterator[ClientSession]:
        """A new, initialized session (closed on exit). Errors are raised as the SDK raises them."""
        params = self.params
        async with contextlib.AsyncExitStack() as stack:
            if params.transport == "stdio":
                streams = await stack.enter_async_context(stdio_client(await self._stdio(), errlog=_server_stderr()))
            else:
                await self.guard.addresses(params.url)  # a clear refusal before the SDK wraps errors
                http = await stack.enter_async_context(await self._http_client())
                streams = await stack.enter_async_context(streamable_http_client(params.url, http_client=http))
            session = await stack.enter_async_context(
                ClientSession(*streams, read_timeout_seconds=self.settings.call_timeout_s)
            )
            # Only the handshake is under the deadline: a cancel scope must not enclose the transports' task groups.
            with anyio.fail_after(self.settings.connect_timeout_s):
                await session.initialize()
            yield session

    async def _stdio(self) -> StdioServerParameters:
        env = dict(self.params.env)
        if self.params.secret_env:
            if self.secrets is None:
                raise NotConfigured(f"{self.params.describe()} needs secrets but no secret source is configured")
            for name, secret in self.params.secret_env.items():
                env[name] = await asyncio.to_thread(self.secrets.get, secret)
        return StdioServerParameters(
            command=self.params.command, args=list(self.params.args), env=env, cwd=self.params.cwd
        )

    async def _http_client(self) -> httpx2.AsyncClient:
        headers: dict[str, str] = {}
        if self.params.auth is not None:
            host = urlsplit(self.params.url).hostname or ""
            name, value = await asyncio.to_thread(self.params.auth.resolve, self.secrets, host)
            headers[name] = value
        transport = GuardedTransport(
            self.guard, inner_factory=httpx2.AsyncHTTPTransport, request_type=httpx2.Request
        )
        timeout = httpx2.Timeout(self.settings.connect_timeout_s, read=max(300.0, self.settings.call_timeout_s))
        # One guard serves both httpx majors: GuardedTransport is typed on httpx's base class, httpx2 duck-types it.
        return httpx2.AsyncClient(headers=headers, timeout=timeout, transport=transport,  # type: ignore[arg-type]
                                  trust_env=False)

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool the server offers (all pages), over a session of its own."""
        try:
            async with self.open_session() as session:
                tools: list[mcp_types.Tool] = []
                cursor: str | None = None
                while True:
                    page_params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=page_params)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        return tools
        except Exception as exc:
            raise translate_error(exc, self.params) from None

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        meta: Mapping[str, Any] | None = None,
        retry_safe: bool = False,
    ) -> mcp_types.CallToolResult:
        """Call ``name``; on a lost pooled connection, reconnect (and repeat the call once if ``retry_safe``)."""
        timeout = timeout_s or self.settings.call_timeout_s
        request_meta: Any = dict(meta) if meta else None
        if not self.settings.pool:
            try:
                async with self.open_session() as session:
                    return await session.call_tool(name, dict(arguments), timeout, meta=request_meta)
            except Exception as exc:
                raise translate_error(exc, self.params) from None
        for attempt in (1, 2):
            pooled = self._pooled()
            try:
                session = await pooled.session()
                return await session.call_tool(name, dict(arguments), timeout, meta=request_meta)
            except Exception as exc:
                if not _connection_lost(exc):
                    raise translate_error(exc, self.params) from None
                self._discard(pooled)
                if attempt == 2 or not retry_safe:
                    raise translate_error(exc, self.params) from None
                log.info("connection to %s lost; reconnecting to repeat %s", self.params.describe(), name)
        raise AssertionError("unreachable")

    def _pooled(self) -> _PooledSession:
        loop = asyncio.get_running_loop()
        with self._lock:
            for finished in [other for other in self._pool if other.is_closed()]:
                del self._pool[finished]  # the value's task refers to its loop, so the weak key alone never goes
            pooled = self._pool.get(loop)
            if pooled is None or pooled.closed:
                pooled = self._pool[loop] = _PooledSession(self)
            return pooled

    def _discard(self, pooled: _PooledSession) -> None:
        with self._lock:
            for loop, current in list(self._pool.items()):
                if current is pooled:
                    del self._pool[loop]
        pooled.close()

    async def aclose(self) -> None:
        """Close the pooled session of the running loop, and ask other loops' sessions to close."""
        this = asyncio.get_running_loop()
        with self._lock:
            pooled = dict(self._pool)
            self._pool.clear()
        for loop, session in pooled.items():
            if loop is this:
                session.close()
                await session.wait_closed()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(session.close)


# ------------------------------------------------------------------------------------------------- specs, results


def mcp_tools(
    tools: Sequence[mcp_types.Tool], *, alias: str | None = None, timeout_s: float | None = None
) -> list[DiscoveredTool]:
    """The :class:`DiscoveredTool` s of a server's tools (tools with unusable schemas are skipped, with a warning)."""
    out: list[DiscoveredTool] = []
    names: set[str] = set()
    for tool in tools:
        hints = tool.annotations or mcp_types.ToolAnnotations()
        read_only = hints.read_only_hint is True
        name = safe_tool_name(tool.name, alias=alias)
        try:
            parameters = {"type": "object", "properties": {}, **inline_refs(dict(tool.input_schema or {}))}
            if name in names:
                raise ValueError(f"its catalog name {name!r} is taken by another tool of the server")
            spec = ToolSpec(
                name=name,
                description=tool.description or (hints.title or tool.title or "") or tool.name,
                parameters=parameters,
                source="mcp",
                side_effects=not read_only,
                idempotent=read_only or hints.idempotent_hint is True,
                timeout_s=timeout_s,
            )
        except (InvalidRequest, ValidationError, ValueError) as exc:
            log.warning("skipping MCP tool %r: %s", tool.name, exc)
            continue
        names.add(name)
        out.append(DiscoveredTool(spec, {"tool": tool.name}))
    return out


def result_value(result: mcp_types.CallToolResult) -> Any:
    """The value of a tool result (see the module docstring); :class:`ToolFailed` when ``isError``."""
    if result.is_error:
        text = " ".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent)).strip()
        raise ToolFailed((text or "the MCP tool reported an error")[:_MESSAGE_CHARS])
    if result.structured_content is not None:
        return result.structured_content
    values = [_content_value(block) for block in result.content]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _content_value(block: Any) -> Any:
    if isinstance(block, mcp_types.TextContent):
        try:
            return json.loads(block.text)
        except ValueError:
            return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        return {"type": block.type, "mime_type": block.mime_type, "data": block.data}
    if isinstance(block, mcp_types.EmbeddedResource):
        return {"type": "resource", **block.resource.model_dump(mode="json", exclude_none=True)}
    if hasattr(block, "model_dump"):
        return block.model_dump(mode="json", exclude_none=True)
    return block


class McpTransport:
    """Calls one tool of an MCP server (a :class:`~shared.catalog.catalog.ToolTransport`)."""

    def __init__(self, client: McpClient, tool: str, *, retry_safe: bool = False) -> None:
        self.client = client
        self.tool = tool
        self.retry_safe = retry_safe

    async def call(self, args: Mapping[str, Any], *, idempotency_key: str, timeout_s: float | None) -> Any:
        """Call the tool and return its value; the idempotency key travels in ``_meta``."""
        result = await self.client.call_tool(
            self.tool, args, timeout_s=timeout_s, meta={IDEMPOTENCY_META_KEY: idempotency_key},
            retry_safe=self.retry_safe,
        )
        return result_value(result)

"""DevHost: the app's functions, the engine, the workers and the servers, started and stopped together."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost import local_rpc
from devhost.durable_api import DurableApi
from devhost.engine import Engine
from devhost.http_errors import JsonErrorRunner
from devhost.index import AppLoadError, FunctionIndex, load_app
from devhost.keys import FunctionKeys, load_or_create_keys
from devhost.mcp import McpEndpoint
from devhost.queues import QueueOptions, QueuePoller, send_messages
from devhost.server import FunctionInvoker, HttpLimits, build_web_app
from devhost.store import Store
from devhost.timers import TimerScheduler
from devhost.workers import AsyncLoop, WorkerPool

__all__ = ["DevHost", "HostOptions"]

log = logging.getLogger(__name__)


class HostOptions:
    """How the devhost runs; every limit has a default and a CLI flag or environment variable."""

    def __init__(
        self,
        *,
        app_dir: str | Path = ".",
        db: str = ".devhost/state.sqlite",
        host: str = "127.0.0.1",
        port: int = 7071,
        serve_http: bool = True,
        poll_queues: bool = True,
        run_timers: bool = True,
        coalesce_ms: float = 5.0,
        keys: bool = False,
        keys_file: str | Path | None = None,
        max_body_bytes: int = 100 * 1024 * 1024,
        max_url_bytes: int = 4096,
        mcp: bool = True,
    ) -> None:
        self.app_dir = Path(app_dir)
        self.keys = keys
        """Enforce function keys like the host (off by default, as with Core Tools)."""
        state_dir = Path(db).parent if db != ":memory:" else Path(".devhost")
        self.keys_file = Path(keys_file) if keys_file else state_dir / "keys.json"
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes
        self.mcp = mcp
        self.db = db
        self.host = host
        self.port = port
        self.serve_http = serve_http
        self.poll_queues = poll_queues
        self.run_timers = run_timers
        self.coalesce_ms = coalesce_ms


class DevHost:
    """Runs one app: ``start()`` then use ``base_url``; ``stop()`` when done."""

    def __init__(self, options: HostOptions, index: FunctionIndex | None = None) -> None:
        self.options = options
        self.index = index or load_app(options.app_dir)
        self.store = Store(options.db)
        self.loop = AsyncLoop("devhost-http")
        self.port = options.port
        self.keys: FunctionKeys | None = None
        if options.keys:
            try:
                self.keys = load_or_create_keys(options.keys_file)
            except (OSError, ValueError) as exc:
                raise AppLoadError(f"function keys: {exc}") from exc
        encoding = QueueOptions.from_host(self.index.host_config).message_encoding
        self.invoker = FunctionInvoker(
            self.index,
            lambda: self.base_url,
            lambda conn, queue, texts: send_messages(conn, queue, texts, encoding),
            durable_code=self.keys.system_key("durabletask_extension") if self.keys else "devhost",
        )
        self.mcp = McpEndpoint(self.index, self.invoker, self.keys) if options.mcp else None
        durable = self.index.durable_setting
        self.workers = WorkerPool(
            self.index.activities,
            self._complete,
            max_concurrency=int(durable("maxConcurrentActivityFunctions", 16)),
            per_activity=(self.index.host_config.get("devhost") or {}).get("activityConcurrency"),
        )
        self.engine = Engine(
            self.store,
            self.index.orchestrators,
            self.workers.submit,
            coalesce_s=options.coalesce_ms / 1000.0,
        )
        self.queues = QueuePoller(self.index, self.run_on_loop, self.invoker.invoke)
        self.timers = TimerScheduler(self.index, self.run_on_loop, self.invoker.invoke)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def _complete(self, completion: Any) -> None:
        self.engine.complete(completion)

    def run_on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the server loop (where the app's functions and the Durable client live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop.loop)

    def start(self) -> DevHost:
        if self.options.serve_http:
            self.run_on_loop(self._start_http()).result()
        self.engine.start()
        if self.options.poll_queues:
            self.queues.start()
        if self.options.run_timers:
            self.timers.start()
        return self

    async def _start_http(self) -> None:
        if self.keys is None and self.options.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "devhost: serving on %s WITHOUT function keys: anyone who can reach this address can call every "
                "function, the Durable API and /admin. Pass --keys (or DEVHOST_KEYS=1) to require keys.",
                self.options.host,
            )
        durable = DurableApi(self.engine, self.base_url, self.invoker.durable_code)
        limits = HttpLimits(self.options.max_body_bytes, self.options.max_url_bytes)
        app = build_web_app(
            self.index,
            self.invoker,
            durable,
            keys=self.keys,
            limits=limits,
            extra_routes=self.mcp.routes() if self.mcp else None,
        )
        if self.mcp is not None:
            app.cleanup_ctx.append(self.mcp.lifespan)
        # The parser's own line limit sits above the URL limit so that an over-long URL gets the middleware's 414.
        line_limit = max(8190, self.options.max_url_bytes + 1024)
        self._runner = JsonErrorRunner(app, access_log=None, max_line_size=line_limit, max_field_size=line_limit)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise AppLoadError(
                    f"port {self.port} on {self.options.host} is in use: stop the other process or pass --port"
                ) from exc
            raise
        if self.port == 0:
            sock: socket.socket = site._server.sockets[0]  # type: ignore[union-attr]
            self.port = sock.getsockname()[1]
        durable.base_url = self.base_url
        if local_rpc.enabled():
            local_rpc.register(self.base_url, durable)

    def stop(self) -> None:
        local_rpc.unregister(self.base_url)
        self.timers.stop()
        self.queues.stop()
        self.engine.stop()
        self.workers.shutdown()
        if self._runner is not None:
            self.run_on_loop(self._runner.cleanup()).result(timeout=10)
        self.loop.stop()
        self.store.close()

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- conveniences for tests and the CLI ------------------------------------------------------------------
    def start_new(self, name: str, input_value: Any = None, instance_id: str | None = None) -> str:
        return self.engine.start_new(name, instance_id, None if input_value is None else json.dumps(input_value))

    def status(self, instance_id: str) -> dict[str, Any] | None:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return None
        return {
            "instanceId": inst.id,
            "name": inst.name,
            "runtimeStatus": inst.status,
            "output": json.loads(inst.output) if inst.output else None,
            "customStatus": json.loads(inst.custom_status) if inst.custom_status else None,
        }

    def wait_for(self, instance_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the instance reaches a terminal state; returns its status. Raises TimeoutError."""
        inst = self.engine.wait_for(instance_id, timeout)
        status = self.status(instance_id)
        if inst is None or status is None or status["runtimeStatus"] not in ("Completed", "Failed", "Terminated"):
            raise TimeoutError(f"instance {instance_id} did not finish within {timeout}s: {status}")
        return status

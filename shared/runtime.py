"""The composition root: settings, catalog, tool executor and payload store, built once per worker process.

Nothing is built at import time; :func:`get_runtime` builds on first use and caches. Tests build their own
:class:`Runtime` with :func:`build_runtime` and explicit settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from shared.breaker import CircuitBreaker, SqliteBreakerStore
from shared.catalog import Catalog
from shared.demo_tools import register_demo_tools
from shared.models import ModelLimits, ToolCall
from shared.payloads import PayloadSettings, PayloadStore, build_payload_store
from shared.sandbox import Limits
from shared.settings import env_bool, env_int, env_str
from shared.tools import ToolExecutor, ToolSettings

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
    """Folder for local state: breaker and note store SQLite files (WEFT_STATE_DIR)."""
    max_fan_out: int = 200
    """Most tool calls one orchestration fans out at once; wider levels are split into sub-orchestrations
    (WEFT_MAX_FAN_OUT)."""
    tools: ToolSettings = field(default_factory=ToolSettings)
    payloads: PayloadSettings = field(default_factory=PayloadSettings)
    limits: ModelLimits = field(default_factory=ModelLimits)
    sandbox: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if env is None else env
        files = tuple(p for p in env_str(env, "WEFT_CATALOG_FILES", "").split(";") if p.strip())
        return cls(
            demo_tools=env_bool(env, "WEFT_DEMO_TOOLS", cls.demo_tools),
            catalog_files=files,
            state_dir=env_str(env, "WEFT_STATE_DIR", cls.state_dir),
            max_fan_out=env_int(env, "WEFT_MAX_FAN_OUT", cls.max_fan_out, minimum=1),
            tools=ToolSettings.from_env(env),
            payloads=PayloadSettings.from_env(env),
            limits=ModelLimits.from_env(env),
            sandbox=Limits.from_env(env),
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
    """Everything the activities and triggers need, for one worker process."""

    settings: RuntimeSettings
    catalog: Catalog
    executor: ToolExecutor
    payloads: PayloadStore


def build_runtime(settings: RuntimeSettings) -> Runtime:
    """Build the catalog (demo tools, catalog files), the breaker, the executor and the payload store."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    catalog = Catalog()
    if settings.demo_tools:
        register_demo_tools(catalog, notes_path=state / "notes.sqlite")
    for path in settings.catalog_files:
        catalog.load_file(path.strip())
    breaker = CircuitBreaker(SqliteBreakerStore(state / "breakers.sqlite"), settings.tools.breaker)
    payloads = build_payload_store(settings.payloads)
    tool_settings = settings.tools
    if tool_settings.max_result_bytes > settings.payloads.inline_max_bytes:
        tool_settings = replace(tool_settings, max_result_bytes=settings.payloads.inline_max_bytes)
    executor = ToolExecutor(catalog, breaker, tool_settings, result_sink=_PayloadSink(payloads))
    log.info("weft runtime ready: %d tools (catalog %s)", len(catalog), catalog.version[:12])
    return Runtime(settings=settings, catalog=catalog, executor=executor, payloads=payloads)


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime, built from the environment on first use."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(RuntimeSettings.from_env())
    return _runtime


def reset_runtime(runtime: Runtime | None = None) -> None:
    """Replace (or drop) the process-wide runtime: for tests."""
    global _runtime
    with _lock:
        _runtime = runtime

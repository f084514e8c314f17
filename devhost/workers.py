"""Activity workers: a thread pool for sync activities and one long-lived event loop for async ones.

Activities are called the way the Python worker calls them: the input is decoded with ``df_loads`` and passed as the
keyword named by the trigger; the return value is encoded with ``df_dumps``. Concurrency is bounded globally
(``maxConcurrentActivityFunctions`` in host.json) and, optionally, per activity. A function that declares a
``context`` parameter gets an :class:`InvocationContext` whose ``trace_context`` starts a new trace per invocation, as
the host does for an activity invocation without Durable distributed tracing.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import random
import re
import threading
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.functions._durable_functions import df_dumps, df_loads

from devhost.engine import Completion
from devhost.index import FunctionEntry
from devhost.store import WorkItem

__all__ = ["AsyncLoop", "InvocationContext", "TraceContext", "WorkerPool", "decode_activity_input"]

log = logging.getLogger(__name__)


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class TraceContext:
    """The invocation's W3C trace context, as the worker's ``azure.functions.TraceContext`` gives it."""

    def __init__(self, trace_parent: str, trace_state: str = "", attributes: dict[str, str] | None = None) -> None:
        self.trace_parent = trace_parent
        self.trace_state = trace_state
        self.attributes = dict(attributes or {})

    @classmethod
    def for_invocation(cls, parent: str | None = None, state: str = "") -> TraceContext:
        """A new span id for the invocation, in ``parent``'s trace when that is a valid ``traceparent`` (an HTTP
        request's header), else in a new trace, as the host starts one per queue or activity invocation."""
        match = _TRACEPARENT.fullmatch((parent or "").strip().lower())
        if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
            return cls(f"00-{_random_id(128):032x}-{_random_id(64):016x}-01")
        return cls(f"00-{match[1]}-{_random_id(64):016x}-{match[3]}", state)


def _random_id(bits: int) -> int:
    """A non-zero random trace or span id (W3C ids need uniqueness, not secrecy: no system call per invocation)."""
    return random.getrandbits(bits) or 1


class InvocationContext:
    """The subset of ``azure.functions.Context`` a function body usually reads; ``trace_context`` is a new span of
    the invocation (see :meth:`TraceContext.for_invocation`)."""

    def __init__(
        self, function_name: str, invocation_id: str, function_directory: str = "",
        trace_context: TraceContext | None = None,
    ) -> None:
        self.function_name = function_name
        self.invocation_id = invocation_id
        self.function_directory = function_directory
        self.trace_context = trace_context or TraceContext.for_invocation()
        self.retry_context = None


class AsyncLoop:
    """One event loop on its own thread, alive for the host's lifetime."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def decode_activity_input(input_json: str | None) -> Any:
    if input_json is None:
        return None
    try:
        return df_loads(input_json)
    except json.JSONDecodeError:
        return input_json


class WorkerPool:
    """Runs activity work items and reports each outcome to ``complete``."""

    def __init__(
        self,
        activities: Mapping[str, FunctionEntry],
        complete: Callable[[Completion], None],
        *,
        max_concurrency: int = 16,
        per_activity: Mapping[str, int] | None = None,
        async_loop: AsyncLoop | None = None,
    ) -> None:
        self.activities = activities
        self._complete = complete
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="devhost-activity")
        self._loop = async_loop or AsyncLoop("devhost-activities-async")
        self._owns_loop = async_loop is None
        self._limits = dict(per_activity or {})
        self._global = max(1, max_concurrency)
        self._running = 0
        self._running_by_name: collections.Counter[str] = collections.Counter()
        self._waiting: collections.deque[WorkItem] = collections.deque()
        self._lock = threading.Lock()
        self.overrides: dict[str, Callable[..., Any]] = {}

    def submit(self, items: list[WorkItem]) -> None:
        with self._lock:
            self._waiting.extend(items)
            startable = self._take_startable()
        for item in startable:
            self._start(item)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_loop:
            self._loop.stop()

    def _take_startable(self) -> list[WorkItem]:
        startable: list[WorkItem] = []
        blocked: list[WorkItem] = []
        while self._waiting and self._running < self._global:
            item = self._waiting.popleft()
            limit = self._limits.get(item.name)
            if limit is not None and self._running_by_name[item.name] >= limit:
                blocked.append(item)
                continue
            self._running += 1
            self._running_by_name[item.name] += 1
            startable.append(item)
        self._waiting.extendleft(reversed(blocked))
        return startable

    def _finished(self, item: WorkItem, completion: Completion) -> None:
        with self._lock:
            self._running -= 1
            self._running_by_name[item.name] -= 1
            startable = self._take_startable()
        self._complete(completion)
        for nxt in startable:
            self._start(nxt)

    def _start(self, item: WorkItem) -> None:
        entry = self.activities.get(item.name)
        fn = self.overrides.get(item.name) or (entry.fn if entry else None)
        if entry is None or fn is None:
            self._finished(item, Completion(item, failure=(f"Activity function '{item.name}' does not exist.", "")))
            return
        try:
            kwargs = {entry.trigger_param: decode_activity_input(item.input)}
        except Exception as exc:
            self._finished(item, _failure(item, exc))
            return
        if entry.wants_context:
            kwargs["context"] = InvocationContext(item.name, f"{item.instance_id}:{item.task_id}:{item.dispatches}")
        if inspect.iscoroutinefunction(fn):
            future = self._loop.submit(fn(**kwargs))
            future.add_done_callback(lambda f: self._finished(item, _outcome(item, f)))
        else:
            self._pool.submit(self._run_sync, item, fn, kwargs)

    def _run_sync(self, item: WorkItem, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        try:
            value = fn(**kwargs)
            completion = Completion(item, result_json=df_dumps(value))
        except BaseException as exc:
            completion = _failure(item, exc)
        self._finished(item, completion)


def _outcome(item: WorkItem, future: Any) -> Completion:
    try:
        return Completion(item, result_json=df_dumps(future.result()))
    except BaseException as exc:
        return _failure(item, exc)


def _failure(item: WorkItem, exc: BaseException) -> Completion:
    log.info("activity %s (instance %s) failed: %s: %s", item.name, item.instance_id, type(exc).__name__, exc)
    reason = f"{type(exc).__name__}: {exc}"
    details = "".join(traceback.format_exception(exc)[-8:])
    return Completion(item, failure=(reason, details))

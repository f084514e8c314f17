"""A deterministic asyncio event loop for sandboxed code: FIFO callbacks, a virtual clock, no I/O at all.

Worker side, stdlib only. Real ``asyncio`` futures, tasks, ``gather``, ``wait_for``, ``Queue``… run on it unchanged;
what differs is what happens when nothing is runnable ("idle"): the loop asks its ``on_idle`` hook, which flushes
tool calls and delivers their results (inline mode) or stops the run with the calls still pending (replay mode).
Only when the hook has nothing to do does the virtual clock jump to the next timer, so ``asyncio.sleep`` costs no
wall time and behaves identically on every replay. Tool calls take zero virtual time.

The loop opens no file descriptors, so it keeps working after the worker is confined (no ``epoll``, no self-pipe).
"""

from __future__ import annotations

import asyncio
import heapq
from asyncio import events
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextvars import Context
    from typing import TypeVarTuple

    _Ts = TypeVarTuple("_Ts")


class Deadlock(RuntimeError):
    """Every task waits for something that can never happen (no tool call, timer or other task can wake it)."""


Deadlock.__module__ = "builtins"  # tracebacks shown to the LLM say "Deadlock: …", not a private module path


class VirtualLoop(asyncio.AbstractEventLoop):
    """Single-threaded loop with a virtual clock; ``on_idle() -> bool`` returns whether it made progress."""

    def __init__(
        self, on_idle: Callable[[], bool], *, max_time: float = float("inf"),
        on_time_exceeded: Callable[[], None] | None = None,
    ) -> None:
        self._max_time = max_time
        self._on_time_exceeded = on_time_exceeded
        self._ready: deque[asyncio.Handle] = deque()
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._sequence = 0
        self._now = 0.0
        self._on_idle = on_idle
        self._running = False
        self._closed = False
        self._debug = False

    # -- clock ---------------------------------------------------------------------------------------------------
    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (a blocking ``time.sleep`` in sandboxed code)."""
        if seconds > 0:
            self._set_time(self._now + seconds)

    def _set_time(self, when: float) -> None:
        """Virtual time is still time: sleeping past ``max_time`` counts as running past the wall-clock limit."""
        self._now = max(self._now, when)
        if self._now > self._max_time and self._on_time_exceeded is not None:
            self._on_time_exceeded()

    # -- scheduling ----------------------------------------------------------------------------------------------
    def call_soon(
        self, callback: Callable[[*_Ts], object], *args: *_Ts, context: Context | None = None
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    call_soon_threadsafe = call_soon

    def call_at(
        self, when: float, callback: Callable[[*_Ts], object], *args: *_Ts, context: Context | None = None
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self._sequence += 1
        heapq.heappush(self._timers, (when, self._sequence, handle))
        return handle

    def call_later(
        self, delay: float, callback: Callable[[*_Ts], object], *args: *_Ts, context: Context | None = None
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + max(0.0, delay), callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Cancelled timers are dropped lazily when they reach the top of the heap."""

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None) -> asyncio.Task[Any]:
        if context is None:
            return asyncio.Task(coro, loop=self, name=name)
        return asyncio.Task(coro, loop=self, name=name, context=context)

    # -- running -------------------------------------------------------------------------------------------------
    def run_until_complete(self, future: Any) -> Any:
        if self._running:
            raise RuntimeError("this event loop is already running; use 'await' instead of asyncio.run()")
        if self._closed:
            raise RuntimeError("the event loop is closed")
        task = asyncio.ensure_future(future, loop=self)
        previous = events._get_running_loop()
        events._set_running_loop(self)
        self._running = True
        try:
            while not task.done():
                self._run_once()
        finally:
            self._running = False
            events._set_running_loop(previous)
        return task.result()

    def drop_pending(self) -> None:
        """Forget every scheduled callback and timer: the run is over, and their handles hold the code's tasks."""
        self._ready.clear()
        self._timers.clear()

    def _release_due_timers(self) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled():
                self._ready.append(handle)

    def _drop_cancelled_timers(self) -> None:
        while self._timers and self._timers[0][2].cancelled():
            heapq.heappop(self._timers)

    def _run_once(self) -> None:
        if not self._ready:
            self._release_due_timers()
        if not self._ready:
            if self._on_idle():
                return
            self._drop_cancelled_timers()
            if not self._timers:
                raise Deadlock(
                    "the code is waiting for something that can never happen: no tool call, timer or other task "
                    "can wake it (an un-set asyncio.Event, an empty Queue, a Future nobody resolves?)"
                )
            self._set_time(self._timers[0][0])
            self._release_due_timers()
            return
        for _ in range(len(self._ready)):
            handle = self._ready.popleft()
            if not handle.cancelled():
                handle._run()

    def run_forever(self) -> None:
        raise RuntimeError("run_forever() is not available in the sandbox; use asyncio.run(main())")

    def stop(self) -> None:
        raise RuntimeError("stop() is not available in the sandbox")

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Closing is a no-op: the worker process ends with the run."""

    async def shutdown_asyncgens(self) -> None:
        """Nothing to do: the worker process ends with the run."""

    async def shutdown_default_executor(self) -> None:
        """There is no executor in the sandbox."""

    # -- errors and debug ----------------------------------------------------------------------------------------
    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Unhandled errors in background tasks are dropped: only the main result and uncaught errors count."""

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """See :meth:`call_exception_handler`."""

    def get_exception_handler(self) -> None:
        return None

    def set_exception_handler(self, handler: Any) -> None:
        raise RuntimeError("custom exception handlers are not available in the sandbox")

    def get_task_factory(self) -> None:
        return None

    def set_task_factory(self, factory: Any) -> None:
        raise RuntimeError("task factories are not available in the sandbox")

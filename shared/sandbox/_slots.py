"""A cap on concurrent runs for one process: shared by every thread and every event loop in it.

Sync callers reach the sandbox through :func:`~shared.sandbox._host.run_sync` (a fresh event loop per call, often
on its own thread) and async callers on their own loop, so an ``asyncio.Semaphore`` (bound to one loop) or a
blocking ``threading.Semaphore`` (which would stall a loop) cannot hold the cap. :class:`RunSlots` keeps the count
under a thread lock and wakes a waiter on the waiter's own loop. Waiters are served first come, first served; a
waiter that gives up (timeout or cancellation) leaves the queue, and a slot handed to it as it gave up is passed on.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field

__all__ = ["RunSlots"]


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = field(default=False)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RunSlots:
    """At most ``limit`` holders at once; :meth:`acquire` waits (without blocking its loop) up to a timeout."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the run slot limit must be at least 1, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now."""
        return len(self._waiters)

    async def acquire(self, timeout: float) -> None:
        """Take a slot, waiting at most ``timeout`` seconds; raises ``TimeoutError`` when none came free."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self.limit and not self._waiters:
                self._in_use += 1
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except BaseException:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # the slot arrived as the wait ended: it is not ours to keep
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter if there is one, else to the pool."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its loop is closed, so nobody waits there any more
                    continue
                waiter.granted = True
                return
            if self._in_use <= 0:
                raise RuntimeError("RunSlots.release() called more often than acquire()")
            self._in_use -= 1

"""A counting semaphore shared by every thread and every event loop of a process.

Sync callers reach tools and the sandbox through a fresh event loop per call (often on its own thread) and async
callers through their own loop, so neither an ``asyncio.Semaphore`` (bound to one loop) nor a blocking
``threading.Semaphore`` (which would stall a loop) can hold a per-process cap. :class:`CrossLoopSemaphore` keeps the
count under a thread lock and wakes a waiter on the waiter's own loop.

Waiters are served first come, first served. A waiter that gives up (timeout or cancellation) leaves the queue, and
a slot handed to it as it gave up is passed on. A waiter whose loop was closed while it waited (an inline run cut
off mid-wait) is skipped: :meth:`CrossLoopSemaphore.release` never fails because of somebody else's dead loop, so
the holder that releases (a tool call that succeeded) is not reported failed. (A slot handed to a waiter whose loop
is then closed without cancelling it stays taken; ``asyncio.run`` cancels its tasks before closing, so only a loop
closed by hand can do that.)
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field

__all__ = ["CrossLoopSemaphore"]


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = field(default=False)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CrossLoopSemaphore:
    """At most ``limit`` holders at once, across threads and event loops; :meth:`acquire` waits without blocking
    its loop."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a semaphore limit must be at least 1, got {limit}")
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

    async def acquire(self) -> None:
        """Take a slot, waiting as long as it takes; bound the wait with ``asyncio.timeout`` (a waiter that gives up
        leaves the queue)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self.limit and not self._waiters:
                self._in_use += 1
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except GeneratorExit:
            # Closed without its loop running: the loop is gone (release() skips or has skipped this waiter), and
            # a finaliser may run in a thread that holds the lock, so touch nothing.
            raise
        except BaseException:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # the slot arrived as the wait ended: it is not ours to keep
                self.release()
            raise

    def try_acquire(self) -> bool:
        """Take a slot only if one is free and nobody is waiting for one; never waits."""
        with self._lock:
            if self._in_use < self.limit and not self._waiters:
                self._in_use += 1
                return True
            return False

    def release(self) -> None:
        """Give a slot back: to the longest waiter whose loop still runs, else to the pool."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:  # under the lock: a waiter giving up sees either "still queued" or "granted", never a gap
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its loop is closed, so nobody waits there any more
                    continue
                waiter.granted = True
                return
            if self._in_use <= 0:
                raise RuntimeError("CrossLoopSemaphore.release() called more often than acquire()")
            self._in_use -= 1

"""Pre-forked sandbox workers: forked ahead of time and reaped afterwards by one helper thread, off the runs' path.

Each pre-forked worker holds one run slot of the sandbox's :class:`~shared.concurrency.CrossLoopSemaphore` from
before it is forked until it is reaped, exactly like a run's own worker, so the live workers of a sandbox never
exceed ``Capacity.max_concurrent_runs``. The helper forks only into a slot nobody is waiting for
(``try_acquire``), and gives a new worker's slot back at once when a run started waiting meanwhile. An idle worker
has applied every confinement layer that needs nothing from the job (fds, network namespace, uid, empty environment,
the fixed rlimits, the seccomp filter but for ``setrlimit``/``prlimit64``), has rehearsed a constant trivial job of
our own to take a first run's copy-on-write page faults (see ``_zygote._rehearse``), and waits for its job; what
takes the job's limits (CPU and memory rlimits, CPU timer, the seal on rlimit changes) follows when the job arrives,
before any of its code runs.

The rehearsal costs CPU; it pays off only when a worker is ready before its run comes. A run that takes a worker
which has not yet written ``READY`` shows runs arriving faster than workers get ready (a burst, or a saturated
machine): the workers forked after it skip the rehearsal, until a run finds its worker ready again.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.concurrency import CrossLoopSemaphore

__all__ = ["Worker", "WorkerPool", "is_ready"]

logger = logging.getLogger(__name__)


def is_ready(channel: socket.socket) -> bool:
    """Whether the worker on ``channel`` has written its ready byte (peeked, not consumed); a broken channel counts
    as ready (the run finds out what happened)."""
    try:
        channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # the byte, or b"" if the worker is gone
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


@dataclass
class Worker:
    """A forked worker waiting for its job on ``channel`` (our end of its socket pair)."""

    zygote: Any
    pid: int
    channel: socket.socket


class WorkerPool:
    """Up to ``size`` idle workers, kept by a helper thread that also reaps finished runs' workers."""

    def __init__(self, slots: CrossLoopSemaphore, size: int, zygote: Callable[[], Any]) -> None:
        self._slots = slots
        self._size = size
        self._zygote = zygote
        self._idle: collections.deque[Worker] = collections.deque()
        self._reap: collections.deque[tuple[Any, int]] = collections.deque()
        self._busy = 0  # slots the helper holds for workers being forked
        self._lock = threading.Lock()
        self._reaped = threading.Condition(self._lock)
        self._reaping = 0
        self._pending = False  # the helper has been woken and has not finished its pass yet
        self._hurry = False  # the last run took a worker that was not ready yet: fork without rehearsal
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def idle(self) -> int:
        """Workers waiting for a run."""
        return len(self._idle)

    @property
    def hurried(self) -> bool:
        """Whether workers are forked without rehearsal now (the last run found its worker not yet ready)."""
        return self._hurry

    @property
    def holding(self) -> int:
        """Run slots held by the pool: idle workers, and workers being forked or reaped."""
        return len(self._idle) + len(self._reap) + self._reaping + self._busy

    def pids(self) -> tuple[int, ...]:
        """Process ids of the idle workers."""
        with self._lock:
            return tuple(worker.pid for worker in self._idle)

    def settle(self, timeout: float) -> bool:
        """Wait until every finished run's worker has been reaped and no worker is being forked; False if that is
        still not so after ``timeout``."""
        with self._reaped:
            return self._reaped.wait_for(
                lambda: not (self._pending or self._reap or self._reaping or self._busy), timeout)

    def take(self) -> Worker | None:
        """An idle worker, with the slot it holds (now the caller's), or None."""
        with self._lock:
            while self._idle:
                worker = self._idle.popleft()
                if worker.zygote.alive:
                    self._hurry = not is_ready(worker.channel)
                    return worker
                worker.channel.close()  # its zygote died, and the worker with it
                self._slots.release()
        return None

    def reap_later(self, zygote: Any, pid: int) -> None:
        """Kill and reap ``pid`` on the helper thread, then release the slot it holds."""
        with self._lock:
            self._reap.append((zygote, pid))
        self.wake()

    def wake(self) -> None:
        """Let the helper reap and top the pool up (starting it on first use)."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-prefork", daemon=True)
                self._thread.start()
            self._pending = True
            self._wake.set()

    def close(self) -> None:
        """Stop the helper, reap what is queued, and drop the idle workers (their zygote's exit ends them)."""
        with self._lock:
            self._closed = True
            self._pending = False
            thread, self._thread = self._thread, None
            idle = list(self._idle)
            self._idle.clear()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self._drain_reaps()
        for worker in idle:
            worker.channel.close()
            self._slots.release()
        with self._lock:
            self._closed = False

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._top_up_one():  # into free slots first: a replacement need not wait for a worker's exit
                pass
            self._drain_reaps()
            with self._lock:
                if self._closed:
                    return
            while self._top_up_one():  # into the slots the reaps gave back
                pass
            with self._lock:
                if not self._wake.is_set():
                    self._pending = False
                    self._reaped.notify_all()

    def _drain_reaps(self) -> None:
        while True:
            with self._lock:
                if not self._reap:
                    return
                zygote, pid = self._reap.popleft()
                self._reaping += 1
            try:
                zygote.finish(pid)
            except ConnectionError:
                logger.warning("sandbox worker %s could not be reaped; the zygote was replaced", pid)
            finally:
                self._slots.release()
                with self._lock:
                    self._reaping -= 1
                    self._reaped.notify_all()

    def _top_up_one(self) -> bool:
        """Fork one idle worker if the pool is short and a slot is free; whether to try another."""
        with self._lock:
            if self._closed or len(self._idle) + self._busy >= self._size or self._slots.waiting:
                return False
            if not self._slots.try_acquire():
                return False
            self._busy += 1
        worker: Worker | None = None
        try:
            zygote = self._zygote()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pid = zygote.spawn(theirs, rehearse=not self._hurry)
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            worker = Worker(zygote, pid, ours)
        except Exception as exc:  # the next run forks on demand and reports what is wrong
            logger.warning("sandbox: could not pre-fork a worker: %s", exc)
        with self._lock:
            keep = worker is not None and not self._closed and not self._slots.waiting
            if keep and worker is not None:
                self._idle.append(worker)
                self._busy -= 1
                self._reaped.notify_all()
                return True
        if worker is not None:  # a run started waiting for a slot meanwhile: it gets this one
            worker.channel.close()
            with contextlib.suppress(ConnectionError):
                worker.zygote.finish(worker.pid)
        self._slots.release()
        with self._lock:
            self._busy -= 1
            self._reaped.notify_all()
        return False

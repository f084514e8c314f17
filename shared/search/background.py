"""Background work that the interpreter waits for at exit (bounded).

ONNX Runtime aborts the whole process ("terminate called without an active exception") when the interpreter is
torn down while a daemon thread is inside an inference, for example an index warm-up that started just before the
process ends. Threads started here are daemons, so they never keep a process alive on their own, but an ``atexit``
hook gives each up to ``exit_wait_s`` to finish first.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["run_in_background"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_running: dict[threading.Thread, float] = {}
_registered = False


def run_in_background(target: Callable[[], object], *, name: str, exit_wait_s: float) -> threading.Thread:
    """Start ``target`` on a daemon thread; at interpreter exit wait up to ``exit_wait_s`` for it. Exceptions are
    logged (type only: they may carry tool text), not raised."""
    global _registered

    def run() -> None:
        try:
            target()
        except Exception as exc:  # a background failure must not vanish silently, nor kill anything else
            logger.warning("background task %s failed: %s", name, type(exc).__name__)
        finally:
            with _lock:
                _running.pop(threading.current_thread(), None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _lock:
        _running[thread] = exit_wait_s
        if not _registered:
            atexit.register(_wait_at_exit)
            _registered = True
    thread.start()
    return thread


def _wait_at_exit() -> None:
    with _lock:
        running = list(_running.items())
    for thread, wait_s in running:
        deadline = time.monotonic() + wait_s
        thread.join(max(0.0, deadline - time.monotonic()))

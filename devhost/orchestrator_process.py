"""The app's orchestrator functions run in a child process, as the Functions host runs them in a language worker.

On Azure the Durable extension (in the host) keeps histories and schedules work, and the Python worker only replays
the orchestrator: it gets the orchestration context as JSON and answers with the orchestrator state as JSON. This
module puts that boundary between two processes, so that the host's work (HTTP, the Durable API, storage) and the
replays use two cores instead of sharing one interpreter lock. The child imports the app from the same folder and
calls the same SDK handles; what crosses the pipe are the two JSON strings. With ``FUNCTIONS_WORKER_PROCESS_COUNT``
and several instances, Azure runs an app's functions in several processes too, so app code that relied on sharing
memory between an orchestrator and an HTTP trigger would fail there as it does here.

A child that dies is started again, and the replay it was running is sent again once: an orchestrator replay has no
side effects, and the host retries a work item whose worker crashed.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["OrchestratorProcess", "RemoteOrchestratorError"]

log = logging.getLogger(__name__)


class RemoteOrchestratorError(Exception):
    """An orchestrator raised in the child: its message, and the name of its exception type."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def _serve(app_dir: str, conn: Connection) -> None:
    """The child's loop: replay what the parent sends until the pipe closes."""
    from devhost.host import patch_sdk
    from devhost.index import load_app

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the host, which then closes the pipe
    orchestrators: Mapping[str, Callable[[str], str]] = load_app(app_dir).orchestrators
    patch_sdk()
    conn.send(("ready",))
    while True:
        try:
            name, context = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", orchestrators[name](context)))
        except Exception as exc:  # the parent reports it as the in-process devhost would
            conn.send(("raised", type(exc).__name__, str(exc)))


class OrchestratorProcess:
    """One child process that replays the app's orchestrators; :meth:`handles` stand in for the SDK handles.

    The child imports the app while the host starts (not on the host's start-up path); the first replay waits for it.
    """

    def __init__(self, app_dir: str | Path, names: Iterable[str], start_timeout_s: float = 120.0) -> None:
        self.app_dir = str(Path(app_dir).resolve())
        self.names = sorted(names)
        self.start_timeout_s = start_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: Any = None
        self._ready = False

    def start(self) -> OrchestratorProcess:
        with self._lock:
            self._spawn()
        return self

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(self.app_dir, child), name="devhost-orchestrators",
                                        daemon=True)
        process.start()
        child.close()
        self._conn, self._process, self._ready = parent, process, False

    def wait_ready(self) -> None:
        """Block until the child has imported the app (the first replay otherwise waits for it)."""
        with self._lock:
            if self._conn is None:
                self._spawn()
            assert self._conn is not None
            if not self._ready:
                self._wait_ready(self._conn)

    def _wait_ready(self, conn: Connection) -> None:
        if not conn.poll(self.start_timeout_s):
            raise RuntimeError(f"the orchestrator process did not start within {self.start_timeout_s:g} s")
        conn.recv()
        self._ready = True

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._process is not None:
                self._process.join(timeout=5)
                if self._process.is_alive():
                    self._process.kill()
            self._conn = self._process = None

    def handles(self) -> dict[str, Callable[[str], str]]:
        """One callable per orchestrator name: ``handle(context_json) -> state_json``, run in the child."""
        return {name: self._handle(name) for name in self.names}

    def _handle(self, name: str) -> Callable[[str], str]:
        def handle(context: str) -> str:
            return self._call(name, context)
        return handle

    def _call(self, name: str, context: str) -> str:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._spawn()
                conn = self._conn
                assert conn is not None
                try:
                    if not self._ready:
                        self._wait_ready(conn)
                    conn.send((name, context))
                    reply = conn.recv()
                    break
                except (EOFError, OSError) as exc:
                    log.warning("the orchestrator process ended (attempt %d of 2); starting it again", attempt)
                    conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise RuntimeError("the orchestrator process ended twice while replaying this") from exc
        if reply[0] == "ok":
            return str(reply[1])
        raise RemoteOrchestratorError(reply[1], reply[2])

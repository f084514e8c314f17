"""Orchestrators replayed in a child process: what crosses the pipe, and a child that dies.

The whole engine suite (test_engine.py) also runs against the child process, through the ``host`` fixture.
"""

from __future__ import annotations

import os
import signal

from devhost.host import DevHost
from tests.support import wait_until
from tests.unit.devhost.conftest import make_host


def _child_pid(host: DevHost) -> int:
    assert host.orchestrator_process is not None
    host.orchestrator_process.wait_ready()
    process = host.orchestrator_process._process
    assert process is not None and process.pid is not None
    return int(process.pid)


def test_replays_run_in_the_child_and_a_killed_child_is_started_again() -> None:
    host = make_host(orchestrator_process=True).start()
    try:
        pid = _child_pid(host)
        assert pid != os.getpid()
        first = host.wait_for(host.start_new("sequence"), 30)
        assert first["runtimeStatus"] == "Completed" and first["output"] == [4, 16, 9]

        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not host.orchestrator_process._process.is_alive(), 10)  # type: ignore[union-attr]
        second = host.wait_for(host.start_new("sequence"), 30)
        assert second["runtimeStatus"] == "Completed" and second["output"] == [4, 16, 9]
        assert _child_pid(host) != pid
    finally:
        host.stop()


def test_stop_ends_the_child() -> None:
    host = make_host(orchestrator_process=True).start()
    pid = _child_pid(host)
    process = host.orchestrator_process._process  # type: ignore[union-attr]
    host.stop()
    assert not process.is_alive()
    assert pid != os.getpid()

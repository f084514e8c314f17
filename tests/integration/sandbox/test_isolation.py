"""The process layer seen from outside: the zygote's environment, restarts, strict confinement."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from shared.errors import NotConfigured
from shared.sandbox import Confinement, ProcessSandbox

from .conftest import Canaries


def test_the_zygote_holds_no_secret_from_the_parent_environment(policy_on: ProcessSandbox,
                                                                canaries: Canaries) -> None:
    environ = Path(f"/proc/{policy_on.zygote_pid}/environ").read_bytes().split(b"\0")
    names = sorted(entry.split(b"=", 1)[0].decode() for entry in environ if entry)
    assert names == ["LANG", "PYTHONHASHSEED", "TZ"]
    assert canaries.env_token.encode() not in Path(f"/proc/{policy_on.zygote_pid}/environ").read_bytes()
    command = psutil.Process(policy_on.zygote_pid).cmdline()
    assert command[1:3] == ["-I", "-S"]


def test_a_dead_zygote_is_replaced_on_the_next_run() -> None:
    sandbox = ProcessSandbox()
    try:
        first = sandbox.zygote_pid
        os.kill(first, signal.SIGKILL)
        psutil.Process(first).wait(timeout=5)
        assert sandbox.run("'still working'", {}).result == "still working"
        assert sandbox.zygote_pid != first
    finally:
        sandbox.close()


def test_a_zygote_that_stops_answering_is_replaced_before_the_run_starts() -> None:
    sandbox = ProcessSandbox()
    try:
        broken = sandbox.zygote_pid
        sandbox._ensure_zygote()._socket.close()  # failure injection: the control channel is gone
        assert sandbox.run("'recovered'", {}).result == "recovered"
        assert sandbox.zygote_pid != broken
        assert not psutil.pid_exists(broken) or psutil.Process(broken).status() == psutil.STATUS_ZOMBIE
    finally:
        sandbox.close()


def test_a_closed_sandbox_starts_again_when_used() -> None:
    sandbox = ProcessSandbox()
    try:
        first = sandbox.zygote_pid
        sandbox.close()
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
        assert sandbox.run("2 + 2", {}).result == 4
    finally:
        sandbox.close()


def test_require_seccomp_refuses_to_run_without_it() -> None:
    sandbox = ProcessSandbox(confinement=Confinement(seccomp=False, require_seccomp=True))
    try:
        with pytest.raises(NotConfigured, match="seccomp could not be installed"):
            sandbox.run("1", {})
    finally:
        sandbox.close()

"""The process layer seen from outside: the zygote's environment, restarts, strict confinement."""

from __future__ import annotations

import os
import platform
import signal
import sys
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
    assert command[1:4] == ["-P", "-s", "-S"]  # not -I: it would ignore PYTHONHASHSEED


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
        with pytest.raises(NotConfigured, match="seccomp layer is required"):
            sandbox.run("1", {})
    finally:
        sandbox.close()


# A launcher that does what a locked-down container does: it installs a seccomp filter under which no further filter
# can be installed (seccomp(2) and prctl(PR_SET_SECCOMP) fail with EPERM), then execs the real interpreter.
NO_SECCOMP_LAUNCHER = """#!{python}
import ctypes, os, sys
class F(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class P(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(F))]
LD, JEQ, RET, EPERM, ALLOW = 0x20, 0x15, 0x06, 0x00050001, 0x7FFF0000
prog = [(LD, 0, 0, 0), (JEQ, 0, 1, 317), (RET, 0, 0, EPERM), (JEQ, 0, 3, 157), (LD, 0, 0, 16), (JEQ, 0, 1, 22),
        (RET, 0, 0, EPERM), (RET, 0, 0, ALLOW)]
filters = (F * len(prog))(*[F(*step) for step in prog])
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(P(len(prog), filters)), 0, 0) == 0
os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""


@pytest.mark.skipif(platform.machine() != "x86_64" or sys.platform != "linux", reason="seccomp filter is x86_64-only")
def test_startup_fails_clearly_where_seccomp_cannot_be_installed(tmp_path: Path) -> None:
    launcher = tmp_path / "python-without-seccomp"
    launcher.write_text(NO_SECCOMP_LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    sandbox = ProcessSandbox(python=str(launcher))  # the defaults: seccomp required on x86_64 Linux
    try:
        with pytest.raises(NotConfigured) as raised:
            sandbox.run("1", {})
        message = raised.value.message
        assert "seccomp layer is required" in message and "could not be installed" in message
        assert "prctl(PR_SET_SECCOMP) failed with errno 1" in message
        assert "WEFT_SANDBOX_REQUIRE_SECCOMP=false" in message
    finally:
        sandbox.close()
    opted_out = ProcessSandbox(python=str(launcher), confinement=Confinement.from_env(
        {"WEFT_SANDBOX_REQUIRE_SECCOMP": "false"}))
    try:
        assert opted_out.run("21 * 2", {}).result == 42
        assert "seccomp" not in opted_out.isolation()
    finally:
        opted_out.close()


def test_seccomp_is_required_by_default_on_x86_64_linux() -> None:
    expected = platform.machine() == "x86_64" and sys.platform == "linux"
    assert Confinement().require_seccomp is expected
    assert Confinement.from_env({}).require_seccomp is expected
    assert Confinement.from_env({"WEFT_SANDBOX_REQUIRE_SECCOMP": "false"}).require_seccomp is False

"""Canaries and sandboxes for the adversarial suite.

Canaries: a world-readable secret file, a path in a world-writable directory that must never be created, a TCP
listener on 127.0.0.1 that must never be connected to, and a token in this process's environment that must never
reach sandboxed code. The sandboxes are created after the token is set, so the zygote could inherit it if the
sandbox passed the environment on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from shared.sandbox import Confinement, ProcessSandbox


@dataclass
class Canaries:
    secret_path: Path
    secret: str
    touch_path: Path
    listener: socket.socket
    env_name: str
    env_token: str
    secret_stat: tuple[int, int, int]

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def fill(self, template: str) -> str:
        return (
            template.replace("{secret_path}", str(self.secret_path))
            .replace("{touch_path}", str(self.touch_path))
            .replace("{port}", str(self.port))
            .replace("{env_name}", self.env_name)
        )

    def breaches(self, *outputs: object) -> list[str]:
        """Every canary that was touched, plus any secret that shows up in ``outputs``."""
        found = []
        current = self.secret_path.stat()
        if self.secret_path.read_text() != self.secret or (
            current.st_mode, current.st_mtime_ns, current.st_ino
        ) != self.secret_stat:
            found.append("secret file changed")
        if os.path.lexists(self.touch_path):
            found.append("touch path created")
        with contextlib.suppress(BlockingIOError):
            connection, _ = self.listener.accept()
            connection.close()
            found.append("listener was connected to")
        text = " ".join(repr(o) for o in outputs)
        if self.secret in text:
            found.append("secret file content leaked")
        if self.env_token in text:
            found.append("environment token leaked")
        return found


@pytest.fixture(scope="session")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canaries]:
    base = tmp_path_factory.mktemp("canaries")
    base.chmod(0o755)
    secret = f"SECRET-{secrets.token_hex(16)}"
    secret_path = base / "secret.txt"
    secret_path.write_text(secret)
    secret_path.chmod(0o644)
    writable = base / "open-to-all"
    writable.mkdir()
    writable.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO | stat.S_ISVTX)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    env_name, env_token = "WEFT_CANARY_TOKEN", f"TOKEN-{secrets.token_hex(16)}"
    os.environ[env_name] = env_token
    st = secret_path.stat()
    try:
        yield Canaries(secret_path, secret, writable / "pwned", listener, env_name, env_token,
                       (st.st_mode, st.st_mtime_ns, st.st_ino))
    finally:
        os.environ.pop(env_name, None)
        listener.close()


def _sandbox(canaries: Canaries, **kwargs: object) -> Iterator[ProcessSandbox]:
    assert os.environ.get(canaries.env_name) == canaries.env_token
    executor = ProcessSandbox(**kwargs)  # type: ignore[arg-type]
    assert executor.zygote_pid > 0  # start the zygote now, while the token is in the environment
    yield executor
    executor.close()


@pytest.fixture(scope="session")
def policy_on(canaries: Canaries) -> Iterator[ProcessSandbox]:
    """The production configuration: AST policy and every OS layer."""
    yield from _sandbox(canaries)


@pytest.fixture(scope="session")
def policy_off(canaries: Canaries) -> Iterator[ProcessSandbox]:
    """No AST policy: only the worker process stands between the code and the canaries."""
    yield from _sandbox(canaries, check_policy=False)


@pytest.fixture(scope="session")
def fallback(canaries: Canaries) -> Iterator[ProcessSandbox]:
    """No AST policy and no seccomp: what holds where the filter cannot be installed."""
    yield from _sandbox(canaries, check_policy=False, confinement=Confinement(seccomp=False, require_seccomp=False))


def live_workers(sandbox: ProcessSandbox) -> list[int]:
    """Worker processes of runs still alive under the sandbox's zygote: finished runs' workers are reaped just after
    the run returns (waited for here); pre-forked idle workers, which have run nothing, are not counted."""
    assert sandbox.settle(), "finished runs' workers were not reaped"
    idle = set(sandbox.idle_worker_pids)
    return [p.pid for p in psutil.Process(sandbox.zygote_pid).children(recursive=True) if p.pid not in idle]

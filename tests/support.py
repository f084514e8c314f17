"""Test helpers that start real local servers: Azurite and devhost processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Azurite:
    """A running Azurite with its own ports and in-memory state."""

    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes]
    workdir: str = ""

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/devstoreaccount1;"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/devstoreaccount1;"
        )

    def stop(self) -> None:
        self.process.terminate()  # Azurite often ignores SIGTERM; its in-memory state needs no clean shutdown
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_azurite() -> Azurite:
    if not AZURITE_BIN.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "azurite.sh"), "install"], check=True)
    ports = [free_port() for _ in range(3)]
    workdir = tempfile.mkdtemp(prefix="azurite-")
    proc = subprocess.Popen(
        [
            str(AZURITE_BIN), "--silent", "--skipApiVersionCheck", "--loose", "--inMemoryPersistence",
            "--blobHost", "127.0.0.1", "--blobPort", str(ports[0]),
            "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
            "--tableHost", "127.0.0.1", "--tablePort", str(ports[2]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    for port in ports:
        wait_port(port, 30, proc)
    return Azurite(*ports, process=proc, workdir=workdir)


@dataclass
class DevhostProcess:
    """``python -m devhost serve`` in a child process (so it can be killed like a real host)."""

    app_dir: Path
    db: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DevhostProcess:
        self.log_path = self.db.with_suffix(f".{int(time.time() * 1000)}.log")
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(self.app_dir), "--db", str(self.db),
             "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, 60, self.process)
        return self

    def kill(self) -> None:
        """``kill -9``: no cleanup, exactly like a crashed host."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def devhost_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "DEVHOST_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, str], Any]:
    """A tiny HTTP client for tests: returns (status, headers, parsed JSON body or text)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, rh = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, rh = err.code, err.read(), dict(err.headers)
    text = raw.decode(errors="replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    return status, rh, parsed


def wait_until(probe: Callable[[], T], timeout: float = 30.0, what: str = "the expected state",
               interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy (returned), for at most ``timeout`` seconds: tests wait for
    the state they claim, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {what} after {timeout}s (last probe: {value!r})")
        time.sleep(interval)


TASK_SCHEDULED = 4
"""``EventType`` of a TaskScheduled history event (an activity handed to a worker)."""


def history(base_url: str, instance_id: str) -> list[dict[str, Any]]:
    """An orchestration instance's history events, from the Durable HTTP API (``showHistory=true``)."""
    status, _, body = http("GET", f"{base_url}/runtime/webhooks/durabletask/instances/{instance_id}?showHistory=true")
    return (body.get("historyEvents") or []) if status in (200, 202) and isinstance(body, dict) else []


def copy_app(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", ".devhost"))
    return dst


def reset_durable_http_session() -> None:
    """Forget the Durable SDK's process-wide aiohttp session: it belongs to the event loop that created it, and a
    test that runs the real client with ``asyncio.run`` more than once (or after another test did) needs a new one.
    The Functions worker has one loop for its life, so the app never meets this."""
    from azure.durable_functions.models.utils import http_utils

    http_utils._client_session = None  # type: ignore[attr-defined]
    http_utils._session_lock = asyncio.Lock()


NODE_MODULES = ROOT / ".tools" / "node" / "node_modules"


def staged_node_script(script: Path, folder: Path) -> Path:
    """``script`` copied into ``folder`` beside a link to the pinned npm packages (``scripts/node_tools.sh``): ESM
    resolves packages from the script's own folder. Skips the calling test when Node.js is not installed."""
    import pytest

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    subprocess.run(["bash", str(ROOT / "scripts" / "node_tools.sh"), "install"], check=True, timeout=300)
    shutil.copy(script, folder / script.name)
    os.symlink(NODE_MODULES, folder / "node_modules")
    return folder / script.name

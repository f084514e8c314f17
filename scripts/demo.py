"""The main job, locally: start the devhost on the app, submit a job over HTTP, print the completed run.

Uses only embedded defaults: no Azure account, no LLM endpoint, state in a temporary SQLite file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_JOB = {"items": ["weft", "durable", "fan-out", 42, "tools"]}


def request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the devhost exited early with code {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("demo: the devhost did not start listening in time")


def main() -> int:
    port = int(os.environ.get("WEFT_DEMO_PORT") or free_port())
    state = Path(tempfile.mkdtemp(prefix="weft-demo-")) / "state.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT), AzureWebJobsStorage="")
    log = open(state.with_suffix(".log"), "wb")  # noqa: SIM115 - lives as long as the child process
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--db", str(state), "serve", "--port", str(port), "--no-queues"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_listening(port, proc)
        base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        code, body = request("POST", f"{base}/api/jobs/fan_out", DEMO_JOB)
        if code != 202:
            print(f"demo: submitting the job failed with HTTP {code}: {body}", file=sys.stderr)
            return 1
        status_url = body["statusQueryGetUri"]
        print(f"submitted run {body['id']} (HTTP 202); polling {status_url.split('?')[0]}")
        while True:
            code, status = request("GET", status_url)
            if status and status.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        print(f"run {status['instanceId']}: {status['runtimeStatus']} in {elapsed:.2f} s")
        output = status.get("output") or {}
        for row in output.get("results", []):
            print(f"  {json.dumps(row['item']):<12} length={row['length']:<3} upper={row['upper']}")
        return 0 if status["runtimeStatus"] == "Completed" else 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())

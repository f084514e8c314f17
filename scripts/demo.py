"""The main job, locally: start the devhost on the app, submit the demo plan over HTTP, print the completed run.

Uses only embedded defaults: no Azure account, no LLM endpoint; state in a temporary folder.
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
DEMO_PLAN = ROOT / "examples" / "demo_plan.json"


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


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the devhost exited early with code {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("demo: the devhost did not start listening in time")


def short(value: Any, width: int = 58) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_run(view: dict[str, Any]) -> None:
    result = view["result"] or {}
    print(f"\nrun {view['id']}: {view['status']} in {result.get('elapsed_ms', 0):.0f} ms "
          f"({len(result.get('steps', []))} steps)")
    print(f"{'step':<11} {'tool':<19} {'status':<10} {'tries':>5} {'ms':>7}  result")
    for step in result.get("steps", []):
        shown = step["result"] if step["status"] == "succeeded" else (step.get("error") or {}).get("message")
        print(f"{step['step_id']:<11} {step['tool']:<19} {step['status']:<10} {step['attempts']:>5} "
              f"{step['latency_ms']:>7.1f}  {short(shown)}")
    table = (result.get("output") or {}).get("table", {})
    if isinstance(table, dict) and isinstance(table.get("table"), str):
        print("\n" + table["table"])


def main() -> int:
    port = int(os.environ.get("WEFT_DEMO_PORT") or free_port())
    work = Path(tempfile.mkdtemp(prefix="weft-demo-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), AzureWebJobsStorage="", WEFT_STATE_DIR=str(work / "state"),
               WEFT_PAYLOAD_DIR=str(work / "payloads"))
    log = open(work / "devhost.log", "wb")  # noqa: SIM115 - lives as long as the child process
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--db", str(work / "state.sqlite"), "serve", "--port", str(port),
         "--no-queues"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_listening(port, proc)
        base = f"http://127.0.0.1:{port}"
        plan = json.loads(DEMO_PLAN.read_text())
        code, body = request("POST", f"{base}/api/runs", plan)
        if code != 202:
            print(f"demo: POST /api/runs answered HTTP {code}: {body}", file=sys.stderr)
            return 1
        print(f"POST /api/runs -> 202, run {body['id']}; polling {body['statusUrl']}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            code, view = request("GET", body["statusUrl"])
            if code == 200:
                break
            time.sleep(0.05)
        else:
            print("demo: the run did not finish in 120 s", file=sys.stderr)
            return 1
        print_run(view)
        return 0 if view["status"] == "completed" else 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())

"""Plan scheduling end to end: uneven DAGs against their critical path, and how a chain's per-step cost grows.

Run: python -m benchmarks.plan_dag_bench [--repeat N] [--cases uneven,diamond,chains,wide] [--chains 50,200,1000]
Each run is POSTed to a devhost process over HTTP and polled every 10 ms until it is done, once ``GET /api/ready``
says the app is ready (the search index built). Prints medians of the wall time (submit → completed, seen by the
client) and of the run's own ``elapsed_ms`` (the orchestrator's start → end), the critical path (the sum of the
``slow`` delays along the longest path) and the load average, so figures taken on a shared machine can be judged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import DevhostProcess, devhost_env, free_port, http  # noqa: E402


def slow(step_id: str, ms: int, *after: str) -> dict[str, Any]:
    return {"id": step_id, "tool": "slow", "args": {"delay_ms": ms}, "depends_on": list(after)}


def uneven() -> tuple[list[dict[str, Any]], int]:
    """A 5 x 100 ms chain beside one 500 ms step, both feeding a join (critical path 500 ms + the join)."""
    chain = [slow("c1", 100)] + [slow(f"c{i}", 100, f"c{i - 1}") for i in range(2, 6)]
    join = {"id": "join", "tool": "calculate", "args": {"expression": "1+1"}, "depends_on": ["c5", "long"]}
    return [*chain, slow("long", 500), join], 500


def diamond() -> tuple[list[dict[str, Any]], int]:
    """a → (b: 400 ms | c → e: 2 x 100 ms) → d: the slow arm decides (critical path 100 + 400 + 100 ms)."""
    return [slow("a", 100), slow("b", 400, "a"), slow("c", 100, "a"), slow("e", 100, "c"),
            slow("d", 100, "b", "e")], 600


def chain(n: int) -> list[dict[str, Any]]:
    steps = [{"id": "s0", "tool": "calculate", "args": {"expression": "1"}}]
    steps += [{"id": f"s{i}", "tool": "calculate", "args": {"expression": f"{i}+1"}, "depends_on": [f"s{i - 1}"]}
              for i in range(1, n)]
    return steps


def ref_chain(n: int) -> list[dict[str, Any]]:
    """A chain whose every step reads its predecessor's result by ``$ref`` (the values must travel intact)."""
    steps = [{"id": "s0", "tool": "hash_text", "args": {"text": "weft"}}]
    steps += [{"id": f"s{i}", "tool": "hash_text", "args": {"text": {"$ref": f"s{i - 1}.hex"}}} for i in range(1, n)]
    return steps


def wide(n: int) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "tool": "calculate", "args": {"expression": f"{i}*2"}} for i in range(n)]


def run_once(host: DevhostProcess, steps: list[dict[str, Any]], timeout: float = 1800,
             poll_s: float = 0.01) -> tuple[float, float]:
    """(wall s seen by the client, the run's own elapsed s)."""
    started = time.perf_counter()
    status, _, reply = http("POST", host.base_url + "/api/runs", {"mode": "plan", "plan": {"steps": steps}})
    assert status == 202, reply
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, _, view = http("GET", f"{host.base_url}/api/runs/{reply['id']}", timeout=30)
        if code == 200:
            elapsed = time.perf_counter() - started
            assert view["status"] == "completed", view.get("errors", [])[:3]
            return elapsed, view["result"]["elapsed_ms"] / 1000.0
        time.sleep(poll_s)
    raise TimeoutError(f"run {reply['id']} not done after {timeout} s")


def wait_ready(host: DevhostProcess, timeout: float = 300) -> None:
    """Until ``GET /api/ready`` answers 200: the search index is built on a background thread at start-up, and its
    embedding work would otherwise share the cores with the first runs measured."""
    deadline = time.monotonic() + timeout
    while http("GET", host.base_url + "/api/ready", timeout=30)[0] != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the devhost was not ready after {timeout} s")
        time.sleep(0.2)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default="uneven,diamond,chains,wide")
    parser.add_argument("--chains", default="50,200,1000")
    parser.add_argument("--wide", default="1000")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    work = Path(tempfile.mkdtemp(prefix="weft-dag-bench-"))
    env = devhost_env({"AzureWebJobsStorage": "", "WEFT_STATE_DIR": str(work / "state"),
                       "WEFT_PAYLOAD_DIR": str(work / "payloads")})
    env.update({k: v for k, v in os.environ.items() if k.startswith("WEFT_PLAN_")})
    host = DevhostProcess(ROOT, work / "devhost.sqlite", free_port(), env).start()
    try:
        wait_ready(host)
        run_once(host, wide(20))  # warm-up
        print(f"plan scheduling over HTTP on the devhost (median of {args.repeat}; {os.cpu_count()} cores; {load()})")
        for name, build in (("uneven", uneven), ("diamond", diamond)):
            if name not in cases:
                continue
            steps, critical_ms = build()
            runs = [run_once(host, steps) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            own = statistics.median(r[1] for r in runs)
            print(f"{name:<8} critical path {critical_ms / 1000:.3f} s | wall {wall:.3f} s "
                  f"(x{wall * 1000 / critical_ms:.2f}) | run elapsed {own:.3f} s (x{own * 1000 / critical_ms:.2f}) "
                  f"| min wall {min(r[0] for r in runs):.3f} s | {load()}")
        if "chains" in cases:
            base = None
            for n in (int(x) for x in args.chains.split(",")):
                repeat = args.repeat if n <= 200 else max(1, args.repeat // 2)
                # polled every 0.25 s: a 10 ms poll of a long run reads its growing state 100 times a second
                runs = [run_once(host, chain(n), poll_s=0.25) for _ in range(repeat)]
                own = statistics.median(r[1] for r in runs)
                per_step = own / n * 1000
                base = base or per_step
                print(f"chain {n:>5} steps: run elapsed {own:.2f} s, {per_step:.1f} ms/step (x{per_step / base:.2f} "
                      f"of the first) | wall {statistics.median(r[0] for r in runs):.2f} s | {load()}")
            if "refs" in cases:
                wall, _ = run_once(host, ref_chain(300))
                print(f"$ref chain 300 steps: wall {wall:.2f} s ({wall / 300 * 1000:.1f} ms/step)")
        if "wide" in cases:
            for n in (int(x) for x in args.wide.split(",")):
                runs = [run_once(host, wide(n)) for _ in range(max(1, args.repeat // 2 + 1))]
                wall = statistics.median(r[0] for r in runs)
                print(f"wide {n:>5} steps: wall {wall:.3f} s ({wall / n * 1000:.2f} ms/step), "
                      f"min {min(r[0] for r in runs):.3f} s | {load()}")
    finally:
        host.stop()


if __name__ == "__main__":
    main()

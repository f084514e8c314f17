"""Plan-mode throughput end to end: HTTP POST /api/runs on a devhost process until the run is reported done.

Run: python -m benchmarks.plan_bench [--repeat N] [--quick]
Cases: wide plans (one level of N independent steps) and deep plans (a chain of N steps) of 10/100/1,000 steps,
10 parallel slow(100 ms) steps, and 50 concurrent runs of a 10-step plan. Prints medians and growth with size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import DevhostProcess, devhost_env, free_port, http  # noqa: E402


def wide(n: int) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "tool": "calculate", "args": {"expression": f"{i}*2"}} for i in range(n)]


def deep(n: int) -> list[dict[str, Any]]:
    steps = [{"id": "s0", "tool": "calculate", "args": {"expression": "1"}}]
    steps += [{"id": f"s{i}", "tool": "calculate", "args": {"expression": f"{i}+1"}, "depends_on": [f"s{i - 1}"]}
              for i in range(1, n)]
    return steps


def run_once(host: DevhostProcess, steps: list[dict[str, Any]], poll_s: float = 0.005) -> float:
    started = time.perf_counter()
    status, _, reply = http("POST", host.base_url + "/api/runs", {"mode": "plan", "plan": {"steps": steps}})
    assert status == 202, reply
    while True:
        code, _, view = http("GET", reply["statusUrl"])
        if code == 200:
            elapsed = time.perf_counter() - started
            assert view["status"] == "completed", view["errors"][:3]
            return elapsed
        time.sleep(poll_s)


def concurrent_runs(host: DevhostProcess, count: int, steps: list[dict[str, Any]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        elapsed = run_once(host, steps, poll_s=0.02)
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the 1,000-step deep plan")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="weft-plan-bench-"))
    env = devhost_env({"AzureWebJobsStorage": "", "WEFT_STATE_DIR": str(work / "state"),
                       "WEFT_PAYLOAD_DIR": str(work / "payloads")})
    host = DevhostProcess(ROOT, work / "devhost.sqlite", free_port(), env).start()
    try:
        run_once(host, wide(20))  # warm-up
        print(f"plan mode over HTTP on the devhost (median of {args.repeat}; store {work / 'devhost.sqlite'})")
        print(f"{'shape':<6} {'steps':>6} {'median s':>9} {'min s':>7} {'ms/step':>8}  growth")
        for shape, build in (("wide", wide), ("deep", deep)):
            previous = None
            for n in (10, 100, 1000):
                if shape == "deep" and n == 1000 and args.quick:
                    continue
                repeat = args.repeat if n < 1000 else max(1, args.repeat // 2 if shape == "wide" else 1)
                times = [run_once(host, build(n)) for _ in range(repeat)]
                median = statistics.median(times)
                growth = "" if previous is None else f"x{median / previous:.1f} for x10 steps"
                print(f"{shape:<6} {n:>6} {median:>9.3f} {min(times):>7.3f} {median / n * 1000:>8.2f}  {growth}")
                previous = median
        slow = [{"id": f"s{i}", "tool": "slow", "args": {"delay_ms": 100}} for i in range(10)]
        times = [run_once(host, slow) for _ in range(args.repeat)]
        print(f"10 parallel slow(100 ms) steps: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f} s; sequential sum 1.000 s)")
        ten = wide(4) + [{"id": f"d{i}", "tool": "calculate", "args": {"expression": f"{i}"},
                          "depends_on": ["s0", "s1"]} for i in range(6)]
        total, latencies = concurrent_runs(host, 50, ten)
        print(f"50 concurrent 10-step runs: all {len(latencies)} completed in {total:.2f} s -> "
              f"{len(latencies) / total:.1f} runs/s, {len(latencies) * 10 / total:.0f} steps/s; "
              f"run latency median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s")
    finally:
        host.stop()


if __name__ == "__main__":
    main()

"""Sandbox benchmark: per-run overhead, throughput, fork-per-run vs pre-forked workers, inline vs replay.

Run: ``.venv/bin/python benchmarks/sandbox_bench.py [--quick]``. Prints one line per measurement (medians, and
p50/p95 for the trivial-code overhead) and a JSON summary on the last line. Figures depend on machine load; the
target is trivial-code overhead <= 5 ms p50 with full process isolation (pre-forked workers, see
shared/sandbox/_pool.py).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.sandbox import Limits, ProcessSandbox, RecordedCall, _wire
from shared.sandbox._host import parse_clock

CLOCK = "2025-01-01T00:00:00Z"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def trivial_overhead(sandbox: ProcessSandbox, repeat: int) -> dict[str, float]:
    for _ in range(5):
        sandbox.run("1", {})
    samples = timed(lambda: sandbox.run("1", {}), repeat)
    return {"p50_ms": statistics.median(samples), "p95_ms": percentile(samples, 0.95)}


def throughput(sandbox: ProcessSandbox, threads: int, seconds: float) -> float:
    done = [0] * threads
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            sandbox.run("sum(range(100))", {})
            done[index] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def prefork_vs_fork(sandbox: ProcessSandbox, repeat: int) -> dict[str, float]:
    """Latency of one trivial run on a worker forked on demand vs one forked ahead of time (fork and reap excluded)."""
    zygote = sandbox._ensure_zygote()
    limits = Limits()
    job = {"t": "job", "mode": "inline", "code": "1", "tools": [], "recorded": [], "limits": limits.worker_view(),
           "clock": parse_clock(CLOCK), "seed": 0}

    def exchange(ours: socket.socket) -> None:
        _wire.write_frame(ours.fileno(), job)
        assert _wire.read_frame(ours.fileno(), 1 << 20)["t"] == "done"

    def on_demand() -> float:
        started = time.perf_counter()
        ours, theirs = socket.socketpair()
        pid = zygote.spawn(theirs)
        theirs.close()
        exchange(ours)
        zygote.finish(pid)
        ours.close()
        return (time.perf_counter() - started) * 1000

    def preforked() -> float:
        ours, theirs = socket.socketpair()
        pid = zygote.spawn(theirs)
        theirs.close()
        started = time.perf_counter()
        exchange(ours)
        elapsed = (time.perf_counter() - started) * 1000
        zygote.finish(pid)
        ours.close()
        return elapsed

    fork = [on_demand() for _ in range(repeat)]
    warm = [preforked() for _ in range(repeat)]
    return {"fork_per_run_ms": statistics.median(fork), "preforked_ms": statistics.median(warm)}


def tool_program(calls: int, shape: str) -> str:
    if shape == "gather":
        return f"import asyncio\nsum(await asyncio.gather(*[echo(i) for i in range({calls})]))"
    return f"total = 0\nfor i in range({calls}):\n    total += await echo(i)\ntotal"


def inline(sandbox: ProcessSandbox, code: str, limits: Limits) -> Any:
    return sandbox.run(code, {"echo": lambda i: i}, limits).result


def replay(sandbox: ProcessSandbox, code: str, limits: Limits) -> Any:
    recorded: list[RecordedCall] = []
    while True:
        step = sandbox.step(code, ["echo"], recorded, limits, clock_iso=CLOCK, seed=0)
        if step.done:
            return step.result
        recorded += [RecordedCall.succeeded(call, call.args[0]) for call in step.calls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    options = parser.parse_args()
    repeat = 40 if options.quick else 200
    sandbox = ProcessSandbox()
    summary: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        sandbox.run("1", {})
        summary["zygote_start_ms"] = (time.perf_counter() - started) * 1000
        print(f"zygote start (first run): {summary['zygote_start_ms']:.1f} ms")

        summary["trivial"] = trivial_overhead(sandbox, repeat)
        print(f"trivial code overhead: p50 {summary['trivial']['p50_ms']:.2f} ms, "
              f"p95 {summary['trivial']['p95_ms']:.2f} ms ({repeat} runs)")

        summary["workers"] = prefork_vs_fork(sandbox, max(20, repeat // 4))
        print(f"one trivial run, worker forked on demand: {summary['workers']['fork_per_run_ms']:.2f} ms; "
              f"pre-forked (fork + reap off the clock): {summary['workers']['preforked_ms']:.2f} ms (medians)")

        summary["throughput"] = {}
        for threads in (1, 2, 4):
            rate = throughput(sandbox, threads, 1.5 if options.quick else 4.0)
            summary["throughput"][threads] = rate
            print(f"throughput with {threads} thread(s): {rate:.0f} runs/s")

        summary["tools"] = {}
        limits = Limits(max_tool_calls=200)
        for calls in (10, 100):
            for shape in ("gather", "sequential"):
                code = tool_program(calls, shape)
                expected = sum(range(calls))
                for mode, runner in (("inline", inline), ("replay", replay)):
                    assert runner(sandbox, code, limits) == expected
                    samples = timed(lambda r=runner, c=code: r(sandbox, c, limits), 3 if options.quick else 7)
                    key = f"{calls}-{shape}-{mode}"
                    summary["tools"][key] = statistics.median(samples)
                    print(f"{calls:>3} tool calls, {shape:<10} {mode:<6}: {summary['tools'][key]:8.1f} ms (median)")
    finally:
        sandbox.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

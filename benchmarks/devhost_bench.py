"""devhost throughput: fan-out of trivial activities and parallel sleeping activities, end to end.

Run: python -m benchmarks.devhost_bench [--repeat N]
Prints the median wall time from start_new to Completed, the per-activity overhead and how it grows with size.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from devhost.host import DevHost, HostOptions

APP = Path(__file__).resolve().parent.parent / "tests" / "devhost_app"


def timed_run(host: DevHost, name: str, value: object) -> float:
    started = time.perf_counter()
    status = host.wait_for(host.start_new(name, value), timeout=600)
    elapsed = time.perf_counter() - started
    if status["runtimeStatus"] != "Completed":
        raise RuntimeError(status)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", default=":memory:", help="state store (a file measures SQLite WAL on disk)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    host = DevHost(HostOptions(app_dir=APP, db=args.db, serve_http=False, poll_queues=False, run_timers=False))
    host.start()
    try:
        timed_run(host, "fan_out", {"n": 50})  # warm-up: imports, thread pools
        print(f"devhost fan-out of trivial activities (store {args.db}, median of {args.repeat})")
        print(f"{'activities':>10} {'median s':>9} {'min s':>7} {'per-activity ms':>16} {'episodes':>9}")
        previous = None
        for n in (100, 1000, 5000):
            repeat = args.repeat if n <= 1000 else max(3, args.repeat // 2)
            runs, episodes = [], []
            for _ in range(repeat):
                before = host.engine.episodes
                runs.append(timed_run(host, "fan_out", {"n": n}))
                episodes.append(host.engine.episodes - before)
            median = statistics.median(runs)
            growth = "" if previous is None else f"  x{median / previous[1]:.1f} time for x{n / previous[0]:.0f} size"
            print(f"{n:>10} {median:>9.3f} {min(runs):>7.3f} {median / n * 1000:>16.3f} "
                  f"{statistics.median(episodes):>9.0f}{growth}")
            previous = (n, median)
        for kind, spec in (("sync", {"n": 10, "ms": 100}), ("async", {"n": 10, "ms": 100, "async": True})):
            runs = [timed_run(host, "fan_out", spec) for _ in range(args.repeat)]
            print(f"10 parallel x 100 ms {kind} activities: median {statistics.median(runs):.3f} s "
                  f"(sequential sum 1.000 s; min {min(runs):.3f} s)")
    finally:
        host.stop()


if __name__ == "__main__":
    main()

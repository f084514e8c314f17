"""``GET /api/runs?limit=20`` with 100 runs stored vs with 10,000: the listing pages through the run index, so its
cost should not grow with the number of runs.

Run: python -m benchmarks.runs_list [--requests N] [--real N]

How the stores are filled (quickly, and said as it is): each case starts a devhost on a fresh state folder (local
mode: SQLite run index under WEFT_STATE_DIR, the devhost's SQLite Durable store) and submits ``--real`` runs of a
one-step plan through the API, waiting for each to finish (real index entries, real Durable instances with output).
For the large case the run index is then filled directly with older entries of the same caller, up to 10,000 in all
(the SqliteRunIndex API the app uses; no Durable instances behind them: a page of 20 reads the 20 newest entries and
their 20 statuses by instance id, so instances older than the page are never touched). Prints p50/p95 of the
listing for both, the ratio, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.identity.caller import LOCAL_CALLER  # noqa: E402
from shared.runs.run_index import RunEntry, SqliteRunIndex  # noqa: E402
from tests.support import DevhostProcess, devhost_env, free_port, http, wait_until  # noqa: E402

PLAN = {"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "6 * 7"}}]}}


def fill(state: Path, total: int, real: int) -> None:
    index = SqliteRunIndex(state / "runs.sqlite")
    oldest = datetime.now(UTC) - timedelta(days=30)
    for i in range(total - real):
        index.claim(RunEntry(run_id=f"run-old-{i:06d}", owner=LOCAL_CALLER.key, owner_name=LOCAL_CALLER.name,
                             mode="plan", created_at=oldest + timedelta(seconds=i), request_sha256="0" * 64))


def measure(total: int, real: int, requests: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="weft-runs-list-") as tmp:
        state = Path(tmp)
        env = devhost_env({"AzureWebJobsStorage": "", "WEFT_STATE_DIR": str(state),
                           "WEFT_PAYLOAD_DIR": str(state / "payloads")})
        host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
        try:
            for _ in range(real):
                status, _, links = http("POST", host.base_url + "/api/runs", PLAN)
                assert status == 202, links
                wait_until(lambda id=links["id"]: http("GET", f"{host.base_url}/api/runs/{id}")[0] == 200, 60,
                           "a finished run")
            fill(state, total, real)
            status, _, page = http("GET", host.base_url + "/api/runs?limit=20")
            assert status == 200 and len(page["runs"]) == 20 and page["continuation"], page
            timings = []
            for _ in range(requests):
                started = time.perf_counter()
                status, _, page = http("GET", host.base_url + "/api/runs?limit=20")
                timings.append((time.perf_counter() - started) * 1000)
                assert status == 200
            timings.sort()
            return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]
        finally:
            host.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--real", type=int, default=100)
    args = parser.parse_args()
    results = {total: measure(total, args.real, args.requests) for total in (100, 10_000)}
    for total, (p50, p95) in results.items():
        print(f"GET /api/runs?limit=20 with {total:>6,} runs stored: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms "
              f"({args.requests} requests)")
    print(f"ratio p50 10,000/100: {results[10_000][0] / results[100][0]:.2f}")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

"""Does the first tool search block other requests? Starts the app on a devhost with the search index not warmed at
start (WEFT_SEARCH_WARM_AT_START=false), sends the first ``POST /api/tools/search`` (it loads the embedding model and
builds the index) and meanwhile calls ``GET /api/health`` every 20 ms; prints the health latencies while the search
was in flight (p50/p99/max), the search's own latency, and the machine's load.

Run: python -m benchmarks.first_search [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import DevhostProcess, devhost_env, free_port, http  # noqa: E402


def once() -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as state:
        env = devhost_env({"WEFT_STATE_DIR": state, "WEFT_PAYLOAD_DIR": f"{state}/payloads",
                           "WEFT_SEARCH_WARM_AT_START": "false", "WEFT_SEARCH_CACHE_DIR": f"{state}/embeddings",
                           "AzureWebJobsStorage": ""})
        host = DevhostProcess(ROOT, Path(state) / "devhost.sqlite", free_port(), env).start()
        try:
            assert http("GET", host.base_url + "/api/health")[0] == 200
            done = threading.Event()
            search_ms: list[float] = []

            def search() -> None:
                start = time.perf_counter()
                status, _, body = http("POST", host.base_url + "/api/tools/search",
                                       {"query": "convert kilometres to miles", "k": 3}, timeout=120)
                search_ms.append((time.perf_counter() - start) * 1000)
                assert status == 200, body
                done.set()

            thread = threading.Thread(target=search)
            thread.start()
            health: list[float] = []
            deadline = time.monotonic() + 120
            while not done.is_set() and time.monotonic() < deadline:
                start = time.perf_counter()
                assert http("GET", host.base_url + "/api/health")[0] == 200
                health.append((time.perf_counter() - start) * 1000)
                time.sleep(0.02)
            thread.join()
            return health, search_ms[0]
        finally:
            host.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for _ in range(args.repeat):
        health, search_ms = once()
        ordered = sorted(health)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"first search {search_ms:8.0f} ms; /api/health during it: n={len(health)} "
              f"p50 {statistics.median(health):6.1f} ms  p99 {p99:6.1f} ms  max {max(health):6.1f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

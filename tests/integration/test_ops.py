"""Operations endpoints on the devhost: liveness, readiness (and 503 when a dependency is down), Prometheus metrics."""

from __future__ import annotations

import json
import time

from tests.integration.runs.conftest import run_plan, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http


def test_health_ready_and_metrics(tmp_path) -> None:
    env = weft_env(None, tmp_path, WEFT_SEARCH_CACHE_DIR=str(tmp_path / "emb"))
    host = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    try:
        status, _, body = http("GET", host.base_url + "/api/health")
        assert status == 200 and body["status"] == "ok" and body["uptime_s"] >= 0
        deadline = time.monotonic() + 240
        while True:  # the search index loads in the background; until then the instance is not ready
            status, _, body = http("GET", host.base_url + "/api/ready", timeout=60)
            if status == 200 or time.monotonic() > deadline:
                break
            assert status == 503 and {c["name"]: c["status"] for c in body["checks"]}["search_index"] == "fail"
            time.sleep(0.5)
        assert status == 200, body
        assert str(tmp_path) not in json.dumps(body), "the anonymous body names no path"
        checks = {c["name"]: c for c in body["checks"]}
        assert set(checks) == {"storage", "key_vault", "llm", "catalog", "search_index"}
        assert checks["storage"]["status"] == "ok" and checks["storage"]["latency_ms"] >= 0
        assert checks["llm"]["status"] == "skipped" and "AZURE_OPENAI_ENDPOINT" in checks["llm"]["detail"]
        view = run_plan(host, [{"id": "x", "tool": "calculate", "args": {"expression": "1+1"}},
                               {"id": "y", "tool": "fail_always", "args": {}}])
        assert view["status"] == "completed_with_errors"
        status, headers, text = http("GET", host.base_url + "/api/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'weft_tool_calls_total{outcome="ok",tool="calculate"}' in text
        assert 'weft_tool_calls_total{outcome="tool_failed",tool="fail_always"}' in text
        assert 'weft_runs_total{mode="plan",status="completed_with_errors"}' in text
    finally:
        host.stop()


def test_ready_is_503_when_storage_is_down(tmp_path) -> None:
    dead = free_port()
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;")
    env = weft_env(None, tmp_path, WEFT_PAYLOAD_CONNECTION_STRING=conn, WEFT_READY_TIMEOUT_S="3")
    host = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    try:
        status, _, body = http("GET", host.base_url + "/api/ready", timeout=60)
        assert status == 503
        storage = {c["name"]: c for c in body["checks"]}["storage"]
        assert storage["status"] == "fail" and storage["latency_ms"] < 10_000
    finally:
        host.stop()

"""Retention: finished runs past WEFT_RUN_RETENTION_DAYS lose their history, payloads and index entries; running
runs and recent ones stay. Driven with the real Durable client against the devhost's Durable HTTP API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.durable_functions as df

from devhost.durable_api import client_binding
from shared.payloads import LocalPayloadStore
from shared.runs.retention import PurgeReport, RetentionSettings, purge_expired_runs
from shared.runs.run_index import SqliteRunIndex
from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http, reset_durable_http_session


def test_finished_runs_past_retention_are_purged_with_their_payloads(tmp_path: Path) -> None:
    env = weft_env(None, tmp_path, WEFT_PAYLOAD_INLINE_MAX_BYTES="1024")
    host = DevhostProcess(ROOT, tmp_path / "devhost.sqlite", free_port(), env).start()
    try:
        big = [f"item-{i:04d}-" + "x" * 30 for i in range(200)]  # a result over 1 KiB: stored as a payload
        done = submit(host, {"mode": "plan", "plan": {"steps": [
            {"id": "big", "tool": "sort_list", "args": {"items": big}}]}})["id"]
        assert wait_run(host, done)["status"] == "completed"
        going = submit(host, {"mode": "plan", "plan": {"steps": [
            {"id": "s", "tool": "slow", "args": {"delay_ms": 8000}}]}})["id"]
        payloads = LocalPayloadStore(tmp_path / "payloads")
        assert any((tmp_path / "payloads").glob(f"{done}/*.json"))
        index = SqliteRunIndex(tmp_path / "runs.sqlite")
        hub = host.log().split("task hub ")[-1].split()[0] if "task hub " in host.log() else "weft"
        client = df.DurableOrchestrationClient(client_binding(host.base_url, hub))
        finished = [df.OrchestrationRuntimeStatus(s) for s in ("Completed", "Failed", "Terminated")]

        settings = RetentionSettings(run_retention_days=30)

        async def purge_now_and_in_a_month() -> tuple[PurgeReport, bool, PurgeReport]:
            recent = await purge_expired_runs(client, index, payloads, settings, datetime.now(UTC), finished)
            kept = index.get(done) is not None
            later = await purge_expired_runs(client, index, payloads, settings,
                                             datetime.now(UTC) + timedelta(days=31), finished)
            return recent, kept, later

        reset_durable_http_session()
        recent, kept, report = asyncio.run(purge_now_and_in_a_month())
        assert recent.runs == 0 and kept  # nothing was old enough yet
        assert report.runs == 1 and report.payloads >= 1
        assert index.get(done) is None and not any((tmp_path / "payloads").glob(f"{done}/*"))
        # The host remembered the entry (it served the GETs above); the purge ran in another process.
        assert http("GET", f"{host.base_url}/api/runs/{done}")[0] == 404
        began = time.monotonic()
        assert http("GET", f"{host.base_url}/api/runs/{done}?wait=30", timeout=60)[0] == 404
        assert time.monotonic() - began < 10, "a long poll of a purged run waited instead of answering 404"
        assert http("POST", f"{host.base_url}/api/runs/{done}/cancel")[0] == 404
        assert http("POST", f"{host.base_url}/api/runs/{done}/approve", {"approved": True})[0] == 404
        assert index.get(going) is not None  # still running: kept whatever its age
        assert http("GET", f"{host.base_url}/api/runs/{going}")[0] == 202
    finally:
        host.stop()

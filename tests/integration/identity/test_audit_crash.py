"""kill -9 the devhost while side-effecting tools run: after a restart every run completes, and the audit trail has
a ``tool.execute`` ``started`` record for every execution the outbox saw, so an execution repeated by the crash is
visible there, beside the outcome of the one that reported back."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from shared.identity.audit_store import SqliteAuditStore
from tests.integration.runs.conftest import ends_after_restart, submit, weft_env
from tests.support import ROOT, TASK_SCHEDULED, DevhostProcess, free_port, history, wait_until

RUNS = 6


def _in_flight(host: DevhostProcess, run_id: str) -> bool:
    return any(e["EventType"] == TASK_SCHEDULED and e["Name"] == "call_tool" for e in history(host.base_url, run_id))


def test_every_execution_of_a_side_effecting_tool_is_audited_across_a_crash(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    env = weft_env(None, tmp_path, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(outbox))
    first = DevhostProcess(ROOT, tmp_path / "devhost.sqlite", free_port(), env).start()
    ids = [submit(first, {"mode": "plan", "plan": {"steps": [
        # idempotent: a crash's redelivery runs it again (a non-idempotent tool is not: execution_uncertain)
        {"id": "post", "tool": "post_slowly_idempotent", "args": {"to": f"team-{i}", "delay_ms": 2500}}]}})["id"]
        for i in range(RUNS)]
    wait_until(lambda: all(_in_flight(first, run_id) for run_id in ids), 30, "every post in flight")
    wait_until(lambda: outbox.exists() and len(outbox.read_text().splitlines()) >= RUNS, 30,
               "every post's effect done (the tool is still answering)")
    first.kill()

    views = ends_after_restart(first, env, ids, timeout=90)
    assert [v["status"] for v in views] == ["completed"] * RUNS
    executions = Counter(json.loads(line)["to"] for line in outbox.read_text().splitlines())
    audit = SqliteAuditStore(tmp_path / "audit.sqlite")
    for i, run_id in enumerate(ids):
        mine = [r for r in audit.query(run_id=run_id, since=datetime(2000, 1, 1, tzinfo=UTC), limit=1000)
                if r.action == "tool.execute"]
        started = sum(r.outcome == "started" for r in mine)
        assert started == executions[f"team-{i}"] >= 2, (run_id, mine, executions)  # the crash repeated it
        assert [r.outcome for r in mine].count("ok") == 1
        assert all(r.caller == "local/local" and r.args_sha256 for r in mine)

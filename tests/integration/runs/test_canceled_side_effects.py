"""Cancel a wide plan of side-effecting calls on a devhost: Durable's terminate reaches neither the run's ``run_steps``
sub-orchestrations nor the activities they queued, yet no side-effecting call starts after the cancel returned —
each one still asked for fails ``canceled`` at the call journal's mark, without running. Executions are counted in
an outbox file outside the app and in the audit trail."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.identity.audit import AuditRecord
from shared.identity.audit_store import SqliteAuditStore
from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.support import ROOT, DevhostProcess, free_port, history, http, wait_until

FAN_OUT = 4
STEPS = 16
WORKERS = 4
"""Activities the devhost runs at once: the first wave of posts, while the others wait in its queue. Fewer than the
threads a tool runs on (asyncio's default pool), so an activity past the journal's check is inside its tool at once,
and the posts counted when the cancel returns are exactly the calls that had passed the check."""


@pytest.fixture
def host(tmp_path: Path) -> Iterator[DevhostProcess]:
    app = tmp_path / "app"  # the app as is, with the devhost's activity workers capped
    app.mkdir()
    (app / "function_app.py").symlink_to(ROOT / "function_app.py")
    (app / "local.settings.json.example").symlink_to(ROOT / "local.settings.json.example")
    config = json.loads((ROOT / "host.json").read_text())
    config["extensions"]["durableTask"]["maxConcurrentActivityFunctions"] = WORKERS
    (app / "host.json").write_text(json.dumps(config))
    env = weft_env(None, tmp_path, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(tmp_path / "outbox.jsonl"), WEFT_MAX_FAN_OUT=str(FAN_OUT))
    proc = DevhostProcess(app, tmp_path / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()


def _posts(host: DevhostProcess) -> int:
    outbox = Path(host.env["WEFT_TEST_OUTBOX"])
    return len(outbox.read_text().splitlines()) if outbox.exists() else 0


def _executions(host: DevhostProcess, run_id: str) -> list[AuditRecord]:
    audit = SqliteAuditStore(Path(host.env["WEFT_STATE_DIR"]) / "audit.sqlite")
    return [r for r in audit.query(run_id=run_id, since=datetime(2000, 1, 1, tzinfo=UTC), limit=10_000)
            if r.action == "tool.execute"]


def test_no_side_effecting_call_starts_after_the_cancel_returned(host: DevhostProcess) -> None:
    assert STEPS > 2 * WORKERS and STEPS > FAN_OUT
    steps = [{"id": f"p{i:02d}", "tool": "post_slowly", "args": {"to": f"team-{i:02d}", "delay_ms": 2000}}
             for i in range(STEPS)]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    # every worker is inside a post (its effect done, its answer pending); the other posts are queued activities
    wait_until(lambda: _posts(host) >= WORKERS, 60, "the first wave of posts under way")

    status, _, reply = http("POST", f"{host.base_url}/api/runs/{run_id}/cancel")
    canceled_at = datetime.now(UTC)
    posted = _posts(host)
    assert status == 202, reply
    assert wait_run(host, run_id, timeout=30)["status"] == "canceled"

    # the slices go on after the terminate: wait until every call they hold has an outcome
    def every_outcome() -> list[AuditRecord]:
        records = [r for r in _executions(host, run_id) if r.outcome != "started"]
        return records if len(records) == STEPS else []

    settled = wait_until(every_outcome, 90, "an outcome of every call")
    assert history(host.base_url, f"{run_id}:steps0.0.0"), "the plan ran in run_steps sub-orchestrations"
    # a call past the journal's check before the mark was written, refused by the executor's last-moment gate,
    # has a "started" record and a "canceled" outcome: what ran is what posted, all of it before the cancel
    started = {r.step_id for r in _executions(host, run_id) if r.outcome == "started" and r.time < canceled_at}
    ran = {r.step_id for r in settled if r.outcome == "ok"}
    assert _posts(host) == posted == len(ran) < STEPS, "a post ran after the cancel"
    assert ran <= started
    assert Counter(r.outcome for r in settled) == {"ok": posted, "canceled": STEPS - posted}
    assert {r.detail for r in settled if r.outcome == "canceled"} == {"not run"}

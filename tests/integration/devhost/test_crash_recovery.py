"""kill -9 the devhost while activities run; restart it on the same store: every instance completes."""

from __future__ import annotations

import time

from tests.integration.devhost.conftest import TEST_APP
from tests.support import TASK_SCHEDULED, DevhostProcess, devhost_env, free_port, history, http, wait_until

INSTANCES = 24


def test_instances_survive_kill_9(tmp_path) -> None:
    db = tmp_path / "state.sqlite"
    env = devhost_env({"AzureWebJobsStorage": ""})
    first = DevhostProcess(TEST_APP, db, free_port(), env).start()
    hook = first.base_url + "/runtime/webhooks/durabletask"
    ids = []
    for i in range(INSTANCES):
        marker = tmp_path / f"marker-{i}.txt"
        status, _, body = http("POST", f"{hook}/orchestrators/slow_steps/crash-{i}",
                               {"n": 3, "ms": 1500, "path": str(marker)})
        assert status == 202
        ids.append(body["id"])
    # every instance has handed out its activities (each takes 1.5 s), none has finished
    wait_until(lambda: all(sum(e["EventType"] == TASK_SCHEDULED for e in history(first.base_url, i)) == 3
                           for i in ids), 30, "three activities scheduled by every instance")
    running = [http("GET", f"{hook}/instances/{i}")[2]["runtimeStatus"] for i in ids]
    assert all(s == "Running" for s in running), running
    first.kill()

    second = DevhostProcess(TEST_APP, db, free_port(), env).start()
    try:
        hook = second.base_url + "/runtime/webhooks/durabletask"
        deadline = time.monotonic() + 60
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {i: http("GET", f"{hook}/instances/{i}")[2]["runtimeStatus"] for i in ids}
            if all(s == "Completed" for s in statuses.values()):
                break
            time.sleep(0.2)
        assert all(s == "Completed" for s in statuses.values()), statuses
        outputs = {http("GET", f"{hook}/instances/{i}")[2]["output"] for i in ids}
        assert outputs == {0 + 1 + 2}
        assert "re-running" in second.log()
    finally:
        second.stop()
    for i in range(INSTANCES):
        assert (tmp_path / f"marker-{i}.txt").read_text() == "x\n"

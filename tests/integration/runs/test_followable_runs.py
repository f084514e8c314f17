"""Following a run while it runs: the steps so far and their counts, long polling with ``?wait=``, a canceled run's
stage, ``options.timeout_s`` ending a run at its deadline, and a step's whole result (5 MB) fetched after the end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http, wait_until


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("follow")
    env = weft_env(None, state, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(state / "outbox.jsonl"))
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()


def view(host: DevhostProcess, run_id: str, query: str = "") -> dict[str, Any]:
    status, _, body = http("GET", f"{host.base_url}/api/runs/{run_id}{query}")
    assert status in (200, 202), body
    return body


def test_steps_are_visible_while_the_run_runs(host: DevhostProcess) -> None:
    steps = [{"id": "quick", "tool": "calculate", "args": {"expression": "1+1"}},
             {"id": "bad", "tool": "calculate", "args": {"expression": "1/0"}},
             {"id": "after-bad", "tool": "calculate", "args": {"expression": "2+2"}, "depends_on": ["bad"]},
             {"id": "slow", "tool": "slow", "args": {"delay_ms": 3000}, "depends_on": ["quick"]},
             {"id": "last", "tool": "calculate", "args": {"expression": "3+3"}, "depends_on": ["slow"]}]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]

    def slow_in_flight() -> dict[str, Any] | None:
        current = view(host, run_id)
        by_id = {s["step_id"]: s for s in current.get("steps") or []}
        return current if by_id.get("quick", {}).get("status") == "succeeded" and "slow" in by_id else None

    running = wait_until(slow_in_flight, 30, "the slow step running while the quick one is done")
    assert running["status"] == "running"
    by_id = {s["step_id"]: s for s in running["steps"]}
    assert by_id["slow"]["status"] == "running" and by_id["bad"]["status"] == "failed"
    assert by_id["after-bad"]["status"] == "skipped"
    assert by_id["bad"]["error"] and by_id["quick"]["attempts"] == 1
    assert running["progress"]["failed"] == 1 and running["progress"]["skipped"] == 1
    finished = wait_run(host, run_id)
    assert finished["progress"]["failed"] == 1 and finished["progress"]["skipped"] == 1
    assert finished["status"] == "completed_with_errors"


def test_wait_answers_when_the_run_changes_not_before(host: DevhostProcess) -> None:
    run_id = submit(host, {"mode": "plan", "plan": {"steps": [
        {"id": "a", "tool": "slow", "args": {"delay_ms": 1500}},
        {"id": "b", "tool": "slow", "args": {"delay_ms": 1500}, "depends_on": ["a"]}]}})["id"]
    wait_until(lambda: view(host, run_id).get("stage") == "executing", 30, "the run executing")
    started = time.monotonic()
    changed = view(host, run_id, "?wait=20")
    assert time.monotonic() - started < 15  # answered at the change (a step ended), not after the full wait
    assert changed["status"] in ("running", "completed")
    final = view(host, run_id, "?wait=20")
    while final["status"] == "running":
        final = view(host, run_id, "?wait=20")
    assert final["status"] == "completed"
    started = time.monotonic()
    view(host, run_id, "?wait=20")
    assert time.monotonic() - started < 5  # a finished run answers at once
    for bad in ("-1", "abc", "99999", "%C2%B2"):
        status, _, body = http("GET", f"{host.base_url}/api/runs/{run_id}?wait={bad}")
        assert status == 400 and body["field"] == "wait"


def test_wait_until_end_answers_at_the_end_or_an_approval_not_at_each_step(host: DevhostProcess) -> None:
    steps = [{"id": f"s{i}", "tool": "slow", "args": {"delay_ms": 300},
              **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(4)]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    ended = view(host, run_id, "?wait=30&until=end")  # four steps finish on the way: none of them answers
    assert ended["status"] == "completed" and ended["progress"]["done"] == 4
    mail = {"mode": "plan", "plan": {"steps": [
        {"id": "first", "tool": "slow", "args": {"delay_ms": 300}},
        {"id": "mail", "tool": "send_email", "args": {"to": "a@example.com", "subject": "hi"},
         "depends_on": ["first"]}]}}
    run_id = submit(host, mail)["id"]
    waiting = view(host, run_id, "?wait=30&until=end")
    assert waiting["status"] == "running" and waiting["stage"] == "awaiting_approval"
    started = time.monotonic()
    again = view(host, run_id, "?wait=2&until=end")  # already waiting: no news, so the full wait
    assert again["stage"] == "awaiting_approval" and time.monotonic() - started >= 1.5
    assert http("POST", f"{host.base_url}/api/runs/{run_id}/approve", {"approved": True})[0] == 202
    assert view(host, run_id, "?wait=30&until=end")["status"] == "completed"
    for bad in ("END", "never", ""):
        status, _, body = http("GET", f"{host.base_url}/api/runs/{run_id}?wait=1&until={bad}")
        assert status == 400 and body["field"] == "until" and body["code"] == "invalid_request"


def test_a_canceled_run_shows_the_stage_canceled(host: DevhostProcess) -> None:
    run_id = submit(host, {"mode": "plan", "plan": {"steps": [
        {"id": "s", "tool": "slow", "args": {"delay_ms": 8000}}]}})["id"]
    wait_until(lambda: view(host, run_id).get("stage") == "executing", 30, "the run executing")
    assert http("POST", f"{host.base_url}/api/runs/{run_id}/cancel")[0] == 202
    ended = wait_run(host, run_id, timeout=20)
    assert ended["status"] == "canceled" and ended["stage"] == "canceled"


def test_timeout_s_ends_the_run_at_its_deadline(host: DevhostProcess) -> None:
    started = time.monotonic()
    run_id = submit(host, {"mode": "plan", "options": {"timeout_s": 2}, "plan": {"steps": [
        {"id": "long", "tool": "slow", "args": {"delay_ms": 20000}},
        {"id": "short", "tool": "calculate", "args": {"expression": "1+2"}},
        {"id": "next", "tool": "calculate", "args": {"expression": "3+4"}, "depends_on": ["long"]}]}})["id"]
    ended = wait_run(host, run_id, timeout=30)
    assert time.monotonic() - started < 15  # well before the 20 s tool would have answered
    steps = {s["step_id"]: s for s in ended["result"]["steps"]}
    assert steps["long"]["status"] == "failed" and steps["long"]["error"]["code"] == "timed_out"
    assert steps["short"]["status"] == "succeeded" and steps["next"]["status"] == "skipped"


def test_a_5_mb_step_result_is_fetched_whole(host: DevhostProcess) -> None:
    size = 5 * 1024 * 1024
    run_id = submit(host, {"mode": "plan", "plan": {"steps": [
        {"id": "big", "tool": "big_text", "args": {"size_bytes": size}}]}})["id"]
    ended = wait_run(host, run_id, timeout=60)
    assert ended["status"] == "completed", ended["errors"]
    record = ended["result"]["steps"][0]["result"]
    assert set(record) == {"blob_ref", "size_bytes", "preview"}  # the run keeps a reference and a preview
    status, headers, body = http("GET", f"{host.base_url}/api/runs/{run_id}/steps/big/result", timeout=60)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert isinstance(body, str) and len(body) == size and body.startswith("0123456789abcdef")
    for step_id, code in (("nope", "not_found"),):
        status, _, error = http("GET", f"{host.base_url}/api/runs/{run_id}/steps/{step_id}/result")
        assert status == 404 and error["code"] == code
    assert json.dumps(ended)  # the run view itself stays small
    assert len(json.dumps(ended)) < 20_000

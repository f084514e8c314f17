"""The engine against every Durable feature, driving the real azure-functions-durable executor."""

from __future__ import annotations

import json
import time

import pytest

from devhost.engine import Completion, Engine, OrchestratorNotFound
from devhost.history import custom_status_too_large
from devhost.host import DevHost
from devhost.store import Store, WorkItem
from tests.support import wait_until
from tests.unit.devhost.conftest import make_host


def run(host: DevHost, name: str, value: object = None, timeout: float = 30.0) -> dict:
    return host.wait_for(host.start_new(name, value), timeout)


def test_sequence_with_custom_status(host: DevHost) -> None:
    status = run(host, "sequence")
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == [4, 16, 9]
    assert status["customStatus"] == {"step": 2}


def test_a_custom_status_over_16_kb_of_utf16_fails_the_orchestration_as_on_azure(host: DevHost) -> None:
    # {"text":"x...x"}: 11 characters and the x's, two bytes each; Durable refuses from 17 whole kilobytes
    assert run(host, "big_status", 8600)["customStatus"] == {"text": "x" * 8600}
    failed = run(host, "big_status", 8800)
    assert failed["runtimeStatus"] == "Failed" and "16 KB of UTF-16" in json.dumps(failed["output"])
    for value, refused in (("é" * 3000, False), ("é" * 8800, True), ("x" * 8690, False), ("x" * 8710, True)):
        assert custom_status_too_large(value, json.dumps(value)) is refused


def test_fan_out_fan_in(host: DevHost) -> None:
    status = run(host, "fan_out", {"n": 50})
    assert status["output"] == sum(i * i for i in range(50))


def test_async_activities_run_on_the_event_loop(host: DevHost) -> None:
    started = time.perf_counter()
    status = run(host, "fan_out", {"n": 10, "ms": 100, "async": True})
    assert status["output"] == 45
    assert time.perf_counter() - started < 0.9, "ten 100 ms async activities must overlap"


def test_activity_failures_are_caught_by_the_orchestrator(host: DevHost) -> None:
    status = run(host, "catch_failure")
    assert status["runtimeStatus"] == "Completed"
    first, second = status["output"]
    assert first.startswith("RuntimeError: boom") and first.strip().endswith("-a attempt 1")
    assert second.startswith("RuntimeError: boom") and second.strip().endswith("-b attempt 1")


@pytest.mark.parametrize(
    ("attempts", "fail_times", "plain", "expected_prefixes"),
    [
        pytest.param(3, [2], 0, ["-0 ok after 3"], id="succeeds-on-third-attempt"),
        pytest.param(3, [2, 0, 1], 3, ["-0 ok after 3", "-1 ok after 1", "-2 ok after 2"], id="parallel-mix"),
        pytest.param(4, [3, 1, 2, 0, 3], 5, ["-0 ok after 4", "-1 ok after 2", "-2 ok after 3", "-3 ok after 1",
                                             "-4 ok after 4"], id="wide-mix-with-plain-tasks"),
    ],
)
def test_call_activity_with_retry(host: DevHost, attempts: int, fail_times: list[int], plain: int,
                                  expected_prefixes: list[str]) -> None:
    status = run(host, "retrying", {"attempts": attempts, "fail_times": fail_times, "plain": plain})
    assert status["runtimeStatus"] == "Completed", status
    output = status["output"]
    retried, squares = output[: len(fail_times)], output[len(fail_times):]
    assert [r.split(status["instanceId"])[1] for r in retried] == expected_prefixes
    assert squares == [i * i for i in range(plain)]


def test_exhausted_retries_raise_in_the_orchestrator(host: DevHost) -> None:
    status = run(host, "retrying", {"attempts": 2, "fail_times": [5]})
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["error"].strip().endswith("attempt 2")


def test_retry_interval_is_honoured(host: DevHost) -> None:
    started = time.perf_counter()
    status = run(host, "retrying", {"attempts": 3, "fail_times": [2], "interval_ms": 200})
    assert status["runtimeStatus"] == "Completed"
    assert time.perf_counter() - started >= 0.4


def test_durable_timer(host: DevHost) -> None:
    started = time.perf_counter()
    status = run(host, "timer_then_value", 0.3)
    assert status["output"] == "fired"
    assert time.perf_counter() - started >= 0.25


def test_external_event_beats_the_timeout_timer(host: DevHost) -> None:
    instance_id = host.start_new("approval", 30)
    assert host.engine.wait_idle(5)
    assert host.engine.raise_event(instance_id, "Approve", json.dumps({"by": "ann"}))
    status = host.wait_for(instance_id, 10)
    assert status["output"] == {"approved": {"by": "ann"}}


def test_timeout_timer_beats_a_missing_event(host: DevHost) -> None:
    status = run(host, "approval", 0.3)
    assert status["output"] == {"approved": None, "timed_out": True}


def test_events_raised_before_the_wait_are_delivered(host: DevHost) -> None:
    instance_id = host.start_new("two_events")
    host.engine.raise_event(instance_id, "Second", json.dumps(2))
    host.engine.raise_event(instance_id, "First", json.dumps(1))
    status = host.wait_for(instance_id, 10)
    assert status["output"] == [1, 2]


def test_sub_orchestrations_complete_and_fail(host: DevHost) -> None:
    status = run(host, "parent")
    assert status["output"]["child"] == [4, 16, 9]
    assert "child failure" in status["output"]["crashed"]
    child = host.status(f"{status['instanceId']}-child")
    assert child is not None and child["runtimeStatus"] == "Completed"


def test_orchestrator_exception_fails_the_instance(host: DevHost) -> None:
    status = run(host, "crashes")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == "orchestrator blew up"


def test_continue_as_new_keeps_history_short(host: DevHost) -> None:
    status = run(host, "counter", {"i": 0, "limit": 6})
    assert status["output"] == {"done": 6}
    history = [json.loads(e) for e in host.store.load_history(status["instanceId"])]
    assert len(history) < 12
    assert host.store.get_instance(status["instanceId"]).generation == 5


def test_terminate(host: DevHost) -> None:
    instance_id = host.start_new("two_events")
    assert host.engine.terminate(instance_id, "operator said stop")
    status = host.wait_for(instance_id, 10)
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "operator said stop"
    assert not host.engine.raise_event(instance_id, "First", "1"), "a finished instance takes no events"


def test_suspend_holds_events_until_resume(host: DevHost) -> None:
    instance_id = host.start_new("two_events")
    host.engine.wait_idle(5)
    assert host.engine.suspend(instance_id, "hold")
    host.engine.raise_event(instance_id, "First", "1")
    host.engine.raise_event(instance_id, "Second", "2")
    host.engine.wait_idle(5)
    assert host.status(instance_id)["runtimeStatus"] == "Suspended"
    assert host.engine.resume(instance_id, "go")
    assert host.wait_for(instance_id, 10)["output"] == [1, 2]


def test_nondeterminism_is_detected(host: DevHost) -> None:
    status = run(host, "nondeterministic")
    assert status["runtimeStatus"] == "Failed"
    assert "Non-deterministic orchestrator detected" in status["output"]
    assert "'square'" in status["output"] and "'sleep_ms'" in status["output"]


def test_unsupported_actions_fail_clearly(host: DevHost) -> None:
    status = run(host, "uses_entity")
    assert status["runtimeStatus"] == "Failed"
    assert "does not support durable entities" in status["output"]


def test_unknown_orchestrator_is_refused(host: DevHost) -> None:
    with pytest.raises(OrchestratorNotFound):
        host.engine.start_new("no_such_orchestrator")


def test_duplicate_live_instance_id_is_refused(host: DevHost) -> None:
    host.start_new("two_events", instance_id="same-id")
    with pytest.raises(FileExistsError):
        host.start_new("two_events", instance_id="same-id")


def test_wide_fan_out_is_replayed_a_few_times_not_once_per_completion(host: DevHost) -> None:
    before = host.engine.episodes
    status = run(host, "fan_out", {"n": 1000}, timeout=60)
    assert status["output"] == sum(i * i for i in range(1000))
    assert host.engine.episodes - before < 100


def test_purge_removes_finished_instances(host: DevHost) -> None:
    status = run(host, "sequence")
    assert host.store.purge([status["instanceId"]]) == 1
    assert host.status(status["instanceId"]) is None


def test_work_in_flight_is_rerun_after_a_restart(tmp_path) -> None:
    db = str(tmp_path / "state.sqlite")
    marker = tmp_path / "done.txt"
    first = make_host(db).start()
    instance_id = first.start_new("slow_steps", {"n": 4, "ms": 400, "path": str(marker)})
    # the four activities are handed out and running; stop the host without letting them report
    wait_until(lambda: first.store.pending_work_count() == 4, 10, "four activity work items in flight")
    first.engine.stop()
    first.workers.shutdown()
    first.store.close()
    second = make_host(db).start()
    try:
        status = second.wait_for(instance_id, 20)
    finally:
        second.stop()
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 0 + 1 + 2 + 3
    assert marker.read_text().count("x") == 1


def test_engine_is_usable_without_the_host(tmp_path) -> None:
    """The engine only needs a store, orchestrator handles and a dispatch function."""
    from devhost.store import Store

    store = Store(":memory:")
    seen = []
    engine = Engine(store, {"noop": lambda ctx: json.dumps({"isDone": True, "actions": [], "output": 7})},
                    seen.append)
    engine.start()
    try:
        instance_id = engine.start_new("noop")
        inst = engine.wait_for(instance_id, 5)
    finally:
        engine.stop()
    assert inst is not None and inst.status == "Completed" and json.loads(inst.output) == 7
    assert seen == []


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed-{s}")
def test_randomised_retries_and_failures_keep_task_ids_in_step(host: DevHost, seed: int) -> None:
    """Retries allocate hidden task ids; a random mix must still resolve every task to its own result."""
    import random

    rng = random.Random(seed)
    attempts = rng.randint(2, 4)
    fail_times = [rng.randint(0, attempts - 1) for _ in range(rng.randint(3, 12))]
    plain = rng.randint(0, 10)
    status = run(host, "retrying", {"attempts": attempts, "fail_times": fail_times, "plain": plain,
                                    "interval_ms": rng.choice([1, 5, 20])})
    assert status["runtimeStatus"] == "Completed", status
    output = status["output"]
    assert [r.split(status["instanceId"])[1] for r in output[: len(fail_times)]] == [
        f"-{i} ok after {f + 1}" for i, f in enumerate(fail_times)
    ]
    assert output[len(fail_times):] == [i * i for i in range(plain)]


def _engine_with_queued(completions: int, in_flight: int) -> Engine:
    engine = Engine(Store(":memory:"), {}, lambda items: None, coalesce_s=0.005, coalesce_max_s=0.05)
    for n in range(completions):
        engine._completions.put(Completion(WorkItem(n, "i", 0, n, "a", None, 0)))
    engine._in_flight.update(range(100, 100 + in_flight))
    return engine


def test_a_lone_completion_is_replayed_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    # The next link of a chain: waiting for more completions would add coalesce_s to every hop.
    sleeps: list[float] = []
    monkeypatch.setattr("devhost.engine.time.sleep", sleeps.append)
    _engine_with_queued(completions=1, in_flight=3)._coalesce()
    assert sleeps == []


def test_a_burst_of_completions_is_waited_for_while_work_is_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("devhost.engine.time.sleep", sleeps.append)
    _engine_with_queued(completions=2, in_flight=3)._coalesce()
    assert sleeps == [0.005]  # one wait; nothing more arrived, so the replay starts


def test_leases_are_checked_about_once_a_second_not_at_every_wake_up() -> None:
    """Claiming expired work items and renewing the running ones writes a row per item: once a second is enough for
    leases of minutes. A work item whose lease has run out (its worker gone) is still handed out again."""
    store = Store(":memory:")
    dispatched: list[WorkItem] = []
    engine = Engine(store, {}, dispatched.extend, lease_s=600.0)
    claims: list[float] = []
    claim = store.claim_expired_work

    def counting(now: float, lease_until: float, exclude: set[int]) -> list[WorkItem]:
        claims.append(now)
        return claim(now, lease_until, exclude)

    store.claim_expired_work = counting  # type: ignore[method-assign]
    engine.start()
    try:
        for _ in range(50):  # 50 wake-ups in ~0.5 s
            engine._wake.set()
            time.sleep(0.01)
        assert 1 <= len(claims) <= 2
        with store.transaction() as conn:  # a work item left by a worker that is gone: its lease ran out
            store.add_work_items(conn, [("orphan", 0, 0, "noop", None)], lease_until=time.time() - 1)
        wait_until(lambda: [item.instance_id for item in dispatched] == ["orphan"], 5, "the orphan handed out again")
    finally:
        engine.stop()


def test_cpus_pin_every_thread_and_refuse_what_the_process_may_not_use() -> None:
    """devhost ``--cpus`` (in a child process: pinning this one would pin the test run)."""
    import subprocess
    import sys

    from tests.support import ROOT

    probe = ("import os, threading\nfrom devhost.cli import AppLoadError, pin_cpus\n"
             "t = threading.Thread(target=threading.Event().wait, daemon=True); t.start()\n"
             "print(pin_cpus('0'), pin_cpus(''), sorted(os.sched_getaffinity(t.native_id)))\n"
             "for bad in ('x', '9999', ','):\n"
             "    try:\n        pin_cpus(bad)\n    except AppLoadError as exc:\n        print(exc)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "{0} None [0]"  # a thread started before the call is pinned too
    assert "a comma-separated list of CPU numbers" in lines[1]
    assert "this process may use CPUs" in lines[2] and "this process may use CPUs" in lines[3]

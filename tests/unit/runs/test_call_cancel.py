"""``CallJournal.cancel``/``canceled``: a canceled run's mark, shared by its task's sub-runs, that ``dispatch`` hands
to every later side-effecting call, and that retention deletes with the run's journal."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shared.errors import InvalidRequest
from shared.payloads import LocalPayloadStore
from shared.runs.call_journal import CallJournal, Dispatch


@pytest.fixture
def journal(tmp_path: Path) -> CallJournal:
    return CallJournal(LocalPayloadStore(tmp_path))


def test_the_first_cancel_writes_the_mark(journal: CallJournal) -> None:
    assert not journal.canceled("run-1")
    assert journal.cancel("run-1") is True
    assert journal.cancel("run-1") is False  # a second cancel (another instance, a retried request) finds it
    assert journal.canceled("run-1")
    assert not journal.canceled("run-10") and not journal.canceled("run-2")  # only that run


def test_a_task_and_its_sub_runs_share_the_mark(journal: CallJournal) -> None:
    journal.cancel("task-1")
    assert journal.canceled("task-1:turn1") and journal.canceled("task-1:turn12")
    journal.cancel("task-2:turn3")  # a sub-run's id marks the run it belongs to
    assert journal.canceled("task-2") and journal.canceled("task-2:turn1")
    assert not journal.canceled("task-10:turn1")


def test_dispatch_says_a_call_of_a_canceled_run_must_not_run(journal: CallJournal) -> None:
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=False)
    journal.cancel("run-1")
    assert journal.dispatch("run-1", "call:s2:abc") == Dispatch(1, redelivered=False, canceled=True)
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=True, canceled=True)
    for _ in range(2):  # a canceled delivery writes no execution marker: its redelivery is not "uncertain"
        assert journal.dispatch("run-1", "call:s3:abc") == Dispatch(1, redelivered=False, canceled=True)
    journal.cancel("task-1")
    assert journal.dispatch("task-1:turn2", "call:s1:abc").canceled
    assert journal.dispatch("run-2", "call:s1:abc") == Dispatch(1, redelivered=False)


def test_an_outcome_settled_before_the_cancel_is_still_handed_back(journal: CallJournal) -> None:
    first = journal.dispatch("run-1", "call:s1:abc")
    journal.settle("run-1", "call:s1:abc", first.attempt, {"ok": True, "value": 1}, final=True)
    journal.cancel("run-1")
    again = journal.dispatch("run-1", "call:s1:abc")
    assert again.settled == {"ok": True, "value": 1} and not again.canceled  # it ran: its outcome is the truth


def test_concurrent_cancels_write_one_mark(journal: CallJournal) -> None:
    outcomes: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def racer() -> None:
        barrier.wait(timeout=10)
        wrote = journal.cancel("run-1")
        with lock:
            outcomes.append(wrote)

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == [False, False, False, True]


def test_retention_deletes_the_mark_with_the_run(journal: CallJournal) -> None:
    journal.cancel("run-1")
    journal.cancel("run-10")
    assert journal.delete_run("run-1") == 1
    assert not journal.canceled("run-1")
    assert journal.canceled("run-10")  # another run whose id merely starts with this one keeps its mark


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", ".hidden"], ids=["empty", "parent", "slash", "dot"])
def test_a_run_id_that_cannot_name_a_journal_is_refused(journal: CallJournal, run_id: str) -> None:
    with pytest.raises(InvalidRequest):
        journal.cancel(run_id)
    with pytest.raises(InvalidRequest):
        journal.canceled(run_id)

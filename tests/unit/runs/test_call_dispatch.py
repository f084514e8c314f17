"""``CallJournal.dispatch``/``settle``: a Durable retry after a reported failure is a new attempt, a delivery of an
attempt that never reported is a redelivery, and an outcome settled but never reported is handed back."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.payloads import LocalPayloadStore
from shared.runs.call_journal import CallJournal, Dispatch, journal_for


@pytest.fixture
def journal(tmp_path: Path) -> CallJournal:
    return CallJournal(LocalPayloadStore(tmp_path))


def test_a_first_delivery_is_attempt_one_and_its_redelivery_is_flagged(journal: CallJournal) -> None:
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=False)
    # the host crashed: Durable delivers the same attempt again
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=True)
    assert journal.dispatch("run-1", "call:s2:abc") == Dispatch(1, redelivered=False)
    assert journal.dispatch("run-2", "call:s1:abc") == Dispatch(1, redelivered=False)


def test_a_retry_after_a_reported_failure_is_a_new_attempt(journal: CallJournal) -> None:
    first = journal.dispatch("run-1", "call:s1:abc")
    journal.settle("run-1", "call:s1:abc", first.attempt, {"code": "tool_failed"}, final=False)
    second = journal.dispatch("run-1", "call:s1:abc")
    assert second == Dispatch(2, redelivered=False)
    journal.settle("run-1", "call:s1:abc", second.attempt, {"circuit_open": {}}, final=False)
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(3, redelivered=False)
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(3, redelivered=True)  # attempt 3 crashed


def test_a_settled_outcome_is_handed_back_instead_of_running_again(journal: CallJournal) -> None:
    first = journal.dispatch("run-1", "call:s1:abc")
    outcome = {"ok": True, "value": {"posted": "a"}}
    journal.settle("run-1", "call:s1:abc", first.attempt, outcome, final=True)
    # settled, then the host died before Durable heard of it
    again = journal.dispatch("run-1", "call:s1:abc")
    assert again.settled == outcome and again.attempt == 1
    journal.settle("run-1", "call:s1:abc", 1, {"ok": False}, final=True)  # the first settlement wins
    assert journal.dispatch("run-1", "call:s1:abc").settled == outcome


def test_one_journal_per_store(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    assert journal_for(store) is journal_for(store)
    assert journal_for(LocalPayloadStore(tmp_path)) is not journal_for(store)


def test_delete_run_removes_a_run_and_its_sub_runs_only(journal: CallJournal) -> None:
    for run_id in ("run-1", "run-1:turn1", "run-1:turn12", "run-10", "run-2"):
        journal.record(run_id, 1, "post", "a" * 64, {"ok": True})
        journal.dispatch(run_id, "call:s1:abc")
    journal.settle("run-1", "call:s1:abc", 1, {"ok": True}, final=True)
    assert journal.delete_run("run-1") == 7  # run-1: entry, marker, settlement; each sub-run: entry, marker
    assert journal.completed("run-1") == {} and journal.completed("run-1:turn12") == {}
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=False)
    assert list(journal.completed("run-10")) == [1] and list(journal.completed("run-2")) == [1]
    assert journal.delete_run("never-ran") == 0

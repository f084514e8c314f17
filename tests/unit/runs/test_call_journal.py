"""The call journal on a local payload store: entries by sequence, first write wins, execution markers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shared.errors import InvalidRequest
from shared.payloads import LocalPayloadStore
from shared.runs.call_journal import CallJournal, JournalEntry, args_sha256


@pytest.fixture
def journal(tmp_path: Path) -> CallJournal:
    return CallJournal(LocalPayloadStore(tmp_path))


def test_completed_calls_come_back_by_sequence(journal: CallJournal) -> None:
    digest = args_sha256({"expression": "1+1"})
    journal.record("run-1", 2, "calculate", digest, {"result": 2})
    journal.record("run-1", 1, "fail_always", args_sha256({}), error="ToolError: no")
    journal.record("run-2", 1, "calculate", digest, {"result": 9})
    done = journal.completed("run-1")
    assert list(done) == [1, 2]
    assert done[2].result == {"result": 2} and done[2].ok and done[2].matches("calculate", digest)
    assert not done[1].ok and done[1].error == "ToolError: no" and done[1].result is None
    assert journal.completed("run-2")[1].result == {"result": 9}
    assert journal.completed("never-ran") == {}


def test_the_first_record_of_a_sequence_wins(journal: CallJournal) -> None:
    first = journal.record("run-1", 1, "note_put", "a" * 64, {"version": 1})
    second = journal.record("run-1", 1, "note_put", "a" * 64, {"version": 2})
    assert second.result == {"version": 1} == first.result
    assert journal.completed("run-1")[1].result == {"version": 1}


def test_begin_says_whether_a_call_was_begun_before(journal: CallJournal) -> None:
    assert journal.begin("run-1", "c1:abc") is False
    assert journal.begin("run-1", "c1:abc") is True
    assert journal.begin("run-1", "c2:abc") is False
    assert journal.begin("run-2", "c1:abc") is False


def test_concurrent_begins_of_one_call_let_exactly_one_through(journal: CallJournal) -> None:
    outcomes: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def racer() -> None:
        barrier.wait(timeout=5)
        begun_before = journal.begin("run-1", "c7:deadbeef")
        with lock:
            outcomes.append(begun_before)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == [False] + [True] * 7


def test_the_journal_survives_a_new_instance(tmp_path: Path) -> None:
    written = CallJournal(LocalPayloadStore(tmp_path)).record("run-1", 1, "calculate", "x", {"result": 3})
    read = CallJournal(LocalPayloadStore(tmp_path)).completed("run-1")[1]
    assert read == written == JournalEntry(1, "calculate", "x", {"result": 3}, None, written.recorded_at)


@pytest.mark.parametrize("run_id", ["../escape", "", "a/b", "x" * 300])
def test_run_ids_that_cannot_name_a_journal_are_refused(journal: CallJournal, run_id: str) -> None:
    with pytest.raises(InvalidRequest):
        journal.completed(run_id)


def test_args_hash_is_canonical() -> None:
    assert args_sha256({"b": 1, "a": [1, 2]}) == args_sha256({"a": [1, 2], "b": 1})
    assert args_sha256({"a": 1}) != args_sha256({"a": 2})

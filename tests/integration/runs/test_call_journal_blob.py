"""The call journal on Blob Storage (Azurite): the same contract as on a local folder, across instances."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.payloads import BlobPayloadStore
from shared.runs.call_journal import CallJournal, args_sha256
from tests.support import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture
def container(azurite: Azurite) -> Iterator[Any]:
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(azurite.connection_string, f"journal-{uuid.uuid4().hex[:12]}")
    yield client
    with contextlib.suppress(Exception):
        client.delete_container()


def test_the_journal_on_blob_storage(container: Any) -> None:
    journal = CallJournal(BlobPayloadStore(container))
    assert journal.completed("run-1") == {}  # no container yet
    digest = args_sha256({"key": "k"})
    journal.record("run-1", 1, "note_put", digest, {"version": 1})
    assert journal.record("run-1", 1, "note_put", digest, {"version": 2}).result == {"version": 1}
    journal.record("run-1", 2, "fail_always", args_sha256({}), error="ToolError: down")
    other = CallJournal(BlobPayloadStore(container))  # another instance of the app
    done = other.completed("run-1")
    assert list(done) == [1, 2] and done[1].result == {"version": 1} and done[2].error == "ToolError: down"
    assert other.completed("run-2") == {}


def test_concurrent_begins_on_blob_storage_let_exactly_one_through(container: Any) -> None:
    journals = [CallJournal(BlobPayloadStore(container)) for _ in range(4)]
    journals[0].begin("run-0", "warm-up")  # creates the container
    outcomes: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(journals))

    def racer(journal: CallJournal) -> None:
        barrier.wait(timeout=10)
        begun_before = journal.begin("run-1", "c3:abc")
        with lock:
            outcomes.append(begun_before)

    threads = [threading.Thread(target=racer, args=(j,)) for j in journals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == [False, True, True, True]
    assert journals[1].begin("run-1", "c3:abc") is True


def test_dispatch_settle_and_delete_on_blob_storage(container: Any) -> None:
    journal = CallJournal(BlobPayloadStore(container))
    first = journal.dispatch("run-1", "call:s1:abc")
    assert (first.attempt, first.redelivered) == (1, False)
    assert journal.dispatch("run-1", "call:s1:abc").redelivered  # a redelivery of attempt 1
    journal.settle("run-1", "call:s1:abc", 1, {"code": "tool_failed"}, final=False)
    second = CallJournal(BlobPayloadStore(container)).dispatch("run-1", "call:s1:abc")  # another instance
    assert (second.attempt, second.redelivered, second.settled) == (2, False, None)
    journal.settle("run-1", "call:s1:abc", 2, {"ok": True}, final=True)
    assert journal.dispatch("run-1", "call:s1:abc").settled == {"ok": True}
    journal.record("run-1:turn1", 1, "post", "a" * 64, {"ok": True})
    journal.record("run-10", 1, "post", "a" * 64, {"ok": True})
    assert journal.delete_run("run-1") == 5  # two markers, two settlements, the sub-run's entry
    assert journal.dispatch("run-1", "call:s1:abc").attempt == 1
    assert list(journal.completed("run-10")) == [1]

"""The call journal on Blob Storage (Azurite): the same contract as on a local folder, across instances; a canceled
run's mark is seen by every instance, written once and deleted with the run's journal."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from shared.catalog.breaker import BlobBreakerStore, BreakerRecord, BreakerSettings, CircuitBreaker
from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor, ToolSettings
from shared.models import ToolCall, ToolResult
from shared.payloads import BlobPayloadStore
from shared.runs.call_journal import CallJournal, Dispatch, args_sha256
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


def test_the_cancel_mark_on_blob_storage(container: Any) -> None:
    journal = CallJournal(BlobPayloadStore(container))
    assert not journal.canceled("run-1")  # no container yet
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=False)
    assert journal.cancel("run-1") is True
    other = CallJournal(BlobPayloadStore(container))  # another instance of the app
    assert other.cancel("run-1") is False
    assert other.canceled("run-1") and other.canceled("run-1:turn2") and not other.canceled("run-10")
    assert other.dispatch("run-1", "call:s2:abc") == Dispatch(1, redelivered=False, canceled=True)
    journal.cancel("run-10")
    assert journal.delete_run("run-1") == 2  # the mark and the first call's marker (a canceled call writes none)
    assert not journal.canceled("run-1") and journal.canceled("run-10")


def _slow_reads(azurite: Azurite, container: Any) -> tuple[Any, threading.Event]:
    """A client of ``container`` whose reads (GET) answer only once the event is set (or after 10 s): the journal's
    storage answering after a call's timeout."""
    from azure.storage.blob import ContainerClient

    answer = threading.Event()

    def late(response: Any) -> None:
        if response.http_request.method == "GET":
            answer.wait(10)

    return ContainerClient.from_connection_string(azurite.connection_string, container.container_name,
                                                  raw_response_hook=late), answer


@pytest.mark.parametrize("sync", [pytest.param(True, id="sync-tool"), pytest.param(False, id="async-tool")])
def test_a_cancel_mark_read_slower_than_the_call_timeout_is_a_retryable_not_run(azurite: Azurite, container: Any,
                                                                                 sync: bool) -> None:
    slow, answer = _slow_reads(azurite, container)
    catalog = Catalog()
    ran: list[str] = []

    def post_sync(to: str) -> str:
        """Post a message."""
        ran.append(to)
        return "posted"

    async def post_async(to: str) -> str:
        """Post a message."""
        ran.append(to)
        return "posted"

    catalog.register(post_sync if sync else post_async, name="post", side_effects=True, timeout_s=1.0)
    store = BlobBreakerStore(container)
    breaker = CircuitBreaker(store, BreakerSettings(failure_threshold=1, closed_cache_s=0.0))
    executor = ToolExecutor(catalog, breaker=breaker)
    journal, slow_journal = CallJournal(BlobPayloadStore(container)), CallJournal(BlobPayloadStore(slow))
    journal.begin("run-1", "warm-up")  # creates the container

    async def scenario() -> ToolResult:
        the_call = ToolCall(run_id="run-1", step_id="s1", tool="post", args={"to": "a"})
        result = await executor.execute(the_call, gate=partial(slow_journal.refuse_if_canceled, "run-1"))
        answer.set()
        return result  # asyncio.run joins the worker threads: the gate's thread has gone on past it by then

    result = asyncio.run(scenario())
    assert not result.ok and result.error is not None and ran == []
    assert (result.error.code, result.error.retryable) == ("cancel_check_unavailable", True)
    assert store.get("post") == BreakerRecord()  # one failure would have opened the circuit
    passed = asyncio.run(executor.execute(ToolCall(run_id="run-1", step_id="s2", tool="post", args={"to": "b"}),
                                          gate=partial(journal.refuse_if_canceled, "run-1")))
    assert passed.ok and ran == ["b"]


def test_slow_cancel_mark_reads_hold_only_the_cancel_check_threads(azurite: Azurite, container: Any) -> None:
    slow, answer = _slow_reads(azurite, container)
    catalog = Catalog()
    ran: list[str] = []

    async def post(to: str) -> str:
        """Post a message."""
        ran.append(to)
        return "posted"

    def ping() -> str:
        """A healthy sync tool, run in the default thread pool."""
        return "pong"

    catalog.register(post, name="post", side_effects=True, timeout_s=0.5)
    catalog.register(ping, name="ping", timeout_s=10.0)
    store = BlobBreakerStore(container)
    breaker = CircuitBreaker(store, BreakerSettings(failure_threshold=1, closed_cache_s=0.0))
    executor = ToolExecutor(catalog, breaker=breaker, settings=ToolSettings(cancel_check_threads=2))
    journal, slow_journal = CallJournal(BlobPayloadStore(container)), CallJournal(BlobPayloadStore(slow))
    journal.begin("run-1", "warm-up")  # creates the container

    async def scenario() -> tuple[list[ToolResult], ToolResult, ToolResult]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        slow_gate = partial(slow_journal.refuse_if_canceled, "run-1")
        abandoned = await asyncio.gather(*(
            executor.execute(ToolCall(run_id="run-1", step_id=f"s{n}", tool="post", args={"to": "a"}), gate=slow_gate)
            for n in range(2)))
        starved = await executor.execute(ToolCall(run_id="run-1", step_id="s3", tool="post", args={"to": "b"}),
                                         gate=partial(journal.refuse_if_canceled, "run-1"))
        pinged = await executor.execute(ToolCall(run_id="run-1", step_id="s4", tool="ping", args={}))
        answer.set()
        return abandoned, starved, pinged

    abandoned, starved, pinged = asyncio.run(scenario())
    assert [result.error.code if result.error else None for result in abandoned] == ["cancel_check_unavailable"] * 2
    # no thread was free to read the next call's mark: it did not run, and says so, without blaming the tool
    assert starved.error is not None and (starved.error.code, starved.error.retryable) == ("cancel_check_unavailable",
                                                                                          True)
    assert ran == [] and store.get("post") == BreakerRecord()
    assert pinged.ok and pinged.value == "pong"  # the default thread pool was not used up by the abandoned reads


def test_the_gate_read_of_the_cancel_mark_ends_at_its_client_side_timeout(azurite: Azurite) -> None:
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContainerClient

    with socket.create_server(("127.0.0.1", 0)) as mute:  # takes connections into its backlog, never answers
        endpoint = f"127.0.0.1:{mute.getsockname()[1]}"
        connection = azurite.connection_string.replace(f"127.0.0.1:{azurite.blob_port}", endpoint)
        journal = CallJournal(BlobPayloadStore(ContainerClient.from_connection_string(connection, "journal")))
        failed: list[BaseException] = []
        done = threading.Event()

        def gate() -> None:
            try:
                journal.refuse_if_canceled("run-1", timeout_s=0.2)
            except BaseException as exc:
                failed.append(exc)
            done.set()

        threading.Thread(target=gate, daemon=True).start()
        assert done.wait(20)  # without its timeout the SDK waits 60 s per try for the answer, and tries again
        assert len(failed) == 1 and isinstance(failed[0], AzureError)

"""Quotas on Azure Table Storage (Azurite): shared by separate processes and clients, exact under contention."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.errors import RateLimited
from shared.identity.quota_store import TableQuotaStore, caller_partition
from shared.identity.quotas import QuotaLimits, Quotas, QuotaSettings
from tests.support import ROOT

pytestmark = pytest.mark.azurite

A, B = "tenant-1/caller-a", "tenant-1/caller-b"
NO_ROLES: frozenset[str] = frozenset()
T0 = 1_800_000_000.0

WORKER = textwrap.dedent("""
    import json, sys
    from azure.data.tables import TableClient
    from shared.errors import RateLimited
    from shared.identity.quota_store import TableQuotaStore
    from shared.identity.quotas import Quotas, QuotaSettings

    connection_string, table, caller, count, now = sys.argv[1:6]
    store = TableQuotaStore(TableClient.from_connection_string(connection_string, table), max_attempts=200)
    quotas = Quotas(store, QuotaSettings(), clock=lambda: float(now))
    store.get(caller, "rate")  # connect and create the table before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    admitted, waits = 0, []
    for _ in range(int(count)):
        try:
            quotas.charge_request(caller, frozenset())
            admitted += 1
        except RateLimited as exc:
            waits.append(exc.retry_after_s)
    print(json.dumps({"admitted": admitted, "waits": sorted(set(waits))}), flush=True)
""")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(azurite: Any) -> Any:
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(azurite.connection_string, "quotas" + uuid.uuid4().hex[:12])
    yield client
    with contextlib.suppress(ResourceNotFoundError):
        client.delete_table()


@pytest.fixture
def new_quotas(azurite: Any, table: Any) -> Any:
    def make(settings: QuotaSettings | None = None, clock: Any = None, attempts: int = 200) -> Quotas:
        from azure.data.tables import TableClient

        client = TableClient.from_connection_string(azurite.connection_string, table.table_name)
        return Quotas(TableQuotaStore(client, max_attempts=attempts, sleep=lambda _: None),
                      settings or QuotaSettings(max_conflict_retries=attempts), clock=clock or Clock())
    return make


def spend(quotas: Quotas, caller: str, n: int) -> int:
    admitted = 0
    for _ in range(n):
        try:
            quotas.charge_request(caller, NO_ROLES)
            admitted += 1
        except RateLimited:
            pass
    return admitted


def test_the_61st_request_is_refused_across_two_processes(azurite: Any, table: Any, new_quotas: Any) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, azurite.connection_string, table.table_name, A, "45",
                                 str(T0)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:  # both start together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert sum(r["admitted"] for r in results) == 60
    assert {w for r in results for w in r["waits"]} == {1.0}
    entity = table.get_entity(caller_partition(A), "rate")
    assert entity["caller"] == A and json.loads(entity["state"])["tokens"] == 0
    other = new_quotas(clock=lambda: T0)
    assert spend(other, B, 61) == 60  # caller B has its own bucket


def test_threads_with_their_own_clients_spend_exactly_the_burst(new_quotas: Any) -> None:
    instances = [new_quotas() for _ in range(6)]
    instances[0].store.get(A, "rate")  # create the table before the race
    barrier = threading.Barrier(len(instances))
    admitted: list[int] = []

    def run(quotas: Quotas) -> None:
        barrier.wait()
        admitted.append(spend(quotas, A, 15))

    threads = [threading.Thread(target=run, args=(q,)) for q in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(admitted) == 60


def test_with_the_real_clock_the_first_refusal_comes_after_the_burst(new_quotas: Any) -> None:
    quotas = new_quotas(clock=time.time)
    started = time.monotonic()
    admitted = 0
    with pytest.raises(RateLimited) as info:
        for _ in range(1000):
            quotas.charge_request(A, NO_ROLES)
            admitted += 1
    elapsed = time.monotonic() - started
    assert 60 <= admitted <= 60 + elapsed + 1  # one token a second refills while the burst is spent
    assert info.value.retry_after_s == 1.0


def test_concurrent_run_cap_is_shared_and_a_lease_ends(new_quotas: Any) -> None:
    clock = Clock()
    settings = QuotaSettings(max_concurrent_runs=2, run_lease_s=3600,
                             role_limits=(("Runs.ReadAll", QuotaLimits(600, 600, 3)),))
    first, second = new_quotas(settings, clock), new_quotas(settings, clock)
    first.acquire_run(A, NO_ROLES, "r1")
    second.acquire_run(A, NO_ROLES, "r1")  # the same run from another instance: still one slot
    second.acquire_run(A, NO_ROLES, "r2")
    with pytest.raises(RateLimited) as info:
        first.acquire_run(A, NO_ROLES, "r3")
    assert info.value.retry_after_s == settings.run_retry_after_s
    first.acquire_run(A, frozenset({"Runs.ReadAll"}), "r3")  # a role with a higher cap
    first.acquire_run(B, NO_ROLES, "b1")
    second.release_run(A, "r1")
    assert first.running(A) == ["r2", "r3"]
    clock.now += 3600  # the leases of r2 and r3 end (their release was lost)
    first.acquire_run(A, NO_ROLES, "r4")
    first.acquire_run(A, NO_ROLES, "r5")
    assert second.running(A) == ["r4", "r5"]


def test_a_deleted_table_is_created_again(new_quotas: Any, table: Any) -> None:
    quotas = new_quotas()
    quotas.charge_request(A, NO_ROLES)
    table.delete_table()
    deadline = time.monotonic() + 60
    while True:  # Azurite may refuse to recreate a table that is being deleted: poll until it takes
        try:
            quotas.charge_request(A, NO_ROLES)
            break
        except RateLimited:
            assert time.monotonic() < deadline
    assert json.loads(table.get_entity(caller_partition(A), "rate")["state"])["tokens"] == 59

"""Per-caller quotas on the memory and SQLite stores: token bucket, concurrent-run cap, roles, failure modes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from shared.errors import RateLimited, UpstreamUnavailable
from shared.identity.quota_store import Change, MemoryQuotaStore, QuotaContention, SqliteQuotaStore, State, T
from shared.identity.quotas import QuotaLimits, Quotas, QuotaSettings, build_quotas
from shared.payloads import PayloadSettings

A, B = "tenant/a", "tenant/b"
NO_ROLES: frozenset[str] = frozenset()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryQuotaStore() if request.param == "memory" else SqliteQuotaStore(tmp_path / "quotas.sqlite")


def spend(quotas: Quotas, caller: str, n: int, roles: frozenset[str] = NO_ROLES) -> int:
    """Requests admitted out of ``n``."""
    admitted = 0
    for _ in range(n):
        try:
            quotas.charge_request(caller, roles)
            admitted += 1
        except RateLimited:
            pass
    return admitted


# ------------------------------------------------------------------------------------------------- settings


def test_settings_defaults_and_env() -> None:
    assert QuotaSettings.from_env({}) == QuotaSettings()
    assert QuotaSettings().default_limits == QuotaLimits(60, 60, 10)
    settings = QuotaSettings.from_env({
        "WEFT_QUOTA_ENABLED": "false", "WEFT_QUOTA_REQUESTS_PER_MINUTE": "120", "WEFT_QUOTA_BURST": "10",
        "WEFT_QUOTA_MAX_CONCURRENT_RUNS": "3", "WEFT_QUOTA_TABLE": "q2", "WEFT_QUOTA_RUN_LEASE_S": "600",
        "WEFT_QUOTA_ROLE_LIMITS": '{"Runs.ReadAll": {"requests_per_minute": 600, "max_concurrent_runs": 50},'
                                  ' "Tools.Admin": {"burst": 5}}',
    })
    assert not settings.enabled
    assert settings.default_limits == QuotaLimits(120, 10, 3)
    assert dict(settings.role_limits) == {"Runs.ReadAll": QuotaLimits(600, 600, 50),
                                          "Tools.Admin": QuotaLimits(120, 5, 3)}
    assert (settings.table, settings.run_lease_s) == ("q2", 600.0)


@pytest.mark.parametrize("raw, message", [
    ("[1]", "JSON object"),
    ("{not json", "JSON object"),
    ('{"R": 5}', "must map to an object"),
    ('{"R": {"rate": 5}}', "must map to an object"),
    ('{"R": {"burst": 0}}', "positive integer"),
    ('{"R": {"burst": true}}', "positive integer"),
    ('{"R": {"max_concurrent_runs": 100000}}', "<= 500"),
], ids=["array", "malformed", "number", "unknown-field", "zero", "bool", "too-many-runs"])
def test_bad_role_limits_name_the_setting(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        QuotaSettings.from_env({"WEFT_QUOTA_ROLE_LIMITS": raw})
    assert "WEFT_QUOTA_ROLE_LIMITS" in str(info.value)


def test_the_most_generous_configured_role_wins_per_limit() -> None:
    settings = QuotaSettings(role_limits=(("Fast", QuotaLimits(600, 600, 2)), ("Wide", QuotaLimits(30, 30, 50)),
                                          ("Slow", QuotaLimits(5, 5, 1))))
    assert settings.limits_for(frozenset({"Fast", "Wide", "Other"})) == QuotaLimits(600, 600, 50)
    assert settings.limits_for(frozenset({"Other"})) == settings.default_limits
    assert settings.limits_for(frozenset({"Slow"})) == QuotaLimits(5, 5, 1)  # a role may also be stricter


# ------------------------------------------------------------------------------------------------- requests


def test_the_61st_request_in_a_minute_is_refused_and_another_caller_is_not(store: Any) -> None:
    clock = Clock()
    quotas = Quotas(store, QuotaSettings(), clock=clock)
    assert spend(quotas, A, 60) == 60
    with pytest.raises(RateLimited) as info:
        quotas.charge_request(A, NO_ROLES)
    assert info.value.retry_after_s == 1.0
    assert info.value.http_status == 429 and "60 per minute" in info.value.message
    assert spend(quotas, B, 60) == 60


def test_tokens_refill_at_the_per_minute_rate(store: Any) -> None:
    clock = Clock()
    quotas = Quotas(store, QuotaSettings(requests_per_minute=60, burst=60), clock=clock)
    assert spend(quotas, A, 70) == 60
    clock.now += 10.5
    assert spend(quotas, A, 20) == 10
    clock.now += 3600
    assert spend(quotas, A, 100) == 60  # never more than the burst


def test_retry_after_is_the_wait_for_the_next_token_in_whole_seconds(store: Any) -> None:
    clock = Clock()
    quotas = Quotas(store, QuotaSettings(requests_per_minute=6, burst=1), clock=clock)
    quotas.charge_request(A, NO_ROLES)
    with pytest.raises(RateLimited) as info:
        quotas.charge_request(A, NO_ROLES)
    assert info.value.retry_after_s == 10.0
    clock.now += 9.5
    with pytest.raises(RateLimited) as info:
        quotas.charge_request(A, NO_ROLES)
    assert info.value.retry_after_s == 1.0
    clock.now += 0.5
    quotas.charge_request(A, NO_ROLES)


def test_a_clock_running_behind_does_not_refill(store: Any) -> None:
    clock = Clock()
    quotas = Quotas(store, QuotaSettings(requests_per_minute=60, burst=2), clock=clock)
    assert spend(quotas, A, 2) == 2
    clock.now -= 30  # another instance whose clock is behind
    assert spend(quotas, A, 1) == 0
    clock.now += 31
    assert spend(quotas, A, 5) == 1


def test_role_limits_apply(store: Any) -> None:
    settings = QuotaSettings(role_limits=(("Runs.ReadAll", QuotaLimits(600, 600, 50)),))
    quotas = Quotas(store, settings, clock=Clock())
    assert spend(quotas, A, 700, frozenset({"Runs.ReadAll"})) == 600
    assert spend(quotas, B, 100, frozenset({"Runs.Submit"})) == 60


def test_disabled_quotas_admit_everything(store: Any) -> None:
    quotas = Quotas(store, QuotaSettings(enabled=False, requests_per_minute=1, max_concurrent_runs=1),
                    clock=Clock())
    assert spend(quotas, A, 100) == 100
    quotas.acquire_run(A, NO_ROLES, "r1")
    quotas.acquire_run(A, NO_ROLES, "r2")
    assert store.get(A, "rate") is None and store.get(A, "runs") is None


def test_threads_on_separate_sqlite_connections_spend_exactly_the_burst(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "quotas.sqlite"
    admitted: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        quotas = Quotas(SqliteQuotaStore(path), QuotaSettings(), clock=clock)  # one per "devhost process"
        barrier.wait()
        admitted.append(spend(quotas, A, 30))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(admitted) == 60


# ------------------------------------------------------------------------------------------------- runs


def test_concurrent_run_cap_is_idempotent_per_run_and_released(store: Any) -> None:
    clock = Clock()
    quotas = Quotas(store, QuotaSettings(max_concurrent_runs=2, run_retry_after_s=45), clock=clock)
    quotas.acquire_run(A, NO_ROLES, "r1")
    quotas.acquire_run(A, NO_ROLES, "r1")  # a retried submission takes no second slot
    quotas.acquire_run(A, NO_ROLES, "r2")
    with pytest.raises(RateLimited) as info:
        quotas.acquire_run(A, NO_ROLES, "r3")
    assert info.value.retry_after_s == 45 and "2 running runs" in info.value.message
    quotas.acquire_run(B, NO_ROLES, "b1")  # another caller is unaffected
    quotas.release_run(A, "r1")
    quotas.release_run(A, "r1")  # idempotent
    quotas.release_run(A, "never-acquired")
    quotas.acquire_run(A, NO_ROLES, "r3")
    assert quotas.running(A) == ["r2", "r3"]
    assert quotas.running(B) == ["b1"]


def test_a_lost_release_ends_with_the_lease(store: Any) -> None:
    clock = Clock()
    quotas = Quotas(store, QuotaSettings(max_concurrent_runs=1, run_lease_s=600), clock=clock)
    quotas.acquire_run(A, NO_ROLES, "crashed")
    clock.now += 599
    with pytest.raises(RateLimited):
        quotas.acquire_run(A, NO_ROLES, "next")
    clock.now += 1
    quotas.acquire_run(A, NO_ROLES, "next")
    assert quotas.running(A) == ["next"]


def test_run_roles_raise_the_cap(store: Any) -> None:
    settings = QuotaSettings(max_concurrent_runs=1, role_limits=(("Batch", QuotaLimits(60, 60, 3)),))
    quotas = Quotas(store, settings, clock=Clock())
    for run in ("r1", "r2", "r3"):
        quotas.acquire_run(A, frozenset({"Batch"}), run)
    with pytest.raises(RateLimited):
        quotas.acquire_run(A, frozenset({"Batch"}), "r4")


# ------------------------------------------------------------------------------------------------- failures


class FailingStore:
    """A store whose backend is down."""

    def get(self, caller_key: str, kind: str) -> State | None:
        raise ConnectionError("store unreachable")

    def update(self, caller_key: str, kind: str, change: Change[T]) -> T:
        raise ConnectionError("store unreachable")


class ContendedStore:
    """A store where every write loses its race."""

    def get(self, caller_key: str, kind: str) -> State | None:
        return None

    def update(self, caller_key: str, kind: str, change: Change[T]) -> T:
        raise QuotaContention("lost every race")


def test_an_unreachable_store_fails_open_by_default(caplog: pytest.LogCaptureFixture) -> None:
    quotas = Quotas(FailingStore(), QuotaSettings(requests_per_minute=1))
    assert spend(quotas, A, 5) == 5
    quotas.acquire_run(A, NO_ROLES, "r1")
    quotas.release_run(A, "r1")
    assert "letting the request through" in caplog.text


def test_an_unreachable_store_can_fail_closed() -> None:
    quotas = Quotas(FailingStore(), QuotaSettings(fail_open=False))
    with pytest.raises(UpstreamUnavailable):
        quotas.charge_request(A, NO_ROLES)
    with pytest.raises(UpstreamUnavailable):
        quotas.acquire_run(A, NO_ROLES, "r1")


def test_a_record_that_keeps_changing_refuses_the_request() -> None:
    quotas = Quotas(ContendedStore(), QuotaSettings())
    with pytest.raises(RateLimited) as info:
        quotas.charge_request(A, NO_ROLES)
    assert info.value.retry_after_s == 1.0
    with pytest.raises(RateLimited):
        quotas.acquire_run(A, NO_ROLES, "r1")


# ------------------------------------------------------------------------------------------------- building


def test_build_quotas_uses_sqlite_under_the_state_dir_without_storage(tmp_path: Path) -> None:
    quotas = build_quotas(QuotaSettings(), storage=PayloadSettings(), state_dir=tmp_path)
    assert isinstance(quotas.store, SqliteQuotaStore)
    assert quotas.store.path == tmp_path / "quotas.sqlite"


def test_build_quotas_uses_table_storage_with_a_connection_string(tmp_path: Path) -> None:
    from shared.identity.quota_store import TableQuotaStore

    storage = PayloadSettings(connection_string="UseDevelopmentStorage=true")
    quotas = build_quotas(QuotaSettings(table="mytable"), storage=storage, state_dir=tmp_path)
    assert isinstance(quotas.store, TableQuotaStore)
    assert quotas.store.table.table_name == "mytable"


def test_table_endpoint_is_derived_from_the_blob_endpoint() -> None:
    from shared.identity.quotas import table_endpoint

    assert table_endpoint(QuotaSettings(), "https://acct.blob.core.windows.net") == "https://acct.table.core.windows.net"
    assert table_endpoint(QuotaSettings(table_account_url="https://t.example"), "x") == "https://t.example"
    with pytest.raises(ValueError, match="WEFT_TABLE_ACCOUNT_URL"):
        table_endpoint(QuotaSettings(), "https://custom.example")

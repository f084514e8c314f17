"""Capacity (the per-process cap on local runs: defaults, environment, validation). The cap itself is a
``shared.concurrency.CrossLoopSemaphore`` (tests/unit/test_concurrency.py). No worker processes here:
tests/integration/sandbox/test_capacity.py has those."""

from __future__ import annotations

import dataclasses

import pytest

from shared.models import RetryPolicy
from shared.sandbox import Capacity, Limits, ProcessSandbox

INSTANCE_MEMORY_BYTES = 2048 * 2**20  # infra/main.bicep instanceMemoryMB default


def test_defaults_fit_the_default_instance_with_room_for_the_host() -> None:
    capacity = Capacity()
    budget = capacity.max_concurrent_runs * Limits().memory_bytes
    assert budget <= INSTANCE_MEMORY_BYTES - 512 * 2**20
    assert 0 < capacity.queue_wait_seconds <= Limits().wall_seconds
    assert capacity.retry_policy() == RetryPolicy(first_interval_ms=5000, max_attempts=5)


def test_capacity_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Capacity().max_concurrent_runs = 16  # type: ignore[misc]


def test_from_env_reads_the_four_settings() -> None:
    capacity = Capacity.from_env({
        "WEFT_SANDBOX_MAX_CONCURRENT_RUNS": "16", "WEFT_SANDBOX_QUEUE_WAIT_SECONDS": "2.5",
        "WEFT_SANDBOX_RETRY_INTERVAL_MS": "250", "WEFT_SANDBOX_RETRY_ATTEMPTS": "9",
    })
    assert capacity == Capacity(max_concurrent_runs=16, queue_wait_seconds=2.5, retry_interval_ms=250,
                                retry_attempts=9)
    assert Capacity.from_env({}) == Capacity()
    assert Capacity.from_env({"WEFT_SANDBOX_MAX_CONCURRENT_RUNS": ""}) == Capacity()


@pytest.mark.parametrize(("setting", "value"), [
    ("WEFT_SANDBOX_MAX_CONCURRENT_RUNS", "0"),
    ("WEFT_SANDBOX_MAX_CONCURRENT_RUNS", "-3"),
    ("WEFT_SANDBOX_MAX_CONCURRENT_RUNS", "two"),
    ("WEFT_SANDBOX_QUEUE_WAIT_SECONDS", "0"),
    ("WEFT_SANDBOX_QUEUE_WAIT_SECONDS", "-1.5"),
    ("WEFT_SANDBOX_RETRY_INTERVAL_MS", "0"),
    ("WEFT_SANDBOX_RETRY_ATTEMPTS", "-1"),
], ids=["runs-zero", "runs-negative", "runs-not-a-number", "wait-zero", "wait-negative", "interval-zero",
        "attempts-negative"])
def test_from_env_rejects_zero_and_negative_values_naming_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ValueError, match=setting):
        Capacity.from_env({setting: value})


@pytest.mark.parametrize(("field", "setting"), [
    ("max_concurrent_runs", "WEFT_SANDBOX_MAX_CONCURRENT_RUNS"),
    ("queue_wait_seconds", "WEFT_SANDBOX_QUEUE_WAIT_SECONDS"),
    ("retry_interval_ms", "WEFT_SANDBOX_RETRY_INTERVAL_MS"),
    ("retry_attempts", "WEFT_SANDBOX_RETRY_ATTEMPTS"),
], ids=["runs", "wait", "interval", "attempts"])
def test_direct_construction_rejects_zero_naming_the_setting(field: str, setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        Capacity(**{field: 0})


def test_the_sandbox_takes_its_cap_from_the_capacity() -> None:
    sandbox = ProcessSandbox(capacity=Capacity(max_concurrent_runs=7))
    assert sandbox.capacity.max_concurrent_runs == 7
    assert (sandbox.runs_active, sandbox.runs_waiting) == (0, 0)
    assert ProcessSandbox().capacity == Capacity()

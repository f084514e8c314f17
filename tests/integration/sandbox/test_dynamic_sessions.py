"""The dynamic-sessions backend against a loopback pool speaking the ``code/execute`` API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from shared.errors import SandboxLimitExceeded, SandboxViolation, UpstreamUnavailable
from shared.sandbox import CodeExecutor, DynamicSessionsExecutor, Limits, RecordedCall
from tests.fakes.dynamic_sessions_server import FakeDynamicSessionsPool

TOKEN = "dynamic-sessions-token"
CLOCK = "2025-03-01T08:00:00Z"
PROGRAM = """
import asyncio
async def main():
    temps = await asyncio.gather(*[get_weather(c) for c in ["Oslo", "Rome"]])
    print("temps", temps)
    return max(temps)
asyncio.run(main())
"""


@dataclass
class _Token:
    token: str
    expires_on: int


class FakeCredential:
    """azure-identity's ``get_token`` shape; counts requests per scope."""

    def __init__(self, token: str = TOKEN, lifetime: int = 3600) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self._token = token
        self._lifetime = lifetime

    def get_token(self, *scopes: str) -> _Token:
        self.scopes.append(scopes)
        return _Token(self._token, int(time.time()) + self._lifetime)


@pytest.fixture(scope="module")
def pool() -> Iterator[FakeDynamicSessionsPool]:
    with FakeDynamicSessionsPool(token=TOKEN) as server:
        yield server


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def executor(pool: FakeDynamicSessionsPool, credential: FakeCredential) -> Iterator[DynamicSessionsExecutor]:
    backend = DynamicSessionsExecutor(pool.endpoint, credential)
    yield backend
    backend.close()


def test_it_is_a_code_executor(executor: DynamicSessionsExecutor) -> None:
    assert isinstance(executor, CodeExecutor)


def test_replay_steps_run_in_the_session(executor: DynamicSessionsExecutor, pool: FakeDynamicSessionsPool,
                                         credential: FakeCredential) -> None:
    first = executor.step(PROGRAM, ["get_weather"], [], clock_iso=CLOCK, seed=1)
    assert [(c.call_id, c.args) for c in first.calls] == [("c1", ["Oslo"]), ("c2", ["Rome"])]
    recorded = [RecordedCall.succeeded(first.calls[0], 3), RecordedCall.succeeded(first.calls[1], 17)]
    done = executor.step(PROGRAM, ["get_weather"], recorded, clock_iso=CLOCK, seed=1)
    assert (done.status, done.result, done.stdout) == ("finished", 17, "temps [3, 17]\n")
    assert pool.errors == []
    assert pool.identifiers[-2] == pool.identifiers[-1]  # one session per run
    assert credential.scopes == [("https://dynamicsessions.io/.default",)]  # token cached across steps


def test_inline_mode_loops_steps_and_calls_tools_here(executor: DynamicSessionsExecutor,
                                                      pool: FakeDynamicSessionsPool) -> None:
    before = len(pool.identifiers)
    result = executor.run(PROGRAM, {"get_weather": lambda city: {"Oslo": 3, "Rome": 17}[city]})
    assert (result.result, result.stdout, len(result.tool_calls)) == (17, "temps [3, 17]\n", 2)
    sessions = pool.identifiers[before:]
    assert len(sessions) == 2 and len(set(sessions)) == 1
    other = executor.run("1", {})
    assert other.result == 1 and pool.identifiers[-1] != sessions[0]  # a new run, a new session


def test_code_errors_come_back_as_code_error(executor: DynamicSessionsExecutor) -> None:
    step = executor.step("{}['x']", [], [], clock_iso=CLOCK, seed=0)
    assert step.done and step.error is not None and step.error.type == "KeyError"


def test_policy_is_enforced_before_anything_is_sent(executor: DynamicSessionsExecutor,
                                                    pool: FakeDynamicSessionsPool) -> None:
    before = len(pool.requests)
    with pytest.raises(SandboxViolation, match="import of module 'os'"):
        executor.step("import os", [], [], clock_iso=CLOCK, seed=0)
    assert len(pool.requests) == before


def test_limits_reported_by_the_session_are_raised(executor: DynamicSessionsExecutor) -> None:
    with pytest.raises(SandboxLimitExceeded, match="printed more than 10 bytes"):
        executor.step("print('x' * 100)", [], [], Limits(stdout_bytes=10), clock_iso=CLOCK, seed=0)


def test_a_rejected_token_is_an_upstream_error(pool: FakeDynamicSessionsPool) -> None:
    backend = DynamicSessionsExecutor(pool.endpoint, FakeCredential(token="wrong"))
    try:
        with pytest.raises(UpstreamUnavailable, match="HTTP 401"):
            backend.step("1", [], [], clock_iso=CLOCK, seed=0)
    finally:
        backend.close()


def test_a_session_that_dies_without_an_outcome_is_a_limit(pool: FakeDynamicSessionsPool) -> None:
    short = FakeDynamicSessionsPool(token=TOKEN, timeout_seconds=0.5)
    with short:
        backend = DynamicSessionsExecutor(short.endpoint, FakeCredential())
        try:
            with pytest.raises(SandboxLimitExceeded, match="ended without an outcome"):
                backend.step("while True:\n    pass", [], [], Limits(cpu_seconds=30), clock_iso=CLOCK, seed=0)
        finally:
            backend.close()


def test_an_injected_http_client_is_used_and_left_open(pool: FakeDynamicSessionsPool) -> None:
    with httpx.Client() as client:
        backend = DynamicSessionsExecutor(pool.endpoint, FakeCredential(), http_client=client)
        assert backend.step("6 * 7", [], [], clock_iso=CLOCK, seed=0).result == 42
        backend.close()
        assert not client.is_closed


@pytest.mark.parametrize(
    ("timeout_seconds", "wall_seconds", "budget"),
    [
        pytest.param(60.0, 0.5, 1.0, id="wall-limit-plus-margin"),
        pytest.param(1.0, 30.0, 1.0, id="session-timeout"),
    ],
)
def test_a_request_is_given_up_at_the_wall_limit_or_the_session_timeout(
    timeout_seconds: float, wall_seconds: float, budget: float
) -> None:
    with FakeDynamicSessionsPool(token=TOKEN, timeout_seconds=4) as slow:  # the pool itself would wait 4 s
        backend = DynamicSessionsExecutor(slow.endpoint, FakeCredential(), timeout_seconds=timeout_seconds,
                                          wall_margin_seconds=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(SandboxLimitExceeded, match=f"did not finish within {budget:g} s") as caught:
                backend.step("while True:\n    pass", [], [], Limits(wall_seconds=wall_seconds, cpu_seconds=60),
                             clock_iso=CLOCK, seed=0)
        finally:
            backend.close()
        assert caught.value.field == "wall" and time.monotonic() - started < 3


def test_inline_steps_share_one_wall_clock_budget(pool: FakeDynamicSessionsPool) -> None:
    backend = DynamicSessionsExecutor(pool.endpoint, FakeCredential(), wall_margin_seconds=1.0)

    def get_weather(city: str) -> int:
        time.sleep(1.5)  # a slow tool, run here between the session's steps: it uses up the run's 1.5 s
        return len(city)

    before = len(pool.requests)
    try:
        with pytest.raises(SandboxLimitExceeded, match=r"within 1\.5 s .*wall-clock limit 0\.5 s"):
            backend.run(PROGRAM, {"get_weather": get_weather}, Limits(wall_seconds=0.5))
    finally:
        backend.close()
    assert len(pool.requests) - before == 1, "the second step was never sent: the budget was spent"


def test_the_token_lifetime_uses_the_cached_token(executor: DynamicSessionsExecutor,
                                                  credential: FakeCredential) -> None:
    assert 3590 < executor.token_lifetime() <= 3600
    executor.step("1", [], [], clock_iso=CLOCK, seed=0)
    assert 3590 < executor.token_lifetime() <= 3600
    assert len(credential.scopes) == 1, "the readiness probe and the executions share one token"

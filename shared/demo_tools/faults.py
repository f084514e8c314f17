"""Tools for exercising reliability: a deterministic delay, a deterministic flaky tool and one that always fails.

How ``flaky`` stays deterministic across retries and processes: Durable retries resend the same input, so the
attempt number cannot come from the arguments. Instead each call increments a counter in the shared SQLite file
(:meth:`NoteStore.next_count`) named by the call's idempotency key (``run_id:step_id``, from
:data:`shared.catalog.executor.current_call`), ``key`` and ``seed``; that count is the attempt number. Whether
attempt *n* fails is a pure function of ``(seed, key, n)`` (:func:`flaky_fails`), so the first attempt can fail in
one process and the retry succeed in another, and a rerun of the same run with the same key sees the same sequence.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

from pydantic import Field

from shared.catalog.executor import current_call
from shared.demo_tools.notes import NoteStore
from shared.errors import ToolFailed

__all__ = ["FaultTools", "fail_always", "flaky_fails", "slow"]

MAX_DELAY_MS = 600_000


async def slow(delay_ms: Annotated[int, Field(ge=0, le=MAX_DELAY_MS)] = 1000) -> dict[str, Any]:
    """Wait for delay_ms milliseconds, then return. Deterministic; for testing timeouts and parallelism.

    Args:
        delay_ms: How long to wait, from 0 to 600000 ms.
    """
    await asyncio.sleep(delay_ms / 1000.0)
    return {"delay_ms": delay_ms}


def fail_always(message: str = "this tool always fails", retryable: bool = False) -> dict[str, Any]:
    """Always fail with the given message. For testing error handling.

    Args:
        message: The error message.
        retryable: Fail with a retryable error (the orchestrator will retry it) instead of a permanent one.
    """
    if retryable:
        raise ToolFailed(message)
    raise RuntimeError(message)  # not retryable: see shared.errors.is_retryable


def flaky_fails(seed: int, key: str, attempt: int, failure_rate: float, fail_first: int = 0) -> bool:
    """Whether attempt ``attempt`` (1-based) of a flaky call fails: a pure function of its arguments."""
    if attempt <= fail_first:
        return True
    digest = hashlib.sha256(f"{seed}:{key}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < failure_rate


class FaultTools:
    """Fault tools that need the shared counters of a :class:`NoteStore`."""

    def __init__(self, store: NoteStore) -> None:
        self.store = store

    def flaky(
        self,
        failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.5,
        seed: int = 0,
        key: Annotated[str, Field(max_length=200)] = "default",
        fail_first: Annotated[int, Field(ge=0, le=100)] = 0,
    ) -> dict[str, Any]:
        """Fail or succeed deterministically, for testing retries: the first fail_first attempts fail, and each later
        attempt fails with probability failure_rate drawn from a generator seeded by (seed, key, attempt).

        Attempts are counted per call (run and step) across processes, so a retry is attempt 2 even on another
        worker. Failures are retryable.

        Args:
            failure_rate: Probability from 0 to 1 that an attempt after the first fail_first fails.
            seed: Seed of the failure sequence.
            key: Names an independent failure sequence.
            fail_first: How many first attempts always fail.
        """
        call = current_call.get()
        scope = call.idempotency_key if call is not None else "-"
        attempt = self.store.next_count(f"flaky|{scope}|{key}|{seed}")
        if flaky_fails(seed, key, attempt, failure_rate, fail_first):
            raise ToolFailed(f"flaky: simulated failure on attempt {attempt} (seed {seed}, key {key!r})")
        return {"attempt": attempt, "key": key, "seed": seed}

"""Per-tool circuit breaker, with its state in shared storage so every instance and run sees the same circuit.

    closed ──(N consecutive failures)──► open ──(cooldown elapsed; one caller gets the trial)──► half_open
      ▲                                   ▲                                                         │
      └─────────────(trial succeeds)──────┼──────────────────────────────────────────────────────────┘
                                          └──────────────(trial fails)───────────────────────────────┘

While open, calls are rejected with :class:`~shared.errors.CircuitOpen`. After the cooldown the first caller becomes
the trial (half-open) and the others keep being rejected; if the trial neither succeeds nor fails within the trial
lease (its worker died), the next caller becomes the trial.

Why a storage row and not a Durable entity: the breaker is consulted inside the ``call_tool`` activity, so it must
not add orchestrator replays or entity round trips to every tool call, and the devhost does not emulate entities.
State is therefore a small record per tool behind :class:`BreakerStore`:

- :class:`BlobBreakerStore` — one JSON blob per tool, updated with ETag optimistic concurrency (``if_match``) and
  retried on conflict; for Azure, where instances are separate machines. The app uses it whenever Blob Storage is
  configured (container ``WEFT_BREAKER_CONTAINER``, see :mod:`shared.runtime`).
- :class:`SqliteBreakerStore` — one file shared by all processes on one machine (``<WEFT_STATE_DIR>/breakers.sqlite``:
  devhost, tests, local runs without storage); each change is a read-modify-write inside ``BEGIN IMMEDIATE``.
- :class:`MemoryBreakerStore` — one process, for unit tests.

A healthy tool (closed, no failures counted) is remembered as such for ``closed_cache_s`` (one second): within that
time its calls read nothing and write nothing (unchanged records are not written), where a read per check and per
success would cost a thread hop and a store round trip (a blob GET in Azure) on every tool call. A circuit that
another instance opens is therefore seen up to that long later; a failure in this process is seen at once (a read
that overlapped it is not cached). Successes within the cached time are not written, so they do not reset failures
that another instance counted meanwhile: across instances, the threshold counts failures not separated by a
success this breaker saw in the store. If the store fails, the breaker logs it and lets calls through: losing the
breaker must not stop every tool.

The clock is injected (``Callable[[], float]``, wall-clock seconds shared by all machines), so tests do not sleep.
Transitions are logged, returned and passed to ``on_transition(tool, old, new)`` for telemetry.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from shared.errors import CircuitOpen, UpstreamUnavailable
from shared.settings import env_float, env_int, env_str
from shared.sqlite_file import SqliteFile

__all__ = [
    "BlobBreakerStore",
    "BreakerRecord",
    "BreakerSettings",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "MemoryBreakerStore",
    "SqliteBreakerStore",
    "Transition",
]

logger = logging.getLogger(__name__)

Change = Callable[["BreakerRecord"], "BreakerRecord"]


class BreakerState(StrEnum):
    """Where a tool's circuit is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerRecord:
    """A tool's stored breaker state."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    """Consecutive failures."""
    opened_at: float = 0.0
    """When the circuit last opened (clock seconds)."""
    trial_until: float = 0.0
    """While half-open: when the current trial's lease ends."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what the blob store writes)."""
        return {
            "state": self.state.value,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "trial_until": self.trial_until,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            BreakerState(data.get("state", "closed")),
            int(data.get("failures", 0)),
            float(data.get("opened_at", 0.0)),
            float(data.get("trial_until", 0.0)),
        )


@dataclass(frozen=True)
class BreakerSettings:
    """Breaker thresholds, and where the state lives in Blob Storage. Build with :meth:`from_env`."""

    failure_threshold: int = 5
    """Consecutive failures that open the circuit (WEFT_BREAKER_FAILURE_THRESHOLD)."""
    cooldown_s: float = 30.0
    """How long the circuit stays open before a trial call (WEFT_BREAKER_COOLDOWN_S)."""
    trial_lease_s: float = 60.0
    """How long a half-open trial may take before another caller may try (WEFT_BREAKER_TRIAL_LEASE_S)."""
    container: str = "weft-breakers"
    """Blob container of the breaker state when Blob Storage is configured (WEFT_BREAKER_CONTAINER)."""
    closed_cache_s: float = 1.0
    """How long a tool seen healthy is trusted without reading its record again; 0 reads on every call
    (WEFT_BREAKER_CLOSED_CACHE_S)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BreakerSettings:
        """Read the ``WEFT_BREAKER_*`` settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(
            failure_threshold=env_int(env, "WEFT_BREAKER_FAILURE_THRESHOLD", cls.failure_threshold, minimum=1),
            cooldown_s=env_float(env, "WEFT_BREAKER_COOLDOWN_S", cls.cooldown_s, minimum=0.0),
            trial_lease_s=env_float(env, "WEFT_BREAKER_TRIAL_LEASE_S", cls.trial_lease_s, minimum=0.0),
            container=env_str(env, "WEFT_BREAKER_CONTAINER", cls.container),
            closed_cache_s=env_float(env, "WEFT_BREAKER_CLOSED_CACHE_S", cls.closed_cache_s, minimum=0.0),
        )


@dataclass(frozen=True)
class Transition:
    """A change of a tool's circuit state."""

    tool: str
    """The tool whose circuit changed."""
    old: BreakerState
    """The state before."""
    new: BreakerState
    """The state after."""


# --------------------------------------------------------------------------------------------------- stores


class BreakerStore(Protocol):
    """Where breaker records live; ``update`` must be atomic across every process sharing the store."""

    def get(self, tool: str) -> BreakerRecord:
        """The tool's record (a closed, fresh record if there is none)."""
        ...

    def update(self, tool: str, change: Change) -> tuple[BreakerRecord, BreakerRecord]:
        """Atomically replace the record by ``change(record)``; return ``(old, new)``.

        ``change`` must be pure: optimistic stores call it again when they lose a race.
        """
        ...


class MemoryBreakerStore:
    """Records in a dict, for one process (unit tests)."""

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}
        self._lock = threading.Lock()

    def get(self, tool: str) -> BreakerRecord:
        """See :meth:`BreakerStore.get`."""
        return self._records.get(tool, BreakerRecord())

    def update(self, tool: str, change: Change) -> tuple[BreakerRecord, BreakerRecord]:
        """See :meth:`BreakerStore.update`."""
        with self._lock:
            old = self._records.get(tool, BreakerRecord())
            new = change(old)
            self._records[tool] = new
            return old, new


class SqliteBreakerStore:
    """Records in a SQLite file shared by every process on one machine (devhost, tests)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._file = SqliteFile(path, "CREATE TABLE IF NOT EXISTS breaker (tool TEXT PRIMARY KEY, state TEXT NOT NULL, "
                                      "failures INTEGER NOT NULL, opened_at REAL NOT NULL, trial_until REAL NOT NULL)",
                                timeout_s=timeout_s)

    def _thread_conn(self) -> sqlite3.Connection:
        """One connection per thread, kept open: a breaker check runs on every tool call."""
        return self._file.connection()

    @staticmethod
    def _read(conn: sqlite3.Connection, tool: str) -> BreakerRecord:
        row = conn.execute(
            "SELECT state, failures, opened_at, trial_until FROM breaker WHERE tool = ?", (tool,)
        ).fetchone()
        return BreakerRecord(BreakerState(row[0]), row[1], row[2], row[3]) if row else BreakerRecord()

    def get(self, tool: str) -> BreakerRecord:
        """See :meth:`BreakerStore.get`."""
        return self._read(self._thread_conn(), tool)

    def update(self, tool: str, change: Change) -> tuple[BreakerRecord, BreakerRecord]:
        """See :meth:`BreakerStore.update`: the read and the write share one ``BEGIN IMMEDIATE`` transaction."""
        conn = self._thread_conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = self._read(conn, tool)
            new = change(old)
            if new != old:
                conn.execute(
                    "INSERT INTO breaker (tool, state, failures, opened_at, trial_until) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(tool) DO UPDATE SET state = excluded.state, failures = excluded.failures, "
                    "opened_at = excluded.opened_at, trial_until = excluded.trial_until",
                    (tool, new.state.value, new.failures, new.opened_at, new.trial_until),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return old, new


class BlobBreakerStore:
    """One JSON blob per tool (``{prefix}{tool}.json``), changed with ETag optimistic concurrency.

    ``container_client`` is an ``azure.storage.blob.ContainerClient``; the container is created on first write.
    A write that loses a race (412, or 409 when two writers create the blob) re-reads and re-applies the change.
    """

    def __init__(
        self,
        container_client: Any,
        *,
        prefix: str = "breaker/",
        max_attempts: int = 20,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._container = container_client
        self._prefix = prefix
        self._max_attempts = max_attempts
        self._sleep = sleep

    def _blob(self, tool: str) -> Any:
        return self._container.get_blob_client(f"{self._prefix}{tool}.json")

    def _read(self, tool: str) -> tuple[BreakerRecord, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._blob(tool).download_blob()
        except ResourceNotFoundError:
            return BreakerRecord(), None
        return BreakerRecord.from_dict(json.loads(downloader.readall())), downloader.properties.etag

    def get(self, tool: str) -> BreakerRecord:
        """See :meth:`BreakerStore.get`."""
        return self._read(tool)[0]

    def update(self, tool: str, change: Change) -> tuple[BreakerRecord, BreakerRecord]:
        """See :meth:`BreakerStore.update`."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        for attempt in range(self._max_attempts):
            old, etag = self._read(tool)
            new = change(old)
            if new == old:
                return old, new
            data = json.dumps(new.to_dict())
            try:
                if etag is None:
                    self._blob(tool).upload_blob(data, overwrite=False)
                else:
                    self._blob(tool).upload_blob(
                        data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                return old, new
            except (ResourceModifiedError, ResourceExistsError):
                self._sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # full jitter; not orchestrator code
            except ResourceNotFoundError:
                self._create_container()
        raise UpstreamUnavailable(f"breaker state of tool {tool!r}: gave up after {self._max_attempts} write conflicts")

    def _create_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._container.create_container()
        except ResourceExistsError:
            logger.debug("breaker container already exists")


# --------------------------------------------------------------------------------------------------- breaker


class CircuitBreaker:
    """Per-tool circuit breaker over a :class:`BreakerStore`. Thread-safe if the store is."""

    def __init__(
        self,
        store: BreakerStore,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_transition: Callable[[str, BreakerState, BreakerState], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._monotonic = monotonic  # the healthy cache's own clock: a wall-clock step must not stretch it
        self._on_transition = on_transition
        self._healthy_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._failures_here = 0  # bumped by every failure recorded here: a read that overlapped one is not cached

    def known_healthy(self, tool: str) -> bool:
        """Whether ``tool`` was seen closed with no failures within ``closed_cache_s``: then :meth:`check` and
        :meth:`record_success` touch no store, and a caller may skip them (and the thread hop to reach them)."""
        until = self._healthy_until.get(tool)
        if until is None:
            return False
        if self._monotonic() < until:
            return True
        with self._lock:
            if self._healthy_until.get(tool) == until:
                del self._healthy_until[tool]
        return False

    def _seen(self, tool: str, record: BreakerRecord, failures_before: int) -> None:
        """Cache what a store read said of ``tool``, unless a failure was recorded here since the read began."""
        with self._lock:
            if record != BreakerRecord() or failures_before != self._failures_here:
                self._healthy_until.pop(tool, None)
            elif self.settings.closed_cache_s > 0:
                self._healthy_until[tool] = self._monotonic() + self.settings.closed_cache_s

    def _failure_here(self, tool: str) -> None:
        with self._lock:
            self._failures_here += 1
            self._healthy_until.pop(tool, None)

    def state(self, tool: str) -> BreakerRecord:
        """The tool's current record."""
        return self.store.get(tool)

    def allow(self, tool: str) -> bool:
        """Whether a call to ``tool`` may go ahead now; after the cooldown, exactly one caller gets the trial."""
        if self.known_healthy(tool):
            return True
        try:
            failures_before = self._failures_here
            record = self.store.get(tool)
            self._seen(tool, record, failures_before)
            if record.state is BreakerState.CLOSED:
                return True
            now = self._clock()
            if not self._trial_due(record, now):
                return False
            granted = False

            def change(current: BreakerRecord) -> BreakerRecord:
                nonlocal granted
                granted = current.state is BreakerState.CLOSED or self._trial_due(current, now)
                if current.state is BreakerState.CLOSED or not granted:
                    return current
                return replace(current, state=BreakerState.HALF_OPEN, trial_until=now + self.settings.trial_lease_s)

            self._apply(tool, change)
            return granted
        except Exception:  # the breaker fails open: see the module docstring
            logger.warning("circuit breaker store failed for tool %s; allowing the call", tool, exc_info=True)
            return True

    def check(self, tool: str) -> None:
        """Raise :class:`CircuitOpen` (retryable) unless :meth:`allow`."""
        if self.allow(tool):
            return
        record = self._read_or_open(tool)
        why = ("a trial call is checking whether it has recovered" if record.state is BreakerState.HALF_OPEN
               else "it is cooling down")
        raise CircuitOpen(
            f"tool {tool!r} is temporarily disabled after {record.failures} consecutive failures ({why}); "
            f"try again in {self._wait(record):.0f} s"
        )

    def retry_after(self, tool: str) -> float:
        """Seconds until a call to ``tool`` is worth trying again: 0 while the circuit is closed or a trial is due;
        the rest of the cool-down while open; while half-open, the rest of the trial's lease, at most one cool-down
        (a trial that succeeds closes the circuit well before its lease ends)."""
        return self._wait(self._read_or_open(tool))

    def _read_or_open(self, tool: str) -> BreakerRecord:
        try:
            return self.store.get(tool)
        except Exception:
            logger.warning("circuit breaker store failed for tool %s", tool, exc_info=True)
            return BreakerRecord(BreakerState.OPEN, opened_at=self._clock())

    def _wait(self, record: BreakerRecord) -> float:
        now = self._clock()
        if record.state is BreakerState.HALF_OPEN:
            wait = min(record.trial_until - now, self.settings.cooldown_s)
        elif record.state is BreakerState.OPEN:
            wait = record.opened_at + self.settings.cooldown_s - now
        else:
            wait = 0.0
        return max(0.0, wait)

    def record_success(self, tool: str) -> Transition | None:
        """A call succeeded: reset the failure count; a half-open circuit closes."""

        def change(current: BreakerRecord) -> BreakerRecord:
            if current.state is BreakerState.OPEN:  # a call admitted before the circuit opened: not a trial
                return current
            return BreakerRecord()

        if self.known_healthy(tool):
            return None
        try:
            failures_before = self._failures_here
            record = self.store.get(tool)
            if record == BreakerRecord():
                self._seen(tool, record, failures_before)
                return None
            transition = self._apply(tool, change)
            self._healthy_until.pop(tool, None)  # seen healthy again at the next check's read
            return transition
        except Exception:
            logger.warning("circuit breaker store failed for tool %s; success not recorded", tool, exc_info=True)
            return None

    def give_back_trial(self, tool: str) -> None:
        """A call that may have been granted the half-open trial did not run after all: the trial is due again at
        once, for the next caller (else every call would wait out the trial lease)."""

        def change(current: BreakerRecord) -> BreakerRecord:
            return replace(current, trial_until=0.0) if current.state is BreakerState.HALF_OPEN else current

        try:
            if not self.known_healthy(tool):
                self._apply(tool, change)
        except Exception:
            logger.warning("circuit breaker store failed for tool %s; trial not given back", tool, exc_info=True)

    def record_failure(self, tool: str) -> Transition | None:
        """A call failed: count it; the threshold (or a failed trial) opens the circuit."""
        now = self._clock()
        threshold = self.settings.failure_threshold

        def change(current: BreakerRecord) -> BreakerRecord:
            failures = current.failures + 1
            if current.state is BreakerState.HALF_OPEN or (
                current.state is BreakerState.CLOSED and failures >= threshold
            ):
                return BreakerRecord(BreakerState.OPEN, failures, opened_at=now)
            return replace(current, failures=failures)

        self._failure_here(tool)
        try:
            return self._apply(tool, change)
        except Exception:
            logger.warning("circuit breaker store failed for tool %s; failure not recorded", tool, exc_info=True)
            return None
        finally:
            self._failure_here(tool)  # also after the write: a read that began while it was in flight is not cached

    def _trial_due(self, record: BreakerRecord, now: float) -> bool:
        if record.state is BreakerState.OPEN:
            return now >= record.opened_at + self.settings.cooldown_s
        return record.state is BreakerState.HALF_OPEN and now >= record.trial_until

    def _apply(self, tool: str, change: Change) -> Transition | None:
        old, new = self.store.update(tool, change)
        if old.state is new.state:
            return None
        transition = Transition(tool, old.state, new.state)
        if new.state is BreakerState.OPEN:
            logger.warning("circuit for tool %s opened after %d consecutive failures", tool, new.failures)
        else:
            logger.info("circuit for tool %s: %s -> %s", tool, old.state.value, new.state.value)
        if self._on_transition is not None:
            try:
                self._on_transition(tool, old.state, new.state)
            except Exception:
                logger.exception("on_transition hook failed for tool %s", tool)
        return transition

"""The audit trail: who did what, when, with what outcome — append-only, kept for the retention period.

One :class:`AuditRecord` per state-changing API call (submit, cancel, approve, deny, register or remove a source,
reload) and per *execution* of a side-effecting tool (each attempt: a repeated execution shows as two records). A
record names the caller, the action, the run/step/tool, a SHA-256 of the arguments (never their values), the outcome
(``ok`` or an error code), the attempt and a correlation id.

:class:`AuditTrail` is what the app calls: it writes the record to the durable store and emits the Application
Insights custom event ``weft.audit`` with the same fields (:mod:`shared.telemetry.events`; nothing is sent when
telemetry is not configured). Stores (:mod:`shared.identity.audit_store`):

- :class:`~shared.identity.audit_store.AppendBlobAuditStore` — append blobs, one per hour (a new part before an
  append blob's 50,000-block limit), one JSON line per ``append_block``, in ``WEFT_AUDIT_CONTAINER``; the Bicep gives
  the container a time-based immutability policy with ``allowProtectedAppendWrites`` so blocks can be added but no
  record changed or deleted before the retention ends.
- :class:`~shared.identity.audit_store.SqliteAuditStore` — ``<WEFT_STATE_DIR>/audit.sqlite``, insert-only (a trigger
  refuses updates).
- :class:`~shared.identity.audit_store.MemoryAuditStore` — one process, for unit tests.

No API updates a record; :meth:`AuditTrail.purge` removes only records older than the retention
(``WEFT_AUDIT_RETENTION_DAYS``), whatever it is asked, and in Blob Storage only whole hour blobs, which the
immutability policy may still refuse (then they stay, harmlessly).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.settings import env_int, env_str

if TYPE_CHECKING:
    from shared.payloads import PayloadSettings
    from shared.telemetry.events import EventSink

__all__ = [
    "AUDIT_EVENT",
    "AuditAction",
    "AuditLog",
    "AuditRecord",
    "AuditSettings",
    "AuditTrail",
    "as_utc",
    "build_audit_log",
]

logger = logging.getLogger(__name__)

AUDIT_EVENT = "weft.audit"
"""Name of the Application Insights custom event of every record."""

DETAIL_MAX_CHARS = 500
"""A record's ``detail`` is cut to this many characters: a short note, not a payload."""

AuditAction = Literal[
    "run.submit", "run.cancel", "run.approve", "run.deny", "source.register", "source.remove", "catalog.reload",
    "tool.execute",
]


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AuditRecord(BaseModel):
    """One audited action. Never holds argument values, secrets or tokens: ``args_sha256`` stands for arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64)
    """Unique id of the record (a store keeps the first record of an id)."""
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    """When it happened (UTC)."""
    caller: str = Field(min_length=1, max_length=300)
    """Caller key ``"<tenant id>/<object id>"`` (or the service/local caller's key)."""
    caller_name: str = Field(default="", max_length=300)
    """A human-readable name of the caller (UPN, app name), when known."""
    action: AuditAction
    """What was done."""
    run_id: str | None = Field(default=None, max_length=200)
    """The run acted on, if any."""
    step_id: str | None = Field(default=None, max_length=200)
    """The step of a tool execution."""
    tool: str | None = Field(default=None, max_length=200)
    """The tool executed or approved."""
    args_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 (hex) of the tool call's canonical JSON arguments."""
    outcome: str = Field(min_length=1, max_length=100)
    """``ok`` or the error code."""
    attempt: int | None = Field(default=None, ge=0)
    """Attempt number of a tool execution (1 for the first)."""
    correlation_id: str | None = Field(default=None, max_length=200)
    """Request or trace id tying the record to telemetry."""
    detail: str = ""
    """A short note (cut to :data:`DETAIL_MAX_CHARS`); no secrets or argument values."""

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @field_validator("detail")
    @classmethod
    def _short(cls, value: str) -> str:
        return value if len(value) <= DETAIL_MAX_CHARS else value[: DETAIL_MAX_CHARS - 1] + "…"

    def to_line(self) -> bytes:
        """One JSON line (UTF-8, ending in a newline): what an append blob block holds."""
        return (self.model_dump_json() + "\n").encode()

    def event_properties(self) -> dict[str, str]:
        """The custom event's properties: every field that is set, as text."""
        data = self.model_dump(mode="json", exclude_none=True)
        return {key: str(value) for key, value in data.items()}


class AuditLog(Protocol):
    """An append-only record of audited actions."""

    def append(self, record: AuditRecord) -> None:
        """Add ``record``; never changes or removes another one."""
        ...

    def query(self, *, run_id: str | None = None, caller: str | None = None, since: datetime | None = None,
              limit: int = 100) -> list[AuditRecord]:
        """Records from ``since`` on, oldest first, of that run and/or caller, at most ``limit``."""
        ...

    def purge(self, older_than: datetime) -> int:
        """Remove records older than ``older_than`` (whole storage units only); return how many records went."""
        ...


@dataclass(frozen=True)
class AuditSettings:
    """Where the audit trail is kept and for how long. Build with :meth:`from_env`."""

    container: str = "weft-audit"
    """Blob container of the append blobs when Blob Storage is configured (WEFT_AUDIT_CONTAINER)."""
    retention_days: int = 365
    """How long records are kept; the Bicep sets the container's immutability period from the same parameter
    (WEFT_AUDIT_RETENTION_DAYS)."""
    query_max: int = 1000
    """Most records one query returns (WEFT_AUDIT_QUERY_MAX)."""

    @property
    def retention(self) -> timedelta:
        """The retention period."""
        return timedelta(days=self.retention_days)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuditSettings:
        """Read the ``WEFT_AUDIT_*`` settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(
            container=env_str(env, "WEFT_AUDIT_CONTAINER", cls.container),
            retention_days=env_int(env, "WEFT_AUDIT_RETENTION_DAYS", cls.retention_days, minimum=1),
            query_max=env_int(env, "WEFT_AUDIT_QUERY_MAX", cls.query_max, minimum=1),
        )


class AuditTrail:
    """The app's audit log: a store plus the ``weft.audit`` custom event of every record, with the query bound and
    the retention applied. Thread-safe if the store is."""

    def __init__(self, store: AuditLog, settings: AuditSettings | None = None, *, events: EventSink | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings or AuditSettings()
        self._events = events
        self._clock = clock

    def append(self, record: AuditRecord) -> None:
        """Store ``record`` and emit its custom event; the event goes out even when the store fails (then the store's
        error is raised), so the action is not lost from sight."""
        try:
            self.store.append(record)
        finally:
            if self._events is not None:
                self._events.emit(AUDIT_EVENT, record.event_properties())

    def query(self, *, run_id: str | None = None, caller: str | None = None, since: datetime | None = None,
              limit: int = 100) -> list[AuditRecord]:
        """See :meth:`AuditLog.query`; ``limit`` is held to 1..WEFT_AUDIT_QUERY_MAX and ``since`` defaults to the
        start of the retention period."""
        start = as_utc(since) if since is not None else self._now() - self.settings.retention
        bounded = max(1, min(limit, self.settings.query_max))
        return self.store.query(run_id=run_id, caller=caller, since=start, limit=bounded)

    def purge(self, older_than: datetime | None = None) -> int:
        """Remove records older than ``older_than`` but never younger than the retention (the default cut-off)."""
        cutoff = self._now() - self.settings.retention
        if older_than is not None:
            cutoff = min(cutoff, as_utc(older_than))
        removed = self.store.purge(cutoff)
        logger.info("audit purge: %d records older than %s removed", removed, cutoff.isoformat())
        return removed

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def parse_audit_query(params: Mapping[str, str]) -> dict[str, Any]:
    """``run_id``, ``caller``, ``since`` (ISO 8601) and ``limit`` of ``GET /api/audit`` as :meth:`AuditTrail.query`
    arguments; :class:`~shared.errors.InvalidRequest` names a bad one."""
    from shared.errors import InvalidRequest

    unknown = sorted(set(params) - {"run_id", "caller", "since", "limit", "code"})
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0][:40]!r}", field=unknown[0][:40])
    query: dict[str, Any] = {}
    for name in ("run_id", "caller"):
        value = params.get(name)
        if value is not None:
            if not 0 < len(value) <= 300:
                raise InvalidRequest(f"{name} must be 1 to 300 characters", field=name)
            query[name] = value
    since = params.get("since")
    if since is not None:
        try:
            query["since"] = as_utc(datetime.fromisoformat(since[:40]))
        except ValueError:
            raise InvalidRequest("since must be an ISO 8601 time, e.g. 2026-12-07T10:00:00Z", field="since") from None
    raw_limit = params.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 5 and int(raw_limit) >= 1):
        raise InvalidRequest("limit must be a positive integer", field="limit")
    query["limit"] = int(raw_limit)
    return query


def build_audit_log(settings: AuditSettings, *, container: Any = None, storage: PayloadSettings | None = None,
                    credential: Any = None, state_dir: str | os.PathLike[str] = ".weft-cache",
                    events: EventSink | None = None, client_options: Mapping[str, Any] | None = None,
                    clock: Callable[[], float] = time.time) -> AuditTrail:
    """The audit trail on the store the configuration calls for: append blobs in ``container`` when given, else in
    ``settings.container`` of the configured storage account (``storage``: the payload store's connection string or
    account URL), else ``<state_dir>/audit.sqlite``. ``events`` is usually ``custom_events(runtime.telemetry)``."""
    from shared.identity.audit_store import AppendBlobAuditStore, SqliteAuditStore

    store: AuditLog
    if container is None and storage is not None:
        from shared.payloads import container_client

        container = container_client(storage, settings.container, credential, **dict(client_options or {}))
    if container is not None:
        store = AppendBlobAuditStore(container, clock=clock)
    else:
        store = SqliteAuditStore(Path(state_dir) / "audit.sqlite")
    return AuditTrail(store, settings, events=events, clock=clock)

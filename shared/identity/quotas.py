"""Per-caller quotas shared by every instance: a request-rate token bucket and a concurrent-run cap.

Each caller (``"<tenant id>/<object id>"``) has two small records behind :class:`QuotaStore`:

- ``rate`` — a token bucket: ``burst`` tokens at most, refilled continuously at ``requests_per_minute / 60`` tokens a
  second; a request spends one token, and with none left it is refused with :class:`~shared.errors.RateLimited`
  whose ``retry_after_s`` is the time until the next token (whole seconds, at least 1). A refused request writes
  nothing, so a caller hammering the API costs one read per request.
- ``runs`` — the caller's running runs, each with a lease that ends ``WEFT_QUOTA_RUN_LEASE_S`` after it was taken:
  a run whose release was lost (a crashed host) stops counting when its lease ends instead of blocking its caller
  forever. Taking a slot is idempotent per run id (a retried submission does not take two).

Limits come from :class:`QuotaSettings`; ``WEFT_QUOTA_ROLE_LIMITS`` gives roles their own limits and a caller gets, per
limit, the most generous of the roles it holds that are configured (the defaults when it holds none of them, so an
operator may also give a role *lower* limits).

The records live in a :class:`~shared.identity.quota_store.QuotaStore` (:mod:`shared.identity.quota_store`): Azure
Table Storage with ETag optimistic concurrency (two instances never both spend the last token), SQLite under
``WEFT_STATE_DIR`` for one machine, or memory for unit tests; :func:`build_quotas` chooses.

When the store cannot be reached the quota *fails open* by default (``WEFT_QUOTA_FAIL_OPEN``): the request goes
ahead and a warning is logged, because losing the quota store must not stop the API. A caller whose record keeps
changing under it (more conflicts than ``WEFT_QUOTA_MAX_CONFLICT_RETRIES``) is hammering its own bucket and is refused.
The clock is injected (wall-clock seconds shared by every machine), so tests do not sleep.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import RateLimited, UpstreamUnavailable
from shared.identity.quota_store import (
    Change,
    MemoryQuotaStore,
    QuotaContention,
    QuotaStore,
    SqliteQuotaStore,
    State,
    TableQuotaStore,
)
from shared.settings import env_bool, env_float, env_int, env_str

__all__ = [
    "MemoryQuotaStore",
    "QuotaLimits",
    "QuotaSettings",
    "QuotaStore",
    "Quotas",
    "SqliteQuotaStore",
    "TableQuotaStore",
    "build_quotas",
]

if TYPE_CHECKING:
    from shared.payloads import PayloadSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

RATE = "rate"
RUNS = "runs"

MAX_RUN_SLOTS = 500
"""The largest concurrent-run cap a role may have: a caller's leases are one JSON property of one table entity,
and Table Storage holds at most 64 KiB in a string property."""


@dataclass(frozen=True)
class QuotaLimits:
    """One caller's limits."""

    requests_per_minute: int
    """Tokens refilled per minute."""
    burst: int
    """Most tokens the bucket holds: how many requests may come at once after a quiet spell."""
    max_concurrent_runs: int
    """Most runs the caller may have running at once."""


@dataclass(frozen=True)
class QuotaSettings:
    """Quota limits and where they are kept. Build with :meth:`from_env`."""

    enabled: bool = True
    """Enforce quotas at all (WEFT_QUOTA_ENABLED)."""
    requests_per_minute: int = 60
    """Default request rate per caller (WEFT_QUOTA_REQUESTS_PER_MINUTE)."""
    burst: int = 0
    """Default bucket size; 0 means ``requests_per_minute`` (WEFT_QUOTA_BURST)."""
    max_concurrent_runs: int = 10
    """Default cap of a caller's running runs (WEFT_QUOTA_MAX_CONCURRENT_RUNS)."""
    role_limits: tuple[tuple[str, QuotaLimits], ...] = ()
    """Per-role limits (WEFT_QUOTA_ROLE_LIMITS, JSON: ``{"Runs.ReadAll": {"requests_per_minute": 600, "burst": 600,
    "max_concurrent_runs": 50}}``; omitted fields take the defaults, ``burst`` the role's per-minute rate)."""
    table: str = "weftquotas"
    """Table of the quota records when storage is configured (WEFT_QUOTA_TABLE)."""
    table_account_url: str = ""
    """Table endpoint reached with the managed identity (WEFT_TABLE_ACCOUNT_URL); when empty it is derived from
    WEFT_BLOB_ACCOUNT_URL (``.blob.`` → ``.table.``)."""
    run_lease_s: float = 86_400.0
    """How long a concurrent-run slot lasts without a release: the longest a run may take (WEFT_QUOTA_RUN_LEASE_S)."""
    run_retry_after_s: float = 30.0
    """``Retry-After`` of a caller at its concurrent-run cap; runs take seconds to hours, so this is a polling hint
    (WEFT_QUOTA_RUN_RETRY_AFTER_S)."""
    fail_open: bool = True
    """Let requests through (and log) when the quota store fails (WEFT_QUOTA_FAIL_OPEN)."""
    max_conflict_retries: int = 10
    """Attempts of one change that keeps losing ETag races before the request is refused
    (WEFT_QUOTA_MAX_CONFLICT_RETRIES)."""

    @property
    def default_limits(self) -> QuotaLimits:
        """The limits of a caller holding no configured role."""
        return QuotaLimits(self.requests_per_minute, self.burst or self.requests_per_minute, self.max_concurrent_runs)

    def limits_for(self, roles: frozenset[str]) -> QuotaLimits:
        """Per limit, the most generous of the caller's configured roles; the defaults if it holds none."""
        held = [limits for role, limits in self.role_limits if role in roles]
        if not held:
            return self.default_limits
        return QuotaLimits(
            max(limits.requests_per_minute for limits in held),
            max(limits.burst for limits in held),
            max(limits.max_concurrent_runs for limits in held),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QuotaSettings:
        """Read the ``WEFT_QUOTA_*`` settings from ``env`` (default ``os.environ``); ValueError names a bad one."""
        env = os.environ if env is None else env
        base = cls(
            enabled=env_bool(env, "WEFT_QUOTA_ENABLED", cls.enabled),
            requests_per_minute=env_int(env, "WEFT_QUOTA_REQUESTS_PER_MINUTE", cls.requests_per_minute, minimum=1),
            burst=env_int(env, "WEFT_QUOTA_BURST", cls.burst, minimum=0),
            max_concurrent_runs=_run_cap(
                env_int(env, "WEFT_QUOTA_MAX_CONCURRENT_RUNS", cls.max_concurrent_runs, minimum=1),
                "WEFT_QUOTA_MAX_CONCURRENT_RUNS"),
            table=env_str(env, "WEFT_QUOTA_TABLE", cls.table),
            table_account_url=env_str(env, "WEFT_TABLE_ACCOUNT_URL", cls.table_account_url),
            run_lease_s=env_float(env, "WEFT_QUOTA_RUN_LEASE_S", cls.run_lease_s, minimum=1.0),
            run_retry_after_s=env_float(env, "WEFT_QUOTA_RUN_RETRY_AFTER_S", cls.run_retry_after_s, minimum=1.0),
            fail_open=env_bool(env, "WEFT_QUOTA_FAIL_OPEN", cls.fail_open),
            max_conflict_retries=env_int(env, "WEFT_QUOTA_MAX_CONFLICT_RETRIES", cls.max_conflict_retries,
                                         minimum=1),
        )
        raw = env_str(env, "WEFT_QUOTA_ROLE_LIMITS", "")
        if not raw.strip():
            return base
        return QuotaSettings(**{**base.__dict__, "role_limits": _parse_role_limits(raw, base.default_limits)})


def _run_cap(value: int, name: str) -> int:
    if value > MAX_RUN_SLOTS:
        raise ValueError(f"setting {name} must be <= {MAX_RUN_SLOTS}, got {value}")
    return value


def _parse_role_limits(raw: str, defaults: QuotaLimits) -> tuple[tuple[str, QuotaLimits], ...]:
    name = "WEFT_QUOTA_ROLE_LIMITS"
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"setting {name} must be a JSON object: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"setting {name} must be a JSON object of role name -> limits")
    known = {"requests_per_minute", "burst", "max_concurrent_runs"}
    parsed: list[tuple[str, QuotaLimits]] = []
    for role, limits in data.items():
        if not isinstance(limits, dict) or not set(limits) <= known:
            raise ValueError(f"setting {name}: role {role!r} must map to an object with {sorted(known)}")
        values: dict[str, int] = {}
        for key, value in limits.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"setting {name}: {role}.{key} must be a positive integer, got {value!r}")
            values[key] = value
        rate = values.get("requests_per_minute", defaults.requests_per_minute)
        burst = values.get("burst", rate if "requests_per_minute" in values else defaults.burst)
        runs = _run_cap(values.get("max_concurrent_runs", defaults.max_concurrent_runs), f"{name} {role}")
        parsed.append((str(role), QuotaLimits(rate, burst, runs)))
    return tuple(parsed)


# --------------------------------------------------------------------------------------------------- quotas


class Quotas:
    """Charges requests and run slots to callers; thread-safe if the store is."""

    def __init__(self, store: QuotaStore, settings: QuotaSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings or QuotaSettings()
        self._clock = clock

    def charge_request(self, caller_key: str, roles: frozenset[str]) -> None:
        """Spend one request token of the caller, or raise :class:`RateLimited` with the wait for the next one."""
        if not self.settings.enabled:
            return
        limits = self.settings.limits_for(roles)
        rate = limits.requests_per_minute / 60.0
        now = self._clock()

        def change(state: State | None) -> tuple[State | None, float]:
            tokens, at = (float(limits.burst), now) if state is None else (float(state["tokens"]),
                                                                            float(state["at"]))
            tokens = min(float(limits.burst), tokens + max(0.0, now - at) * rate)  # a clock behind: no refill
            if tokens >= 1.0:
                return {"tokens": tokens - 1.0, "at": max(now, at)}, 0.0
            return None, (1.0 - tokens) / rate

        wait = self._apply(caller_key, RATE, change, allowed=0.0, refused=1.0 / rate)
        if wait > 0:
            retry = float(max(1, math.ceil(wait)))
            raise RateLimited(
                f"request rate limit reached ({limits.requests_per_minute} per minute, bursts of {limits.burst}); "
                f"retry after {retry:.0f} s", retry_after_s=retry)

    def acquire_run(self, caller_key: str, roles: frozenset[str], run_id: str) -> None:
        """Take a concurrent-run slot for ``run_id`` (idempotent), or raise :class:`RateLimited` at the cap."""
        if not self.settings.enabled:
            return
        cap = self.settings.limits_for(roles).max_concurrent_runs
        now = self._clock()
        expires = now + self.settings.run_lease_s

        def change(state: State | None) -> tuple[State | None, bool]:
            leases = {} if state is None else dict(state["runs"])
            live = {run: until for run, until in leases.items() if until > now}
            pruned = {"runs": live} if live != leases else None
            if run_id in live:
                return pruned, True
            if len(live) >= cap:
                return pruned, False
            return {"runs": {**live, run_id: expires}}, True

        if not self._apply(caller_key, RUNS, change, allowed=True, refused=False):
            retry = self.settings.run_retry_after_s
            raise RateLimited(f"concurrent run limit reached ({cap} running runs); retry after {retry:.0f} s",
                              retry_after_s=retry)

    def release_run(self, caller_key: str, run_id: str) -> None:
        """Give back ``run_id``'s slot (idempotent). A failure is logged: the slot's lease ends it anyway."""
        if not self.settings.enabled:
            return
        now = self._clock()

        def change(state: State | None) -> tuple[State | None, None]:
            if state is None:
                return None, None
            leases = dict(state["runs"])
            live = {run: until for run, until in leases.items() if until > now and run != run_id}
            return ({"runs": live} if live != leases else None), None

        try:
            self.store.update(caller_key, RUNS, change)
        except Exception:
            logger.warning("could not release a run slot of run %s; it ends with its lease", run_id, exc_info=True)

    def running(self, caller_key: str) -> list[str]:
        """The run ids holding a slot of the caller now (for operators and tests)."""
        state = self.store.get(caller_key, RUNS)
        now = self._clock()
        return sorted(run for run, until in (state or {}).get("runs", {}).items() if until > now)

    def _apply(self, caller_key: str, kind: str, change: Change[T], *, allowed: T, refused: T) -> T:
        """``change``'s result; ``refused`` when the record keeps changing under us, ``allowed`` (or an error) when
        the store fails."""
        try:
            return self.store.update(caller_key, kind, change)
        except QuotaContention:
            logger.warning("quota record %s of a caller kept changing under us; refusing the request", kind)
            return refused
        except Exception as exc:
            if not self.settings.fail_open:
                raise UpstreamUnavailable("the quota store is unavailable; try again later") from exc
            logger.warning("quota store failed (%s); letting the request through", type(exc).__name__,
                           exc_info=True)
            return allowed


def table_endpoint(settings: QuotaSettings, blob_account_url: str) -> str:
    """The table endpoint for managed-identity access: the setting, else the blob endpoint's ``.table.`` twin."""
    if settings.table_account_url:
        return settings.table_account_url
    if ".blob." in blob_account_url:
        return blob_account_url.replace(".blob.", ".table.", 1)
    raise ValueError("WEFT_TABLE_ACCOUNT_URL is not set and cannot be derived from WEFT_BLOB_ACCOUNT_URL "
                     f"{blob_account_url!r}")


def build_quotas(settings: QuotaSettings, *, table_client: Any = None, storage: PayloadSettings | None = None,
                 credential: Any = None, state_dir: str | os.PathLike[str] = ".weft-cache",
                 client_options: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] = time.time) -> Quotas:
    """Quotas on the store the configuration calls for.

    ``table_client`` when given; else Table Storage in the configured storage account (``storage``: the payload
    store's settings) — through its connection string (Azurite's locally), or through the managed identity at
    :func:`table_endpoint`; else ``<state_dir>/quotas.sqlite``. ``client_options`` go to the table client (e.g. the
    runtime's fail-fast retry options: a quota is charged on every request).
    """
    store: QuotaStore
    options = dict(client_options or {})
    retries = settings.max_conflict_retries
    connection_string = storage.connection_string if storage is not None else ""
    blob_account_url = storage.account_url if storage is not None else ""
    if table_client is not None:
        store = TableQuotaStore(table_client, max_attempts=retries)
    elif connection_string:
        from azure.data.tables import TableClient

        store = TableQuotaStore(TableClient.from_connection_string(connection_string, settings.table, **options),
                                max_attempts=retries)
    elif settings.table_account_url or blob_account_url:
        from azure.data.tables import TableClient

        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        store = TableQuotaStore(TableClient(table_endpoint(settings, blob_account_url), settings.table,
                                            credential=credential, **options), max_attempts=retries)
    else:
        store = SqliteQuotaStore(Path(state_dir) / "quotas.sqlite")
    return Quotas(store, settings, clock=clock)

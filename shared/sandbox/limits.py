"""Resource limits for one sandbox run, as one frozen object with sane defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.models import RetryPolicy
from shared.settings import env_float, env_int

__all__ = ["Capacity", "Limits"]

ENV_PREFIX = "WEFT_SANDBOX_"
MAX_CONCURRENT_RUNS = "WEFT_SANDBOX_MAX_CONCURRENT_RUNS"
QUEUE_WAIT_SECONDS = "WEFT_SANDBOX_QUEUE_WAIT_SECONDS"
RETRY_INTERVAL_MS = "WEFT_SANDBOX_RETRY_INTERVAL_MS"
RETRY_ATTEMPTS = "WEFT_SANDBOX_RETRY_ATTEMPTS"
PREFORK_WORKERS = "WEFT_SANDBOX_PREFORK_WORKERS"
WORKER_SLICE_US = "WEFT_SANDBOX_WORKER_SLICE_US"


@dataclass(frozen=True)
class Limits:
    """Every limit a sandbox run enforces. Build from the environment with :meth:`from_env`.

    Each field can be set with ``WEFT_SANDBOX_<FIELD NAME IN UPPER CASE>``, e.g. ``WEFT_SANDBOX_CPU_SECONDS=2``.
    """

    cpu_seconds: float = 5.0
    """CPU time the code may use (the worker is stopped when it runs out)."""
    wall_seconds: float = 30.0
    """Wall-clock time for the whole run, including waiting for tools in inline mode; then the worker is killed.
    The code's (virtual) sleeps count against it too."""
    memory_bytes: int = 512 * 1024 * 1024
    """Address-space limit of the worker process (includes the interpreter's own ~30 MB)."""
    stdout_bytes: int = 64 * 1024
    """Printed output the code may produce."""
    max_tool_calls: int = 100
    """Tool calls per run (replay: counted over the whole run, recorded calls included)."""
    max_result_bytes: int = 256 * 1024
    """Size of the code's result as JSON."""
    max_code_bytes: int = 64 * 1024
    """UTF-8 bytes of the code itself: the one code-size rule, for a caller's code (checked on admission) and the
    task planner's alike."""
    max_tool_args_bytes: int = 64 * 1024
    """Size of one tool call's arguments as JSON."""
    max_tool_result_bytes: int = 1024 * 1024
    """Size of one tool result as JSON (inline mode; larger results reach the code as a ToolError)."""
    max_recursion_depth: int = 500
    """Nested Python calls the code may make."""
    max_rounds: int = 20
    """Replay mode: steps (rounds of tool calls) per run; enforced by the orchestrator that drives the steps."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """Read ``WEFT_SANDBOX_*`` settings; unset or empty ones keep their defaults."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = ENV_PREFIX + field.name.upper()
            default = field.default
            if isinstance(default, float):
                values[field.name] = env_float(env, name, default, minimum=0.001)
            else:
                values[field.name] = env_int(env, name, int(default), minimum=1)  # type: ignore[arg-type]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON data (for activity inputs and Durable history)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones keep their defaults."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown sandbox limits: {', '.join(sorted(unknown))}")
        return cls(**dict(data))

    def worker_view(self) -> dict[str, Any]:
        """The limits the worker enforces itself, as JSON data."""
        return {
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "memory_bytes": self.memory_bytes,
            "stdout_bytes": self.stdout_bytes,
            "max_tool_calls": self.max_tool_calls,
            "max_result_bytes": self.max_result_bytes,
            "max_tool_args_bytes": self.max_tool_args_bytes,
            "max_recursion_depth": self.max_recursion_depth,
            "max_frame_bytes": self.max_tool_result_bytes + 4096,
        }

    def max_message_bytes(self) -> int:
        """The largest message the parent accepts from a worker."""
        return self.stdout_bytes + self.max_result_bytes + self.max_tool_calls * (self.max_tool_args_bytes + 256) + (
            64 * 1024
        )


@dataclass(frozen=True)
class Capacity:
    """How many local sandbox runs one process holds at once, and what becomes of the others.

    Per process, not per run: every worker may take up to ``Limits.memory_bytes``, so ``max_concurrent_runs`` of
    them must fit the instance's memory next to the host and the Python worker (docs/operations.md, "host.json on
    Flex Consumption"). A run beyond the cap waits for a slot, first come first served, for at most
    ``queue_wait_seconds``; then it fails with the retryable ``SandboxBusy`` and the orchestrator tries the activity
    again ``retry_attempts`` times in all, ``retry_interval_ms`` apart. Build from the environment with
    :meth:`from_env`.
    """

    max_concurrent_runs: int = 3
    """Local sandbox runs (live worker processes) at once per process (WEFT_SANDBOX_MAX_CONCURRENT_RUNS)."""
    queue_wait_seconds: float = 30.0
    """How long a run beyond the cap waits for a slot before it fails with ``SandboxBusy``
    (WEFT_SANDBOX_QUEUE_WAIT_SECONDS)."""
    retry_interval_ms: int = 5000
    """Durable retry interval of the code-mode activities after a retryable sandbox failure
    (WEFT_SANDBOX_RETRY_INTERVAL_MS)."""
    retry_attempts: int = 5
    """Attempts per code-mode activity, the first included (WEFT_SANDBOX_RETRY_ATTEMPTS)."""
    prefork_workers: int = 2
    """Idle workers forked ahead of time so a run does not wait for a fork (WEFT_SANDBOX_PREFORK_WORKERS; 0: fork
    on demand). Each holds one of the ``max_concurrent_runs`` slots while idle, so the cap on live workers holds."""
    worker_slice_us: int = 100
    """Scheduler time slice asked for the zygote and its workers, in microseconds (WEFT_SANDBOX_WORKER_SLICE_US;
    0: the kernel's default). On Linux 6.12+ (EEVDF custom slices) a short slice lets a worker that wakes up to its
    job run at once instead of after a busy neighbour's slice (about 3 ms at a load of 10 on 2 cores); it grants no
    more CPU.
    Best effort: ignored where the kernel does not support it; the kernel clamps it to 100 us-100 ms."""

    def __post_init__(self) -> None:
        settings = {
            "max_concurrent_runs": MAX_CONCURRENT_RUNS, "queue_wait_seconds": QUEUE_WAIT_SECONDS,
            "retry_interval_ms": RETRY_INTERVAL_MS, "retry_attempts": RETRY_ATTEMPTS,
        }
        for name, setting in settings.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{setting} (Capacity.{name}) must be a positive number, got {value!r}")
        for name, setting in (("prefork_workers", PREFORK_WORKERS), ("worker_slice_us", WORKER_SLICE_US)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{setting} (Capacity.{name}) must be 0 or more, got {value!r}")
        try:
            self.retry_policy()
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"{RETRY_INTERVAL_MS}/{RETRY_ATTEMPTS} do not make a retry policy: {exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Capacity:
        """Read the six settings; unset or empty ones keep their defaults; negative ones, and zero where a count or a
        time must be positive, are an error."""
        return cls(
            max_concurrent_runs=env_int(env, MAX_CONCURRENT_RUNS, cls.max_concurrent_runs, minimum=1),
            queue_wait_seconds=env_float(env, QUEUE_WAIT_SECONDS, cls.queue_wait_seconds, minimum=0.001),
            retry_interval_ms=env_int(env, RETRY_INTERVAL_MS, cls.retry_interval_ms, minimum=1),
            retry_attempts=env_int(env, RETRY_ATTEMPTS, cls.retry_attempts, minimum=1),
            prefork_workers=env_int(env, PREFORK_WORKERS, cls.prefork_workers, minimum=0),
            worker_slice_us=env_int(env, WORKER_SLICE_US, cls.worker_slice_us, minimum=0),
        )

    def retry_policy(self) -> RetryPolicy:
        """The Durable retry of code-mode activities."""
        return RetryPolicy(first_interval_ms=self.retry_interval_ms, max_attempts=self.retry_attempts)

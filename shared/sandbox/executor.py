"""The executor seam and the module-level entry points ``run_code`` and ``run_replay_step``.

``CodeExecutor`` is what the rest of Weft depends on; :class:`~shared.sandbox.process.ProcessSandbox` (local worker
processes, the default) and :class:`~shared.sandbox.dynamic_sessions.DynamicSessionsExecutor` (Azure Container Apps
dynamic sessions) implement it. The default executor is created on first use, never at import time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .limits import Capacity, Limits
from .process import Confinement, ProcessSandbox
from .records import CodeResult, RecordedCall, ReplayStep

__all__ = ["CodeExecutor", "default_executor", "run_code", "run_replay_step"]


@runtime_checkable
class CodeExecutor(Protocol):
    """Runs sandboxed code; raises ``SandboxViolation`` for policy violations, ``SandboxLimitExceeded`` for limits."""

    def run(self, code: str, tools: Mapping[str, Callable[..., Any]], limits: Limits | None = None) -> CodeResult:
        """Inline mode: run ``code`` to the end, executing each tool call through ``tools`` as it is made."""
        ...

    def step(
        self,
        code: str,
        tool_names: Sequence[str],
        recorded: Sequence[RecordedCall],
        limits: Limits | None = None,
        *,
        clock_iso: str,
        seed: int,
    ) -> ReplayStep:
        """Replay mode: run ``code`` from the start with ``recorded`` results; stop at the first unrecorded call."""
        ...

    def close(self) -> None:
        """Release processes or connections held by the executor."""
        ...


_default: ProcessSandbox | None = None
_default_lock = threading.Lock()


def default_executor() -> ProcessSandbox:
    """The process-wide local sandbox used by :func:`run_code` and :func:`run_replay_step` (created on first use).

    Its :class:`Capacity` (the cap on concurrent runs in this process) and :class:`Confinement`
    (``WEFT_SANDBOX_REQUIRE_SECCOMP``) are read from the environment once, then.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = ProcessSandbox(capacity=Capacity.from_env(os.environ),
                                      confinement=Confinement.from_env(os.environ))
        return _default


def run_code(code: str, tools: Mapping[str, Callable[..., Any]], limits: Limits | None = None) -> CodeResult:
    """Run ``code`` in the local sandbox, inline mode.

    Each name in ``tools`` becomes an async function inside the code (``await get_weather("Oslo")``); the callables
    may be sync or async and run here, in the caller's process. ``asyncio.gather`` runs calls in parallel; top-level
    ``await`` and ``asyncio.run(main())`` both work.

    Returns a :class:`CodeResult` (an uncaught error in the code is ``CodeResult.error``). Raises
    ``SandboxViolation`` when the code breaks the policy and ``SandboxLimitExceeded`` when it hits a limit.
    """
    return default_executor().run(code, tools, limits)


def run_replay_step(
    code: str,
    tool_names: Sequence[str],
    recorded: Sequence[RecordedCall],
    limits: Limits | None = None,
    *,
    clock_iso: str,
    seed: int,
) -> ReplayStep:
    """One durable replay step: run ``code`` from the start in the local sandbox, feeding it ``recorded`` results.

    The first time every task of the code waits on tool calls that have no recorded result, the step stops and
    returns them all (``ReplayStep.status == "pending"``; ten for an ``asyncio.gather`` of ten) with deterministic
    ids ``c1``, ``c2``…; record a result or error for each and call again with the longer record. Time
    (``clock_iso``), randomness (``seed``) and task scheduling inside the code come from the run, so a replay makes the
    same calls again; if the calls differ from the record (or the code ends without making recorded calls) it raises
    ``SandboxViolation`` ("replay diverged …"). Input and output are JSON-serialisable (``to_dict``/``from_dict``).
    """
    return default_executor().step(code, tool_names, recorded, limits, clock_iso=clock_iso, seed=seed)

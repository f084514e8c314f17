"""Executes one tool call: argument validation, circuit breaker, per-tool concurrency, timeout, result size.

:meth:`ToolExecutor.execute` never raises for a tool-level failure: it returns ``ToolResult(ok=False, error=...)``.
Only programming errors (and cancellation) propagate.

Retryability is decided in one place, :func:`retryable`: ``shared.errors.is_retryable`` of the failure, and only
when the tool is idempotent or has no side effects. A tool signals a permanent failure by raising a non-retryable
error (``InvalidRequest``, ``ToolArgumentsInvalid``, or any exception ``is_retryable`` rejects, such as
``ValueError``) and a transient one with ``ToolFailed``, ``UpstreamUnavailable``, ``ConnectionError`` or
``TimeoutError``.

The circuit breaker counts only transient failures (those ``is_retryable`` accepts): a tool that rejects bad input
is answering, and must not be switched off for everyone because one caller keeps sending bad input.

The call's idempotency key (``run_id:step_id``, the same across retries and restarts) reaches the tool two ways: as
the ``idempotency_key`` argument of a Python tool that declares one, and through the :data:`current_call` context
variable (which also carries the attempt number), readable from sync and async tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError, to_jsonable_python

from shared.catalog.breaker import BreakerSettings, CircuitBreaker
from shared.catalog.catalog import Catalog
from shared.catalog.tool import CallGate, NotRun, call_gate
from shared.concurrency import CrossLoopSemaphore
from shared.errors import (
    ApprovalRequired,
    CancelCheckUnavailable,
    CircuitOpen,
    InvalidRequest,
    NotConfigured,
    ToolArgumentsInvalid,
    ToolFailed,
    ToolNotFound,
    ToolTimeout,
    is_retryable,
)
from shared.models import ErrorInfo, ToolCall, ToolResult, ToolSpec
from shared.settings import env_float, env_int, env_str

__all__ = ["ResultSink", "ToolExecutor", "ToolSettings", "current_call", "retryable"]

logger = logging.getLogger(__name__)

current_call: ContextVar[ToolCall | None] = ContextVar("weft_current_call", default=None)
"""The call being executed, visible to the tool (``current_call.get().idempotency_key``); ``None`` outside calls."""


@dataclass(frozen=True)
class ToolSettings:
    """Tool execution settings. Build with :meth:`from_env`."""

    timeout_s: float = 30.0
    """Per-call timeout for tools whose spec sets none (WEFT_TOOL_TIMEOUT_S)."""
    max_result_bytes: int = 256 * 1024
    """Largest result (UTF-8 JSON bytes) returned inline (WEFT_TOOL_MAX_RESULT_BYTES); a larger one goes to the
    ``result_sink`` and comes back as its reference with a preview, or truncated when there is no sink or it fails.
    The app lowers it to WEFT_PAYLOAD_INLINE_MAX_BYTES (``RuntimeSettings.inline_result_bytes``)."""
    max_concurrency: int = 32
    """Concurrent calls per tool in one process, unless the spec or ``concurrency`` says otherwise
    (WEFT_TOOL_MAX_CONCURRENCY)."""
    concurrency: Mapping[str, int] = field(default_factory=dict)
    """Per-tool overrides, ``WEFT_TOOL_CONCURRENCY="slow=2,search.web=4"``; win over the spec."""
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    """Circuit breaker thresholds (``WEFT_BREAKER_*``), for building the :class:`CircuitBreaker`."""
    cancel_check_threads: int = 8
    """Threads of one executor that ask the gates (cancel checks) of calls to async and remote tools
    (WEFT_CANCEL_CHECK_THREADS), apart from the default thread pool: slow cancel-mark reads abandoned at their call's
    timeout hold these, not the threads other calls and the breaker need. A sync tool asks its gate in the thread
    that runs it."""
    cancel_check_timeout_s: float = 5.0
    """Client-side timeout of the connection and of the read of a run's cancel mark in Blob Storage, asked just
    before a side-effecting call, tried once (WEFT_CANCEL_CHECK_TIMEOUT_S): a read that hangs gives its thread back
    this long after its call ended ``cancel_check_unavailable``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ToolSettings:
        """Read ``WEFT_TOOL_*`` and ``WEFT_BREAKER_*`` from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(
            timeout_s=env_float(env, "WEFT_TOOL_TIMEOUT_S", cls.timeout_s, minimum=0.001),
            max_result_bytes=env_int(env, "WEFT_TOOL_MAX_RESULT_BYTES", cls.max_result_bytes, minimum=1),
            max_concurrency=env_int(env, "WEFT_TOOL_MAX_CONCURRENCY", cls.max_concurrency, minimum=1),
            concurrency=_parse_concurrency(env_str(env, "WEFT_TOOL_CONCURRENCY", "")),
            breaker=BreakerSettings.from_env(env),
            cancel_check_threads=env_int(env, "WEFT_CANCEL_CHECK_THREADS", cls.cancel_check_threads, minimum=1),
            cancel_check_timeout_s=env_float(env, "WEFT_CANCEL_CHECK_TIMEOUT_S", cls.cancel_check_timeout_s,
                                             minimum=0.001),
        )

    def concurrency_for(self, spec: ToolSpec) -> int:
        """The concurrency limit of one tool: override, else the spec's, else the default."""
        return self.concurrency.get(spec.name) or spec.max_concurrency or self.max_concurrency


def _parse_concurrency(raw: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"setting WEFT_TOOL_CONCURRENCY: expected 'tool=N,...' with N >= 1, got {item!r}")
        limits[name.strip()] = int(value)
    return limits


class ResultSink(Protocol):
    """Stores a result too large to travel inline (e.g. in Blob Storage) and returns a reference to it."""

    async def put(self, call: ToolCall, payload: bytes) -> str:
        """Store ``payload`` (the result as UTF-8 JSON) for ``call``; return a reference for ``ToolResult.blob_ref``."""
        ...


def retryable(exc: BaseException, spec: ToolSpec | None) -> bool:
    """Whether a failed call is worth repeating: the error says so and repeating cannot double an effect."""
    if not is_retryable(exc):
        return False
    return spec is None or spec.idempotent or not spec.side_effects


class ToolExecutor:
    """Runs tool calls from a :class:`Catalog`. One per process; safe to share between threads and event loops."""

    def __init__(
        self,
        catalog: Catalog,
        breaker: CircuitBreaker | None = None,
        settings: ToolSettings | None = None,
        *,
        result_sink: ResultSink | None = None,
    ) -> None:
        self.catalog = catalog
        self.breaker = breaker
        self.settings = settings or ToolSettings()
        self.result_sink = result_sink
        self._limiters: dict[tuple[str, int], CrossLoopSemaphore] = {}
        self._limiters_lock = threading.Lock()
        self._gate_threads = ThreadPoolExecutor(self.settings.cancel_check_threads, "weft-gate")

    def retry_after(self, tool: str) -> float:
        """Seconds until ``tool``'s circuit lets a call through (:meth:`CircuitBreaker.retry_after`); 0 without a
        breaker. Blocking: it reads the breaker's store."""
        return self.breaker.retry_after(tool) if self.breaker is not None else 0.0

    async def execute(self, call: ToolCall, *, approved: bool = False,
                      gate: Callable[[], None] | None = None) -> ToolResult:
        """Run ``call`` and return its result; tool-level failures are ``ok=False`` results, not exceptions.

        A tool marked ``requires_approval`` runs only with ``approved=True``, which the caller passes after checking
        a human's approval of this very call (``call_tool``); by default it fails with ``approval_required``.
        ``gate`` (blocking; raises, e.g. ``RunCanceled``, when the call must not run after all) is asked at the last
        moment, after any wait for a concurrency slot (:data:`~shared.catalog.tool.call_gate`), within the call's
        timeout, on this executor's own threads (``cancel_check_threads``) unless a sync tool asks it in its worker
        thread; a refusal, a gate that fails, or a call whose timeout ends before it started (its gate unanswered, or
        waiting for a thread), is a failed result of a call that did not run (:class:`~shared.catalog.tool.NotRun`)."""
        start = time.perf_counter()
        spec: ToolSpec | None = None
        try:
            entry = self.catalog.get(call.tool)
            spec = entry.spec
            if spec.requires_approval and not approved:
                raise ApprovalRequired(f"{call.tool} needs a human's approval of this call before it runs")
            if entry.transport is None:
                raise NotConfigured(f"tool {call.tool!r} is in the catalog but has no implementation in this app")
            problems = entry.check_args(call.args)
            if problems:
                message = "; ".join(f"{problem.field()}: {problem.message}" for problem in problems[:5])
                raise ToolArgumentsInvalid(f"{call.tool}: {message}", field=problems[0].field())
            limiter = self._limiter(spec)
            await limiter.acquire()
            admission = CallGate(gate)
            gated = call_gate.set(admission)
            try:
                value = await self._call(entry.transport, spec, call, admission)
            finally:
                call_gate.reset(gated)
                limiter.release()
            return await self._success(call, value, start)
        except NotRun as refused:  # nothing ran: retryable when the gate could not tell, whatever the tool
            error = ErrorInfo.from_exception(refused.error, retryable=refused.error.retryable)
            return ToolResult(ok=False, error=error, latency_ms=_since(start))
        except (ToolNotFound, InvalidRequest, NotConfigured, CircuitOpen, ApprovalRequired) as exc:
            return self._failure(call, exc, spec, start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, ToolFailed | ToolTimeout):
                logger.warning("tool %s raised (run %s, step %s)", call.tool, call.run_id, call.step_id, exc_info=True)
            return self._failure(call, exc, spec, start)

    async def _call(self, transport: Any, spec: ToolSpec, call: ToolCall, gate: CallGate) -> Any:
        """Breaker check, the gate and the call under its timeout, breaker record. Raises what the tool raised."""
        if self.breaker is not None and not self.breaker.known_healthy(spec.name):
            await asyncio.to_thread(self.breaker.check, spec.name)  # CircuitOpen while the circuit is open
        timeout = spec.timeout_s or self.settings.timeout_s
        token = current_call.set(call)
        try:
            async with asyncio.timeout(timeout) as deadline:
                if gate.check is not None and not getattr(transport, "gates_itself", False):
                    await asyncio.get_running_loop().run_in_executor(self._gate_threads,
                                                                     copy_context().run, gate.ask)
                    gate.start()
                value = await transport.call(call.args, idempotency_key=call.idempotency_key, timeout_s=timeout)
        except TimeoutError as exc:
            never_started = gate.give_up()
            if deadline.expired() and never_started and gate.check is not None:  # its gate answered late, if at all
                await self._give_back_trial(spec.name)
                raise NotRun(CancelCheckUnavailable(
                    f"the call was not run: whether its run was canceled could not be read within its {timeout:g} s"
                    " timeout")) from None
            if deadline.expired():
                error: Exception = ToolTimeout(f"tool {spec.name!r} did not answer within {timeout:g} s")
                await self._record(spec.name, error)
                raise error from None
            await self._record(spec.name, exc)
            raise
        except asyncio.CancelledError:
            raise
        except NotRun:  # the gate said nothing of the tool's health; a trial this call was granted is given back
            await self._give_back_trial(spec.name)
            raise
        except Exception as exc:
            await self._record(spec.name, exc)
            raise
        finally:
            current_call.reset(token)
        await self._record(spec.name, None)
        return value

    async def _give_back_trial(self, tool: str) -> None:
        if self.breaker is not None:
            await asyncio.to_thread(self.breaker.give_back_trial, tool)

    async def _record(self, tool: str, exc: BaseException | None) -> None:
        """Only transient failures (timeouts, outages) count against the circuit; a permanent error such as bad
        input means the tool answered, which is what the breaker measures."""
        if self.breaker is None:
            return
        if exc is not None and is_retryable(exc):
            await asyncio.to_thread(self.breaker.record_failure, tool)
        elif not self.breaker.known_healthy(tool):
            await asyncio.to_thread(self.breaker.record_success, tool)

    async def _success(self, call: ToolCall, value: Any, start: float) -> ToolResult:
        try:
            jsonable = to_jsonable_python(value)
            payload = json.dumps(jsonable, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            error = ErrorInfo(
                code=ToolFailed.code, message=f"{call.tool} returned a value that is not JSON: {exc}", retryable=False
            )
            return ToolResult(ok=False, error=error, latency_ms=_since(start))
        size = len(payload)
        limit = self.settings.max_result_bytes
        if size <= limit:
            return ToolResult(ok=True, value=jsonable, latency_ms=_since(start), size_bytes=size)
        blob_ref = None
        if self.result_sink is not None:
            try:
                blob_ref = await self.result_sink.put(call, payload)
            except Exception:
                logger.warning("storing the large result of %s failed; truncating it", call.tool, exc_info=True)
        preview = payload[:limit].decode("utf-8", errors="ignore")
        return ToolResult(
            ok=True, value=preview, latency_ms=_since(start), size_bytes=size, truncated=True, blob_ref=blob_ref
        )

    def _failure(self, call: ToolCall, exc: BaseException, spec: ToolSpec | None, start: float) -> ToolResult:
        error = ErrorInfo.from_exception(exc, retryable=retryable(exc, spec))
        logger.info("tool %s failed (run %s, step %s): %s", call.tool, call.run_id, call.step_id, error.code)
        return ToolResult(ok=False, error=error, latency_ms=_since(start))

    def _limiter(self, spec: ToolSpec) -> CrossLoopSemaphore:
        key = (spec.name, self.settings.concurrency_for(spec))
        with self._limiters_lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = CrossLoopSemaphore(key[1])
            return limiter


def _since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)

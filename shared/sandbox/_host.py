"""Host-side helpers shared by the executors: input checks, calling tools, and what a worker's outcome means.

A worker's outcome is a ``_runtime`` terminal message; :func:`raise_for` turns violations and limits into Weft
exceptions, :func:`to_code_result`/:func:`to_replay_step` turn the rest into the public records.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared.errors import InvalidRequest, NotConfigured, SandboxLimitExceeded, SandboxViolation

from . import _wire, policy
from .limits import Limits
from .records import CodeError, CodeResult, PendingCall, RecordedCall, ReplayStep

_T = TypeVar("_T")
_RESERVED_NAMES = policy.ALLOWED_BUILTINS | set(policy.FORBIDDEN_NAMES) | set(policy.ALLOWED_MODULES) | {"print"}
_tool_threads: concurrent.futures.ThreadPoolExecutor | None = None
_tool_threads_lock = threading.Lock()


def parse_clock(clock_iso: str | None) -> float:
    """The run's fixed clock as a Unix timestamp (naive ISO times are UTC; None means now)."""
    if clock_iso is None:
        return time.time()
    moment = datetime.fromisoformat(clock_iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_tool_names(names: Iterable[Any]) -> None:
    """Tool names become functions in the code: identifiers (or dotted paths of them, ``my.add``, which the code
    reaches as ``my.add(...)`` and ``my_add(...)``) that shadow nothing the code relies on."""
    seen: dict[str, str] = {}
    for name in names:
        parts: list[Any] = name.split(".") if isinstance(name, str) else [name]
        flat = name.replace(".", "_") if isinstance(name, str) else name
        if (
            not all(isinstance(p, str) and p.isidentifier() and not p.startswith("_") for p in parts)
            or flat in _RESERVED_NAMES
        ):
            raise InvalidRequest(
                f"tool name {name!r} cannot be used in code: it must be an identifier (or identifiers joined by "
                "'.') that does not start with '_' and does not shadow a builtin or module",
                field="tools",
            )
        if flat in seen:
            raise InvalidRequest(f"tools {seen[flat]!r} and {name!r} would both be {flat!r} in code", field="tools")
        seen[flat] = name


def check_code(code: Any, limits: Limits, *, enforce_policy: bool = True) -> CodeError | None:
    """Apply the policy; a syntax error is returned (it is the code's error), a violation raised."""
    if not isinstance(code, str):
        raise SandboxViolation("the code must be a string", field="code")
    if not enforce_policy:
        return None
    try:
        policy.check_code(code, max_code_bytes=limits.max_code_bytes)
    except SyntaxError as exc:
        line = (exc.text or "").rstrip("\n")
        if line:
            caret = " " * max(0, (exc.offset or 1) - 1) + "^"
            text = f"  line {exc.lineno}\n    {line}\n    {caret}\nSyntaxError: {exc.msg}"
        else:
            text = f"SyntaxError: {exc}"
        return CodeError(type="SyntaxError", message=str(exc), traceback=text)
    return None


def run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for sync tools, shared by all runs and not owned by any event loop: a run that hits its wall-clock
    limit returns at once instead of waiting for a slow tool (which finishes in the background)."""
    global _tool_threads
    with _tool_threads_lock:
        if _tool_threads is None:
            _tool_threads = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="weft-tool")
        return _tool_threads


async def call_tool(tools: Mapping[str, Callable[..., Any]], call: PendingCall, limits: Limits) -> RecordedCall:
    """Execute one call (async tools on this loop, sync tools on a thread); failures become the record's error."""
    tool = tools[call.tool]
    try:
        if inspect.iscoroutinefunction(tool) or inspect.iscoroutinefunction(type(tool).__call__):
            value = await tool(*call.args, **call.kwargs)
        else:
            bound = functools.partial(tool, *call.args, **call.kwargs)
            value = await asyncio.get_running_loop().run_in_executor(_threads(), contextvars.copy_context().run, bound)
            if inspect.isawaitable(value):
                value = await value
        result = _wire.to_json_safe(value, strict=False)
        if _wire.json_size(result) > limits.max_tool_result_bytes:
            raise ValueError(f"the result is larger than {limits.max_tool_result_bytes} bytes")
        return RecordedCall.succeeded(call, result)
    except Exception as exc:  # the tool's failure reaches the code as a ToolError
        return RecordedCall.failed(call, f"{type(exc).__name__}: {exc}")


def raise_for(outcome: Mapping[str, Any]) -> None:
    """Raise the Weft exception for a violation, limit or confinement outcome; return for done/pending."""
    kind = outcome.get("t")
    if kind in ("done", "pending"):
        return
    message = str(outcome.get("message") or "the sandbox worker failed")
    if kind in ("violation", "diverged"):
        raise SandboxViolation(message, field="code")
    if kind == "limit":
        raise SandboxLimitExceeded(message, field=str(outcome.get("kind") or "limit"))
    if kind == "confinement":
        raise NotConfigured(message)
    raise SandboxViolation(f"the sandbox worker sent an unexpected message {kind!r}", field="code")


def _code_error(outcome: Mapping[str, Any]) -> CodeError | None:
    error = outcome.get("error")
    return None if error is None else CodeError.from_dict(error)


def to_code_result(outcome: Mapping[str, Any], records: Sequence[RecordedCall]) -> CodeResult:
    """A ``done`` outcome of an inline run, with the tool calls made on its behalf."""
    raise_for(outcome)
    return CodeResult(result=outcome.get("result"), stdout=str(outcome.get("stdout") or ""),
                      tool_calls=tuple(records), error=_code_error(outcome))


def to_replay_step(outcome: Mapping[str, Any]) -> ReplayStep:
    """A ``done`` or ``pending`` outcome of a replay step."""
    raise_for(outcome)
    if outcome.get("t") == "pending":
        return ReplayStep.pending(
            [PendingCall(c["id"], c["tool"], list(c["args"]), dict(c["kwargs"])) for c in outcome["calls"]]
        )
    return ReplayStep.finished(outcome.get("result"), str(outcome.get("stdout") or ""), _code_error(outcome))

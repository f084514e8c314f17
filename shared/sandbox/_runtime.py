"""Runs one job inside a worker: compile the code, expose tool stubs, drive the virtual loop, report one outcome.

Worker side, stdlib only (it also runs inside a remote code interpreter, see ``dynamic_sessions``). The job and every
outcome are plain JSON messages (``_wire``):

parent → worker  ``{"t": "job", "mode", "code", "tools", "recorded", "limits", "clock", "seed"}`` then, in inline
                 mode, ``{"t": "result", "id", "result", "error"}`` for each tool call the worker asked for.
worker → parent  ``{"t": "calls", "calls": [...]}`` (inline mode, when every task waits on a tool) and exactly one
                 terminal message: ``done`` (result, stdout, error), ``pending`` (replay mode: the calls that have no
                 recorded result yet), ``violation``, ``limit`` (kind), ``diverged`` or ``confinement`` (a required
                 confinement layer could not be applied).

Terminal outcomes end the worker on the spot (``os._exit`` after the write), so sandboxed code can neither catch nor
delay a violation or a limit. Tool calls get ids ``c1``, ``c2``… in the order the code makes them; the virtual loop
makes that order a pure function of the code, the recorded results and the seed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import importlib
import inspect
import linecache
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from . import _wire
from ._audit import deactivate, install_audit_hook, suspended
from ._loop import VirtualLoop
from ._rewrite import rewrite
from ._shims import ToolError, World, static_module_values
from ._tools import close_name, find_unawaited, flat_name, make_tool_types, namespace_heads, tool_globals

FILENAME = "<code>"
DYNAMIC_MODULES = frozenset({"asyncio", "time", "random", "datetime"})
_RESERVE_BYTES = 1 << 18
_TRACEBACK = vars(BaseException)["__traceback__"]  # the real one; a class may shadow it with a property
MAX_NOTES = 10
"""Notes of the code's uncaught error shown below its last line."""
MAX_NOTE_CHARS = 500
"""Characters of each note shown."""
MAX_COLLECTIONS = 10
"""Collections after an embedded run, under the hook, while one frees or allocates anything (a __del__ may build
garbage). Residual: what a longer __del__ chain builds is collected later, hook off (gc.freeze: no collecting)."""


class Stop(BaseException):
    """Unwinds an embedded run after its outcome is fixed (local workers exit instead)."""


class FdChannel:
    """The worker's end of the parent channel: blocking frames on fd 3; ``finish`` writes and exits."""

    def __init__(self, fd: int, max_frame_bytes: int) -> None:
        self._fd = fd
        self._max = max_frame_bytes

    def send(self, message: Mapping[str, Any]) -> None:
        _wire.write_frame(self._fd, message)

    def recv(self) -> dict[str, Any]:
        try:
            return _wire.read_frame(self._fd, self._max)
        except (_wire.FrameError, OSError):
            os._exit(71)

    def finish(self, message: Mapping[str, Any]) -> NoReturn:
        try:
            _wire.write_frame(self._fd, message)
        finally:
            os._exit(0)


class EmbeddedChannel:
    """Outcome holder for runs without a parent process (replay mode only); the first outcome wins."""

    def __init__(self) -> None:
        self.outcome: dict[str, Any] | None = None

    def send(self, message: Mapping[str, Any]) -> None:
        raise RuntimeError("inline tool calls need a parent process")

    def recv(self) -> dict[str, Any]:
        raise RuntimeError("inline tool calls need a parent process")

    def finish(self, message: Mapping[str, Any]) -> NoReturn:
        if self.outcome is None:
            self.outcome = dict(message)
        raise Stop


def prepare_static_modules(policy: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Import every allowed module and pick its exported names (done once, before workers fork)."""
    static: dict[str, dict[str, Any]] = {}
    for name, exports in policy["modules"].items():
        if name in DYNAMIC_MODULES:
            importlib.import_module(name)
            continue
        real = importlib.import_module(name)
        static[name] = static_module_values(real, exports)
    return static


def compile_code(code: str, tools: Iterable[str] = (), reserved: Iterable[str] = ()) -> Any:
    """Parse, rewrite (see :mod:`shared.sandbox._rewrite`) and compile sandboxed code (top-level ``await`` allowed)."""
    names = list(tools)
    flat = frozenset(flat_name(n) for n in names)
    tree = rewrite(ast.parse(code, FILENAME, "exec"), flat, namespace_heads(names, reserved))
    return compile(tree, FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def _text(read: Callable[[], Any], fallback: str) -> str:
    """Text about the code's error, read under the audit hook: its message, its class's names and its notes may come
    from the code's own ``__str__``, properties or metaclass, which can raise anything (``Stop`` ends the run). The
    text comes back as a plain ``str`` copy, so no ``str`` subclass's methods run where it is used; ``fallback`` when
    the read fails or gives no ``str``."""
    try:
        return str.__str__(read())
    except Stop:
        raise
    except BaseException:  # the code's own error class: whatever it raises, the error is still reported
        return fallback


def _suggestion(exc: BaseException, names: Iterable[str]) -> str:
    """Python 3.11's "Did you mean" for names and attributes (the traceback module adds it only from 3.12)."""
    kind = type(exc)  # issubclass, not isinstance: no __class__ property of the code's own is read
    if not issubclass(kind, NameError | AttributeError):
        return ""
    error: Any = exc
    try:
        wrong = error.name  # a property of the code's own NameError subclass may raise anything
        if issubclass(kind, AttributeError):
            names = dir(error.obj)  # so may the object's __dir__, or the __lt__ of what it returns
        close = close_name(wrong, names)
    except Stop:
        raise
    except BaseException:  # the code's own error or object: no suggestion
        return ""
    return f". Did you mean: {close!r}?" if close else ""


def _notes(exc: BaseException) -> str:
    """The error's notes (``exc.add_note``) as Python prints them below its last line: those that are plain ``str``,
    at most :data:`MAX_NOTES`, each cut to :data:`MAX_NOTE_CHARS` characters."""
    try:
        notes = exc.__notes__
    except Stop:
        raise
    except BaseException:  # no notes (AttributeError), or a property of the code's own that raised
        return ""
    if type(notes) is not list and type(notes) is not tuple:
        return ""
    shown = [note if len(note) <= MAX_NOTE_CHARS else note[:MAX_NOTE_CHARS] + "…"
             for note in notes[:MAX_NOTES] if type(note) is str]
    more = len(notes) - MAX_NOTES
    return "".join(f"\n{note}" for note in shown) + (f"\n(and {more} more notes)" if more > 0 else "")


def _hint(exc: BaseException, message: str) -> str:
    """What to write instead, for the mistakes code about tools and coroutines makes most."""
    if "never awaited" in message:
        return ""
    if issubclass(type(exc), TypeError) and "can't be used in 'await' expression" in message:
        return ("tools called without 'await' already return their result: drop the 'await', or write "
                "'await tool(...)' on the call itself")
    if "coroutine" in message:
        return ("a coroutine is a call that has not run yet: 'await' it, pass it to asyncio.gather(...), or call "
                "tools without 'await' to get their result at once")
    return ""


def format_error(exc: BaseException, names: Iterable[str] = ()) -> dict[str, str]:
    """The uncaught error as the LLM should see it: only frames of its own code, with source lines.

    Call it with the audit hook active: the error's text, its type's names, its notes and a did-you-mean may run the
    code's own ``__str__``, ``__dir__``, properties or metaclass, which stay policed; whatever they raise (but
    ``Stop``) gives a fallback text instead. Only the walk over the traceback's frames (audited attribute reads, made
    by the runtime itself) runs with the hook suspended, over the real traceback (never a ``__traceback__`` property
    of the code's class).
    """
    kind = type(exc)
    qualname = _text(lambda: kind.__qualname__, "<error>")
    type_name = _text(lambda: kind.__name__, qualname.rpartition(".")[2])
    message = _text(lambda: str(exc), f"<unprintable {type_name}>")
    module = _text(lambda: kind.__module__, "")
    name = qualname if module in ("__main__", "builtins", "") else f"{module}.{qualname}"
    only = (f"{name}: {message}" if message else name) + _suggestion(exc, names) + _notes(exc)
    hint = _hint(exc, message)
    if hint:
        only = f"{only}\nHint: {hint}"
    lines = ["Traceback (most recent call last):\n"]
    tb = _TRACEBACK.__get__(exc, kind)
    with suspended():
        frames = traceback.extract_tb(tb)
    for frame in frames:
        if frame.filename == FILENAME:
            lines.append(f"  line {frame.lineno}, in {frame.name}\n")
            if frame.line:
                lines.append(f"    {frame.line}\n")
    lines.append(only)
    return {"type": type_name, "message": message, "traceback": "".join(lines)}


class Runtime:
    """One run of sandboxed code in this process."""

    def __init__(
        self,
        job: Mapping[str, Any],
        *,
        world: World,
        channel: FdChannel | EmbeddedChannel,
    ) -> None:
        self._job = job
        self._limits = job["limits"]
        self._channel = channel
        self._replay = job["mode"] == "replay"
        self._recorded: dict[str, dict[str, Any]] = {r["call_id"]: r for r in job.get("recorded", ())}
        self._consumed: set[str] = set()
        self._calls = 0
        self._unresolved: list[tuple[dict[str, Any], Any]] = []
        self._outbox: list[dict[str, Any]] = []
        self._waiting: dict[str, tuple[str, Any]] = {}
        self._clock_base = float(job["clock"])
        self.layers: list[str] = []
        # typeshed marks AbstractEventLoop's I/O methods abstract; at run time it is no ABC and they raise
        # NotImplementedError, which is what the sandbox wants (it has no I/O).
        self.loop = VirtualLoop(  # type: ignore[abstract]
            self._on_idle, max_time=float(self._limits["wall_seconds"]), on_time_exceeded=self._slept_too_long
        )
        self._world = world
        world.start_run(
            violation=self.violation, limit=self.limit, clock=self.clock, loop=self.loop,
            stdout_limit=int(self._limits["stdout_bytes"]), seed=int(job["seed"]),
        )
        self._reserve: bytearray | None = None
        self._tool_call_type: type = type(None)

    # -- hooks -------------------------------------------------------------------------------------------------
    def clock(self) -> float:
        return self._clock_base + self.loop.time()

    def violation(self, message: str) -> NoReturn:
        self._channel.finish({"t": "violation", "message": message})

    def limit(self, kind: str, message: str) -> NoReturn:
        self._reserve = None
        self._channel.finish({"t": "limit", "kind": kind, "message": message})

    def _slept_too_long(self) -> NoReturn:
        self.limit(
            "wall", f"the code slept past the {self._limits['wall_seconds']} s wall-clock limit; sleep less"
        )

    def cpu_exhausted(self) -> NoReturn:
        self.limit(
            "cpu", f"the code used more than {self._limits['cpu_seconds']} s of CPU time; make it do less work"
        )

    # -- tools ---------------------------------------------------------------------------------------------------
    def _tool_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Check and number one call (ids c1, c2, … in the order calls are really made)."""
        try:
            safe_args = _wire.to_json_safe(list(args), strict=True)
            safe_kwargs = _wire.to_json_safe(dict(kwargs), strict=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}(): {exc}") from None
        if _wire.json_size([safe_args, safe_kwargs]) > int(self._limits["max_tool_args_bytes"]):
            raise ValueError(f"{name}(): the arguments are larger than {self._limits['max_tool_args_bytes']} bytes")
        self._calls += 1
        maximum = int(self._limits["max_tool_calls"])
        if self._calls > maximum:
            self.limit("tool_calls", f"the code made more than {maximum} tool calls; make fewer, larger calls")
        call = {"id": f"c{self._calls}", "tool": name, "args": safe_args, "kwargs": safe_kwargs}
        if self._replay:
            record = self._recorded.get(call["id"])
            if record is not None and (record["tool"], record["args"], record["kwargs"]) != (
                name, safe_args, safe_kwargs
            ):
                self._diverged(
                    f"replay diverged at tool call {call['id']}: the record has {record['tool']}"
                    f"(*{record['args']!r}, **{record['kwargs']!r}) but the code now calls "
                    f"{name}(*{safe_args!r}, **{safe_kwargs!r}); code must be deterministic (no time, randomness "
                    "or ordering that is not taken from the run)"
                )
        return call

    @staticmethod
    def _value(tool: str, outcome: Mapping[str, Any]) -> Any:
        error = outcome.get("error")
        if error is not None:
            raise ToolError(f"{tool} failed: {error}", tool)
        return outcome.get("result")

    def _call_now(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call the code does not await: made at once (with every call already waiting), its result returned."""
        call = self._tool_call(name, args, kwargs)
        if self._replay:
            record = self._recorded.get(call["id"])
            if record is None:
                unrecorded = [c for c, f in self._unresolved if not f.cancelled() and c["id"] not in self._recorded]
                self._channel.finish({"t": "pending", "calls": [*unrecorded, call], "layers": self.layers})
            self._consumed.add(call["id"])
            return self._value(name, record)
        self._channel.send({"t": "calls", "calls": [*self._outbox, call]})
        self._outbox = []
        while True:
            message = self._channel.recv()
            if str(message.get("id")) == call["id"]:
                return self._value(name, message)
            other = self._waiting.pop(str(message.get("id")), None)
            if other is not None:
                self._resolve(other[1], other[0], message)

    async def _call_tool(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = self._tool_call(name, args, kwargs)
        future = self.loop.create_future()
        if self._replay:
            self._unresolved.append((call, future))
        else:
            self._outbox.append(call)
            self._waiting[call["id"]] = (name, future)
        return await future

    @staticmethod
    def _resolve(future: Any, tool: str, outcome: Mapping[str, Any]) -> None:
        if future.done():
            return
        error = outcome.get("error")
        if error is not None:
            future.set_exception(ToolError(f"{tool} failed: {error}", tool))
        else:
            future.set_result(outcome.get("result"))

    def _on_idle(self) -> bool:
        if self._replay:
            live = [(call, future) for call, future in self._unresolved if not future.cancelled()]
            self._unresolved = []
            if not live:
                return False
            missing = [call for call, _ in live if call["id"] not in self._recorded]
            if missing:
                self._channel.finish({"t": "pending", "calls": missing, "layers": self.layers})
            for call, future in live:
                self._consumed.add(call["id"])
                self._resolve(future, call["tool"], self._recorded[call["id"]])
            return True
        if self._outbox:
            self._channel.send({"t": "calls", "calls": self._outbox})
            self._outbox = []
        self._waiting = {k: v for k, v in self._waiting.items() if not v[1].cancelled()}
        if not self._waiting:
            return False
        message = self._channel.recv()
        waiting = self._waiting.pop(str(message.get("id")), None)
        if waiting is not None:
            self._resolve(waiting[1], waiting[0], message)
        return True

    def _diverged(self, message: str) -> NoReturn:
        self._channel.finish({"t": "diverged", "message": message})

    # -- the run -------------------------------------------------------------------------------------------------
    def execute(self) -> NoReturn:
        """Run the job to its one outcome (never returns: the channel finishes the run)."""
        code = self._job["code"]
        linecache.cache[FILENAME] = (len(code), None, code.splitlines(True), FILENAME)
        tools = list(self._job["tools"])
        reserved = [*self._world.builtins, *self._world.modules]
        try:
            compiled = compile_code(code, tools, reserved)
        except SyntaxError as exc:
            self._finish_error(exc)
        except (RecursionError, MemoryError):
            self.limit("nesting", "the code is nested too deeply to compile; flatten it")
        namespace: dict[str, Any] = {
            "__builtins__": self._world.builtins,
            "__name__": "__main__",
            "asyncio": self._world.modules.get("asyncio"),
        }
        function, self._tool_call_type, now = make_tool_types(self._call_tool, self._call_now)
        namespace.update(tool_globals(tools, function, reserved))
        namespace["__weft_now__"] = now
        self._reserve = bytearray(_RESERVE_BYTES)
        asyncio.set_event_loop(self.loop)  # asyncio.gather(...) outside a coroutine must not build a real loop
        install_audit_hook(self._world, compiled)
        self.layers = [*self.layers, "audit"]
        try:
            if compiled.co_flags & inspect.CO_COROUTINE:
                self.loop.run_until_complete(eval(compiled, namespace))
            else:
                exec(compiled, namespace)
        except Stop:
            raise
        except RecursionError:
            self.limit(
                "recursion",
                f"the code recursed deeper than {self._limits['max_recursion_depth']} calls; use a loop instead",
            )
        except MemoryError:
            self.limit("memory", f"the code needed more than {self._limits['memory_bytes']} bytes of memory")
        except BaseException as exc:  # the code's own uncaught error is the outcome, reported to the LLM
            self._finish_error(exc, [*namespace, *self._world.builtins])
        self._finish_done(namespace)

    def _finish_error(self, exc: BaseException, names: Iterable[str] = ()) -> NoReturn:
        self._reserve = None
        error = format_error(exc, names)
        self._channel.finish(
            {"t": "done", "result": None, "stdout": self._world.stdout.getvalue(), "error": error,
             "layers": self.layers}
        )

    def _finish_done(self, namespace: Mapping[str, Any]) -> NoReturn:
        self._reserve = None
        if self._replay:
            unused = sorted(set(self._recorded) - self._consumed, key=lambda i: int(i[1:]) if i[1:].isdigit() else 0)
            if unused:
                self._diverged(
                    f"replay diverged: the code finished without making the recorded tool calls {', '.join(unused)}; "
                    "code must be deterministic"
                )
        value = namespace.get("__weft_last__")
        if value is None:
            value = namespace.get("result")
        result: Any = None
        try:  # the result's own methods run here, under the hook: a __repr__, a mapping's items(), a __class__ property
            unawaited = find_unawaited(value, self._tool_call_type)
            if not unawaited:
                try:
                    result = _wire.to_json_safe(value, strict=False)
                except (ValueError, RecursionError):
                    result = repr(value)
        except Stop:
            raise
        except BaseException as exc:  # what they raise is the code's error (it escaped the runtime before)
            self._finish_error(exc)
        if unawaited:
            self._finish_error(TypeError(unawaited))
        maximum = int(self._limits["max_result_bytes"])
        if _wire.json_size(result) > maximum:
            self.limit("result", f"the result is larger than {maximum} bytes; return a summary instead")
        self._channel.finish(
            {"t": "done", "result": result, "stdout": self._world.stdout.getvalue(), "error": None,
             "layers": self.layers}
        )

    @property
    def stdout(self) -> Any:
        return self._world.stdout

    def release(self) -> None:
        """Unbind the run from the world (the hook keeps it), asyncio and its tasks, so collecting finalizes them."""
        self._world.end_run(Stop)
        asyncio.set_event_loop(None)
        self._unresolved, self._waiting, self._outbox = [], {}, []
        self.loop.drop_pending()


def run_embedded(job: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """Run a replay-mode job in this interpreter and return its outcome (remote backends; no OS confinement here)."""
    channel = EmbeddedChannel()
    previous_limit = sys.getrecursionlimit()
    previous_hooks = sys.get_asyncgen_hooks()
    sys.setrecursionlimit(int(job["limits"]["max_recursion_depth"]) + 60)
    sys.set_asyncgen_hooks(None, None)
    try:
        _run_embedded(job, policy, channel)
        # What the code left (a suspended task's finally, a __del__ in a cycle) runs now, when collected under the hook.
        for _ in range(MAX_COLLECTIONS):
            if not gc.collect() and not gc.get_count()[0]:
                break
    finally:
        deactivate()
        asyncio.set_event_loop(None)
        sys.setrecursionlimit(previous_limit)
        sys.set_asyncgen_hooks(*previous_hooks)
    assert channel.outcome is not None
    return channel.outcome


def _run_embedded(job: Mapping[str, Any], policy: Mapping[str, Any], channel: EmbeddedChannel) -> None:
    """The run itself; everything it built (world, loop, tasks, the code's namespace) is released on return."""
    world = World(policy=policy, static_modules=prepare_static_modules(policy))
    runtime = Runtime(job, world=world, channel=channel)
    runtime.layers = ["embedded"]
    try:
        with contextlib.suppress(Stop):
            runtime.execute()
    finally:
        runtime.release()

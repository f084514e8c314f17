"""What sandboxed code can see: the builtins table, the importable modules and their deterministic stand-ins.

Worker side, stdlib only. Nothing here is a security boundary on its own (the worker process is); it is the second
layer after the AST policy: code gets a minimal builtins table, modules are fresh namespace objects holding only the
public names the policy lists (never the real module, so ``random._os`` or ``json.decoder`` do not exist), names
passed to ``getattr``/``setattr``/``hasattr``/``delattr`` and fields in format strings are checked at run time, and
time, randomness and asyncio come from the run (fixed clock, seeded ``random``, the virtual loop).
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import datetime as _datetime
import functools as _functools
import inspect
import random as _random
import time as _time
import types
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from ._format import make_formatter, quoted
from ._loop import VirtualLoop

TRUSTED_METACLASSES = frozenset({type, abc.ABCMeta})
"""Metaclasses a ``match`` class pattern may use (the code's own could answer every isinstance with True)."""
# Builtins that are never handed to sandboxed code, whatever the policy data says.
NEVER_EXPOSED = frozenset(
    {"open", "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "breakpoint", "input", "help",
     "exit", "quit", "copyright", "credits", "license", "__loader__", "__spec__", "__build_class__", "memoryview"}
)
ASYNCIO_EXPORTS = (
    "ALL_COMPLETED", "BoundedSemaphore", "CancelledError", "Condition", "Event", "FIRST_COMPLETED",
    "FIRST_EXCEPTION", "InvalidStateError", "LifoQueue", "Lock", "PriorityQueue", "Queue", "QueueEmpty", "QueueFull",
    "Semaphore", "TaskGroup", "TimeoutError", "as_completed", "create_task", "current_task", "gather",
    "iscoroutine", "iscoroutinefunction", "shield", "sleep", "timeout", "wait", "wait_for",
)
RANDOM_FUNCTIONS = (
    "betavariate", "choice", "choices", "expovariate", "gammavariate", "gauss", "getrandbits", "lognormvariate",
    "normalvariate", "paretovariate", "randbytes", "randint", "random", "randrange", "sample", "seed", "shuffle",
    "triangular", "uniform", "vonmisesvariate", "weibullvariate",
)


class ToolError(Exception):
    """Raised inside sandboxed code when a tool call failed; ``tool`` names the tool."""

    def __init__(self, message: str, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


ToolError.__module__ = "builtins"  # shown to the LLM as "ToolError: …"


def _unbound(*_args: Any) -> NoReturn:
    raise RuntimeError("no sandbox run is bound")


class Hooks:
    """Callbacks from the shims into the current run (violations and limits never return).

    The world is built once, before workers fork (so each worker copies it instead of rebuilding it); each run then
    binds its own callbacks, clock, loop and seed here.
    """

    def __init__(self) -> None:
        self.violation: Callable[[str], NoReturn] = _unbound
        self.limit: Callable[[str, str], NoReturn] = _unbound
        self.clock: Callable[[], float] = _unbound
        # typeshed marks AbstractEventLoop's I/O methods abstract; at run time it is no ABC and they raise
        # NotImplementedError, which is what the sandbox wants (it has no I/O).
        self.loop: VirtualLoop = VirtualLoop(lambda: False)  # type: ignore[abstract]
        self.stdout_limit = 0
        self.seed = 0
        self.random = _random.Random(0)
        self.random_instances = 0

    def bind(
        self,
        *,
        violation: Callable[[str], NoReturn],
        limit: Callable[[str, str], NoReturn],
        clock: Callable[[], float],
        loop: VirtualLoop,
        stdout_limit: int,
        seed: int,
    ) -> None:
        self.violation, self.limit, self.clock, self.loop = violation, limit, clock, loop
        self.stdout_limit = stdout_limit
        self.seed = seed
        self.random.seed(seed)
        self.random_instances = 0

    def unbind(self, stop: type[BaseException]) -> None:
        """The run is over: every callback raises ``stop`` (ending what still runs of the code) and the loop is a fresh
        one that raises it too when the code would wait on it, so nothing here keeps the finished run reachable."""

        def over(*_args: Any) -> NoReturn:
            raise stop

        self.violation = self.limit = self.clock = over
        self.loop = VirtualLoop(over, max_time=0.0, on_time_exceeded=over)  # type: ignore[abstract]


class AttributeRules:
    """Which attribute names sandboxed code may use by string (mirrors the AST policy)."""

    def __init__(self, allowed_dunders: Iterable[str], forbidden: Iterable[str], forbidden_prefixes: Iterable[str]):
        self.allowed_dunders = frozenset(allowed_dunders)
        self.forbidden = frozenset(forbidden)
        self.forbidden_prefixes = tuple(forbidden_prefixes)

    def problem(self, name: str) -> str | None:
        """Why ``name`` may not be used as an attribute name, or None when it may."""
        normal = unicodedata.normalize("NFKC", str.__str__(name))  # a str subclass's own methods must not answer
        if normal.startswith("__") and normal.endswith("__") and normal not in self.allowed_dunders:
            return f"attribute {quoted(name)} is not allowed (names starting and ending with '__' are blocked)"
        if normal in self.forbidden or normal.startswith(self.forbidden_prefixes):
            return f"attribute {quoted(name)} is not allowed (interpreter internals are blocked)"
        return None


class Stdout:
    """A size-limited text sink standing in for ``sys.stdout``."""

    def __init__(self, hooks: Hooks) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._hooks = hooks

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._size += len(text.encode("utf-8", errors="replace"))
        if self._size > self._hooks.stdout_limit:
            self._hooks.limit(
                "stdout",
                f"the code printed more than {self._hooks.stdout_limit} bytes; print less (a summary, a slice, a "
                "count) or return the data as the result instead",
            )
        self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: output is kept in memory until the run ends."""

    def getvalue(self) -> str:
        return "".join(self._parts)


class Guard:
    """Run-time checks behind ``getattr``/``setattr``/``hasattr``/``delattr`` and ``str.format``."""

    def __init__(self, rules: AttributeRules, hooks: Hooks) -> None:
        self._rules = rules
        self._hooks = hooks
        self._formatter = make_formatter(rules, hooks)()

    def name(self, name: Any) -> str:
        """The name to use, as a plain ``str``: a subclass's own ``startswith``, ``__eq__`` or ``__hash__`` would
        answer the check with one name and the attribute lookup with another."""
        if not isinstance(name, str):
            raise TypeError(f"attribute name must be a string, not {type(name).__name__}")
        name = str.__str__(name)
        problem = self._rules.problem(name)
        if problem:
            self._hooks.violation(problem)
        return name

    def attribute(self, obj: Any, name: str) -> Any:
        """``obj.format`` / ``obj.format_map`` (rewritten by the runtime) and ``getattr`` land here."""
        value = getattr(obj, name)
        if name in ("format", "format_map"):
            target = getattr(value, "__self__", None)
            if isinstance(value, types.BuiltinMethodType) and isinstance(target, str):
                return self._bound_format(target, name)  # also reached through super() or a str subclass
            if value is str.format or value is str.format_map:
                return self._unbound_format(name)
        return value

    def _bound_format(self, template: str, name: str) -> Callable[..., str]:
        formatter = self._formatter
        if name == "format":
            return lambda *args, **kwargs: formatter.vformat(template, args, kwargs)
        return lambda mapping: formatter.vformat(template, (), mapping)

    def _unbound_format(self, name: str) -> Callable[..., str]:
        formatter = self._formatter
        if name == "format":
            return lambda template, *args, **kwargs: formatter.vformat(template, args, kwargs)
        return lambda template, mapping: formatter.vformat(template, (), mapping)

    def check_match_classes(self, *thunks: Callable[[], Any]) -> None:
        """Before a ``match``: each class pattern's class has a standard metaclass (no ``__instancecheck__`` of the
        code's own) and ``__match_args__`` naming only attributes the policy allows."""
        for thunk in thunks:
            try:
                cls = thunk()
            except (NameError, AttributeError):
                continue  # the pattern itself will fail the same way, if it is ever reached
            if not isinstance(cls, type):
                continue  # the match statement raises its own TypeError
            if type(cls) not in TRUSTED_METACLASSES:
                self._hooks.violation(
                    f"the class pattern {quoted(cls.__qualname__)} has a metaclass of the code's own; match on "
                    "ordinary classes (class C: ...) or on dicts and sequences instead"
                )
            match_args = getattr(cls, "__match_args__", ())
            for name in match_args if isinstance(match_args, tuple) else ():
                problem = self._rules.problem(name) if isinstance(name, str) else None
                if problem:
                    self._hooks.violation(f"__match_args__ of {quoted(cls.__qualname__)}: {problem}")

    def make_builtins(self) -> dict[str, Callable[..., Any]]:
        missing = object()

        def getattr_(obj: Any, name: str, default: Any = missing) -> Any:
            name = self.name(name)
            try:
                return self.attribute(obj, name)
            except AttributeError:
                if default is missing:
                    raise
                return default

        def hasattr_(obj: Any, name: str) -> bool:
            return getattr_(obj, name, missing) is not missing

        def setattr_(obj: Any, name: str, value: Any) -> None:
            setattr(obj, self.name(name), value)

        def delattr_(obj: Any, name: str) -> None:
            delattr(obj, self.name(name))

        return {"getattr": getattr_, "hasattr": hasattr_, "setattr": setattr_, "delattr": delattr_}


def _namespace(name: str, values: Mapping[str, Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in values.items():
        setattr(module, key, value)
    return module


def _public_names(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return [n for n in names if not n.startswith("_") and not isinstance(getattr(module, n, None), types.ModuleType)]


def static_module_values(real: types.ModuleType, exports: list[str] | None) -> dict[str, Any]:
    """The attributes a module proxy carries: the listed names, or every public non-module name."""
    names = exports if exports is not None else _public_names(real)
    return {n: getattr(real, n) for n in names if hasattr(real, n)}


def _functools_overrides(hooks: Hooks) -> dict[str, Any]:
    assigned_default = _functools.WRAPPER_ASSIGNMENTS
    updated_default = _functools.WRAPPER_UPDATES

    def check(assigned: Iterable[str], updated: Iterable[str]) -> None:
        if not set(assigned) <= set(assigned_default) or not set(updated) <= set(updated_default):
            hooks.violation("functools.wraps/update_wrapper accept only their default attribute names")

    def update_wrapper(wrapper: Any, wrapped: Any, assigned: Any = assigned_default, updated: Any = updated_default):
        check(assigned, updated)
        return _functools.update_wrapper(wrapper, wrapped, assigned, updated)

    def wraps(wrapped: Any, assigned: Any = assigned_default, updated: Any = updated_default):
        check(assigned, updated)
        return _functools.wraps(wrapped, assigned, updated)

    return {"update_wrapper": update_wrapper, "wraps": wraps}


def _random_values(hooks: Hooks) -> dict[str, Any]:
    class Random(_random.Random):
        """``random.Random``; without a seed it is seeded from the run's seed, so replays repeat."""

        def __init__(self, x: Any = None) -> None:
            if x is None:
                hooks.random_instances += 1
                x = f"{hooks.seed}:{hooks.random_instances}"
            super().__init__(x)

    def seed(a: Any = None, version: int = 2) -> None:
        """Reseed; without an argument, from the run's seed (never from the operating system)."""
        hooks.random.seed(hooks.seed if a is None else a, version)

    values: dict[str, Any] = {n: getattr(hooks.random, n) for n in RANDOM_FUNCTIONS if hasattr(hooks.random, n)}
    values.update({"Random": Random, "seed": seed})
    return values


def _time_values(hooks: Hooks) -> dict[str, Any]:
    def time() -> float:
        return hooks.clock()

    def time_ns() -> int:
        return int(hooks.clock() * 1_000_000_000)

    def monotonic() -> float:
        return hooks.loop.time()

    def sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        hooks.loop.advance(seconds)

    def gmtime(seconds: float | None = None) -> _time.struct_time:
        return _time.gmtime(hooks.clock() if seconds is None else seconds)

    def strftime(fmt: str, moment: Any = None) -> str:
        return _time.strftime(fmt, gmtime() if moment is None else moment)

    return {
        "time": time, "time_ns": time_ns, "monotonic": monotonic, "perf_counter": monotonic, "sleep": sleep,
        "gmtime": gmtime, "localtime": gmtime, "strftime": strftime, "struct_time": _time.struct_time,
    }


def _datetime_values(hooks: Hooks) -> dict[str, Any]:
    real = _datetime

    class datetime(real.datetime):
        """``datetime.datetime`` whose ``now``/``today``/``utcnow`` read the run's fixed clock."""

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            if tz is None:  # local time in the sandbox is UTC
                return cls.fromtimestamp(hooks.clock(), real.timezone.utc).replace(tzinfo=None)
            return cls.fromtimestamp(hooks.clock(), tz)

        @classmethod
        def today(cls) -> Any:
            return cls.now()

        @classmethod
        def utcnow(cls) -> Any:
            return cls.now()

    class date(real.date):
        """``datetime.date`` whose ``today`` reads the run's fixed clock."""

        @classmethod
        def today(cls) -> Any:
            moment = real.datetime.fromtimestamp(hooks.clock(), real.timezone.utc)
            return cls(moment.year, moment.month, moment.day)

    values = {n: getattr(real, n) for n in _public_names(real)}
    values.update({"datetime": datetime, "date": date})
    return values


def _asyncio_values(hooks: Hooks) -> dict[str, Any]:
    values = {n: getattr(asyncio, n) for n in ASYNCIO_EXPORTS if hasattr(asyncio, n)}

    def run(main: Any, *, debug: Any = None) -> Any:
        if hooks.loop.is_running():
            if asyncio.iscoroutine(main):
                main.close()
            raise RuntimeError(
                "asyncio.run() cannot be called while the code is already awaiting at top level; write 'await main()'"
            )
        if not asyncio.iscoroutine(main):
            raise ValueError(f"a coroutine was expected, got {main!r}")
        return hooks.loop.run_until_complete(main)

    def get_event_loop() -> VirtualLoop:
        return hooks.loop

    async def _ready(value: Any) -> Any:
        return value

    def gather(*aws: Any, return_exceptions: bool = False) -> Any:
        """``asyncio.gather``; a value that is already a result (a tool called without ``await``) is passed on."""
        return asyncio.gather(*(a if inspect.isawaitable(a) else _ready(a) for a in aws),
                              return_exceptions=return_exceptions)

    values.update({"run": run, "get_event_loop": get_event_loop, "get_running_loop": get_event_loop,
                   "gather": gather})
    return values


class World:
    """The sandbox's builtins table and module proxies; built once per worker image, bound to each run."""

    def __init__(self, *, policy: Mapping[str, Any], static_modules: Mapping[str, dict[str, Any]]) -> None:
        self.rules = AttributeRules(
            policy["allowed_dunder_attributes"], policy["forbidden_attributes"],
            policy["forbidden_attribute_prefixes"],
        )
        self.audit_events: dict[str, str] = dict(policy.get("runtime_events", {}))
        hooks = self.hooks = Hooks()
        self.guard = Guard(self.rules, hooks)
        self.stdout = Stdout(hooks)
        rules = self.rules

        Formatter = make_formatter(rules, hooks)

        overrides: dict[str, dict[str, Any]] = {
            "asyncio": _asyncio_values(hooks),
            "time": _time_values(hooks),
            "random": _random_values(hooks),
            "datetime": _datetime_values(hooks),
            "string": {**static_modules.get("string", {}), "Formatter": Formatter},
            "functools": {**static_modules.get("functools", {}), **_functools_overrides(hooks)},
        }
        self.modules: dict[str, types.ModuleType] = {}
        for name in sorted(policy["modules"], key=lambda n: n.count(".")):
            module = _namespace(name, overrides.get(name) or static_modules.get(name) or {})
            self.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent in self.modules:
                setattr(self.modules[parent], child, module)
        self.builtins = self._make_builtins(policy["builtins"])

    def start_run(self, **bindings: Any) -> None:
        """Bind a run's callbacks (see :meth:`Hooks.bind`) and give it empty output."""
        self.hooks.bind(**bindings)
        self.stdout = Stdout(self.hooks)

    def end_run(self, stop: type[BaseException]) -> None:
        """Unbind the finished run (see :meth:`Hooks.unbind`); the audit hook keeps this world after the run."""
        self.hooks.unbind(stop)

    def _import(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level:
            self.hooks.violation("relative imports are not allowed")
        if name == "warnings" and not fromlist:
            # the interpreter imports it to warn about a coroutine never awaited; its C fallback takes over
            raise ImportError("warnings are not available in the sandbox")
        if not isinstance(name, str) or name not in self.modules:
            allowed = ", ".join(sorted(self.modules))
            module = f"module {quoted(name)}" if isinstance(name, str) else "a module named by a non-str value"
            self.hooks.violation(f"import of {module} is not allowed; allowed modules: {allowed}")
        if fromlist:
            return self.modules[name]
        return self.modules[name.partition(".")[0]]

    def _print(self, *values: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
               flush: bool = False) -> None:
        target = self.stdout if file is None else file
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        target.write(sep.join(str(v) for v in values) + end)

    def _make_builtins(self, names: Iterable[str]) -> dict[str, Any]:
        table: dict[str, Any] = {}
        guarded = self.guard.make_builtins()
        for name in names:
            if name in guarded:
                table[name] = guarded[name]
            elif name not in NEVER_EXPOSED and hasattr(builtins, name):
                table[name] = getattr(builtins, name)
        table.update(
            {
                "print": self._print,
                "ToolError": ToolError,
                "__import__": self._import,
                "__build_class__": builtins.__build_class__,
                "__name__": "__main__",
                "__weft_attr__": self.guard.attribute,
                "__weft_match__": self.guard.check_match_classes,
            }
        )
        return table

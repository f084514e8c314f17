"""A tool: a :class:`~shared.models.ToolSpec` and the :class:`ToolTransport` that calls it.

Python functions are one transport (:class:`PythonTransport`); HTTP (OpenAPI) and MCP transports live in their own
modules behind the same one-method protocol. Schemas are built from type hints through pydantic and Google-style
docstrings (:mod:`shared.catalog.schema`); a parameter named ``idempotency_key`` is not part of the schema: the
executor fills it with the call's key. The catalog that holds tools is :mod:`shared.catalog.catalog`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, TypedDict, Unpack, runtime_checkable

from pydantic import BaseModel, ValidationError

from shared.catalog.schema import (
    IDEMPOTENCY_PARAMETER,
    ArgumentProblem,
    argument_problems,
    function_schema,
    schema_validator,
)
from shared.errors import CancelCheckUnavailable, InvalidRequest, ToolArgumentsInvalid, WeftError, quoted
from shared.models import RetryPolicy, ToolSpec, canonical_json, format_field, parse_model
from shared.suggestions import close_matches

__all__ = [
    "CallGate",
    "NotRun",
    "PythonTransport",
    "Tool",
    "ToolOptions",
    "ToolTransport",
    "ask_gate",
    "cacheable_specs",
    "call_gate",
    "python_tool",
    "tool",
    "tool_from_entry",
]

_TOOL_MARK = "__weft_tool__"
_WEFT_KEYS = frozenset(ToolSpec.model_fields) - {"name", "description", "parameters"}
# ------------------------------------------------------------------------------------------------ transports


call_gate: ContextVar[CallGate | None] = ContextVar("weft_call_gate", default=None)
"""The :class:`CallGate` of the call being executed, set by :meth:`~shared.catalog.executor.ToolExecutor.execute`.
A :class:`PythonTransport` enters it in the very thread, and just before, a sync function runs (a sync tool may wait
for a worker thread); for any other transport the executor asks it on its own threads and starts the call on the
event loop just before ``transport.call``."""


@runtime_checkable
class ToolTransport(Protocol):
    """How a tool is called: a Python function, an HTTP endpoint, an MCP server."""

    async def call(self, args: Mapping[str, Any], *, idempotency_key: str, timeout_s: float | None) -> Any:
        """Call the tool with validated ``args``; return its JSON-able result or raise."""
        ...


class PythonTransport:
    """Calls a Python function (sync functions run in a worker thread, with the caller's context variables).

    Arguments are converted through the function's pydantic argument model, so ``Enum`` and model parameters
    receive instances, not raw JSON. A thread running a sync function cannot be stopped when it times out.
    """

    def __init__(self, fn: Callable[..., Any], *, input_model: type[BaseModel] | None = None) -> None:
        self.fn = fn
        self._model = input_model or function_schema(fn).model
        self._wants_key = IDEMPOTENCY_PARAMETER in inspect.signature(fn).parameters

    @property
    def gates_itself(self) -> bool:
        """A sync function enters :data:`call_gate` itself, in its worker thread just before it runs."""
        return not inspect.iscoroutinefunction(self.fn)

    async def call(self, args: Mapping[str, Any], *, idempotency_key: str, timeout_s: float | None) -> Any:
        """Convert ``args``, call the function (awaiting it if async) and return its result."""
        try:
            parsed = self._model.model_validate(dict(args))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ToolArgumentsInvalid(first["msg"], field=format_field(["args", *first["loc"]])) from None
        kwargs = {field.alias or name: getattr(parsed, name) for name, field in type(parsed).model_fields.items()}
        kwargs.update(parsed.model_extra or {})
        if self._wants_key:
            kwargs[IDEMPOTENCY_PARAMETER] = idempotency_key
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(**kwargs)
        else:
            gate = call_gate.get() or CallGate()
            try:
                result = await asyncio.to_thread(_through_gate, self.fn, kwargs, gate)
            except BaseException:  # a timeout or cancel: a function still waiting for a worker thread never starts
                gate.give_up()
                raise
            if inspect.isawaitable(result):
                result = await result
        return result


def _through_gate(fn: Callable[..., Any], kwargs: dict[str, Any], gate: CallGate) -> Any:
    """``fn(**kwargs)`` in a worker thread, unless its gate refuses it at the last moment, or its caller gave up
    (timed out, canceled) while it waited for the thread or the gate."""
    if not gate.enter():
        return None  # nobody awaits the result any more, and the function must not start after its step ended
    return fn(**kwargs)


class NotRun(Exception):
    """The call did not run: its gate refused it, or could not tell (``error``: why, as the call's failure)."""

    def __init__(self, error: WeftError) -> None:
        super().__init__(error.message)
        self.error = error


def ask_gate(gate: Callable[[], None]) -> None:
    """Ask a call's gate (blocking). Raises :class:`NotRun`: with the gate's own :class:`WeftError` (e.g.
    ``RunCanceled``), or, when the gate fails otherwise (its storage is down), a retryable
    :class:`CancelCheckUnavailable` naming only the error's type (a storage error's text names accounts and URLs)."""
    try:
        gate()
    except WeftError as exc:
        raise NotRun(exc) from None
    except Exception as exc:
        raise NotRun(CancelCheckUnavailable(
            f"the call was not run: whether its run was canceled could not be read ({type(exc).__name__})")) from None


class CallGate:
    """Where one call stands at its last-moment ``check`` (blocking; raises, e.g. ``RunCanceled``, when the call must
    not run after all; ``None``: nothing to ask). The code that starts the call (:meth:`start`, or :meth:`enter` in
    the thread that runs it) and the caller that stops waiting for it (:meth:`give_up`) agree under a lock on which
    came first: a call given up never starts, and a call that never started is not the tool's failure."""

    def __init__(self, check: Callable[[], None] | None = None) -> None:
        self.check = check
        self._lock = threading.Lock()
        self._started = self._given_up = False

    def ask(self) -> bool:
        """Ask the check (:func:`ask_gate`: raises :class:`NotRun`) unless the caller gave up already: whether the
        call may still start. Blocking."""
        with self._lock:
            if self._given_up:
                return False
        if self.check is not None:
            ask_gate(self.check)
        return True

    def start(self) -> bool:
        """The call starts now: whether it may (``False``: its caller gave up). Call it where the call starts (on
        the event loop just before an async call, in the worker thread before a sync one), not where the check
        was asked: the caller may give up in between."""
        with self._lock:
            if self._given_up:
                return False
            self._started = True
            return True

    def enter(self) -> bool:
        """:meth:`ask`, then :meth:`start`, in the thread that runs the call. Blocking."""
        return self.ask() and self.start()

    def give_up(self) -> bool:
        """The caller stops waiting (timeout, cancel): the call must not start from now on. Whether it never started
        (the check was slow, or never asked for want of a thread): then it did not run and nothing of the tool is to
        blame. Idempotent."""
        with self._lock:
            self._given_up = True
            return not self._started


# ------------------------------------------------------------------------------------------------ tools


class Tool:
    """A spec and the transport that calls it (``None``: spec-only, known but not callable here). Immutable.

    A tool read back from a validated catalog file (:class:`~shared.catalog.file_cache.CatalogFileCache`) keeps its
    spec as canonical JSON and builds the :class:`~shared.models.ToolSpec` on first use: a warm start over 100k
    tools then parses none of them.
    """

    __slots__ = ("_args_validator", "_name", "_spec", "_spec_json", "_transport")

    def __init__(self, spec: ToolSpec, transport: ToolTransport | None = None) -> None:
        self._name = spec.name
        self._spec: ToolSpec | None = spec
        self._spec_json: bytes | None = None
        self._transport = transport
        self._args_validator: Any = None

    @classmethod
    def validated(cls, name: str, spec_json: bytes) -> Tool:
        """A spec-only tool from the canonical JSON of a spec validated earlier by this code."""
        entry = cls.__new__(cls)
        entry._name, entry._spec, entry._spec_json, entry._transport = name, None, spec_json, None
        entry._args_validator = None
        return entry

    @property
    def name(self) -> str:
        """The tool's name."""
        return self._name

    @property
    def spec(self) -> ToolSpec:
        """What Weft knows about the tool."""
        spec = self._spec
        if spec is None:  # two threads may both build it; the results are equal
            spec = self._spec = _trusted_spec(json.loads(self._spec_json or b"{}"))
        return spec

    @property
    def transport(self) -> ToolTransport | None:
        """How the tool is called (``None``: spec-only)."""
        return self._transport

    def spec_json(self) -> bytes:
        """The canonical JSON of the spec, UTF-8 (what :attr:`Catalog.version` hashes)."""
        if self._spec_json is not None:
            return self._spec_json
        return canonical_json(self.spec.model_dump(mode="json")).encode("utf-8")

    def check_args(self, args: Any) -> list[ArgumentProblem]:
        """Problems with ``args`` under this tool's parameters schema (empty when valid)."""
        validator = self._args_validator
        if validator is None:  # every call checks its arguments: the schema is looked up once per tool, not per call
            validator = self._args_validator = schema_validator(self.spec.parameters)
        return argument_problems(self.spec.parameters, args, validator=validator)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tool):
            return NotImplemented
        return self._name == other._name and self.transport == other.transport and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f"Tool(spec={self.spec!r}, transport={self.transport!r})"


def _trusted_spec(data: dict[str, Any]) -> ToolSpec:
    """The spec whose ``model_dump(mode="json")`` is ``data``, without validating it again (the data was validated by
    this code before it was saved, and its JSON round trip checked to give the same spec)."""
    return ToolSpec.model_construct(**{**data, "retry": RetryPolicy.model_construct(**data["retry"])})


def tool(
    name: str | None = None,
    *,
    description: str | None = None,
    side_effects: bool = False,
    idempotent: bool = True,
    timeout_s: float | None = None,
    tags: Sequence[str] = (),
    requires_approval: bool = False,
    retry: RetryPolicy | None = None,
    max_concurrency: int | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as a tool with these options; :meth:`Catalog.register` and catalog files (``impl``) use them.

    The function is returned unchanged apart from the mark, so it can still be called directly.
    """
    options = {
        "name": name, "description": description, "side_effects": side_effects, "idempotent": idempotent,
        "timeout_s": timeout_s, "tags": tuple(tags), "requires_approval": requires_approval, "retry": retry,
        "max_concurrency": max_concurrency,
    }

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, _TOOL_MARK, options)
        return fn

    return mark


class ToolOptions(TypedDict, total=False):
    """What :func:`python_tool` and :meth:`Catalog.register` accept about a tool (``None``: not given)."""

    name: str | None
    description: str | None
    side_effects: bool | None
    idempotent: bool | None
    timeout_s: float | None
    tags: Sequence[str] | None
    requires_approval: bool | None
    retry: RetryPolicy | None
    max_concurrency: int | None


def python_tool(fn: Callable[..., Any], *, source: str = "python", **given: Unpack[ToolOptions]) -> Tool:
    """A :class:`Tool` calling the Python function ``fn`` (sync or async); options not given come from its
    ``@tool`` mark, then from the defaults (no side effects, idempotent).

    The schema comes from the type hints, the description and parameter docs from the docstring.
    """
    options: dict[str, Any] = {key: value for key, value in getattr(fn, _TOOL_MARK, {}).items() if value is not None}
    options.update({key: value for key, value in given.items() if value is not None})
    schema = function_schema(fn)
    options["name"] = options.get("name") or fn.__name__
    options["description"] = options.get("description") or schema.description
    options["tags"] = list(options.get("tags", ()))
    spec = ToolSpec(parameters=schema.parameters, source=source, **options)
    return Tool(spec, PythonTransport(fn, input_model=schema.model))


class _ImplError(ValueError):
    """A bad ``impl`` in words of ours (Python's own import errors repeat the name they were given, uncut)."""


def _import_impl(ref: str) -> Callable[..., Any]:
    module_name, _, attr_path = ref.partition(":")
    if not module_name or not attr_path:
        raise _ImplError("impl must look like 'package.module:function'")
    target: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    if not callable(target):
        raise _ImplError("it is not callable")
    return target


# ------------------------------------------------------------------------------------------------ catalog


def cacheable_specs(tools: Sequence[Tool]) -> list[tuple[str, bytes]] | None:
    """``(name, canonical spec JSON)`` of spec-only ``tools`` whose JSON gives back the same spec; ``None`` when a tool
    has a transport (its spec comes from imported code) or would not survive the round trip (YAML dates, NaN)."""
    saved = []
    for entry in tools:
        if entry.transport is not None:
            return None
        try:
            spec_json = entry.spec_json()
        except ValueError:
            return None
        if _trusted_spec(json.loads(spec_json)) != entry.spec:
            return None
        saved.append((entry.name, spec_json))
    for entry, (_, spec_json) in zip(tools, saved, strict=True):
        entry._spec_json = spec_json  # the catalog's version hashes it next
    return saved


def tool_from_entry(entry: Any, where: str, *, source: str, allow_impl: bool) -> Tool:
    """The tool a catalog entry describes (a spec, OpenAI's ``{"type": "function", ...}`` form, ``impl`` where
    ``allow_impl``); :class:`InvalidRequest` naming ``where`` for a bad one."""
    if not isinstance(entry, Mapping):
        raise InvalidRequest("a tool entry must be an object", field=where)
    data = dict(entry)
    if data.get("type") == "function" and isinstance(data.get("function"), Mapping):
        data.pop("type")
        data = {**dict(data.pop("function")), **data}
    data.pop("strict", None)  # OpenAI's structured-outputs flag: not ours to enforce
    impl = data.pop("impl", None)
    transport: ToolTransport | None = None
    if impl is not None:
        if not allow_impl:
            raise InvalidRequest("impl is only allowed in catalog files", field=f"{where}.impl")
        try:
            fn = _import_impl(str(impl))
        except _ImplError as exc:
            raise InvalidRequest(f"cannot load impl {quoted(str(impl))}: {exc}", field=f"{where}.impl") from None
        except Exception as exc:  # Python's, or the module's own at import: they may repeat the impl, uncut
            raise InvalidRequest(
                f"cannot load impl {quoted(str(impl))}: {type(exc).__name__} {quoted(str(exc))}", field=f"{where}.impl"
            ) from None
        try:
            schema = function_schema(fn)
        except (TypeError, ValueError, NameError) as exc:  # the function's signature or hints: shown whole
            raise InvalidRequest(f"cannot load impl {quoted(str(impl))}: {exc}", field=f"{where}.impl") from None
        transport = PythonTransport(fn, input_model=schema.model)
        marked = {key: value for key, value in getattr(fn, _TOOL_MARK, {}).items() if value is not None}
        for key, value in marked.items():
            data.setdefault(key, list(value) if key == "tags" else value)
        data.setdefault("parameters", schema.parameters)
        data.setdefault("description", schema.description)
    known = _WEFT_KEYS | {"name", "description", "parameters"}
    unknown = sorted(str(key) for key in data if key not in known)  # str: a YAML file's keys may be numbers
    if unknown:
        hint = close_matches(unknown[0], known, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise InvalidRequest(f"unknown key {quoted(unknown[0])}{suffix}", field=format_field([where, unknown[0]]))
    data.setdefault("source", source)
    return Tool(parse_model(ToolSpec, data, field=where), transport)

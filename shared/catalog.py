"""The tool catalog: specs from Python functions and JSON/YAML files, each with a transport that calls it.

A :class:`Tool` is a :class:`~shared.models.ToolSpec` plus a :class:`ToolTransport` (``None`` for spec-only entries).
Python functions are one transport (:class:`PythonTransport`); HTTP (OpenAPI) and MCP transports live in their own
modules behind the same one-method protocol, so adding them does not touch the executor.

Schemas are built from type hints through pydantic (str/int/float/bool, lists, dicts, ``Optional``, ``Literal``,
``Enum``, pydantic models, defaults) and Google-style docstrings (summary and ``Args:``). A parameter named
``idempotency_key`` is not part of the schema: the executor fills it with the call's key.

Reads are lock-free on an immutable snapshot that writers replace under a lock, so the catalog is safe to share
between threads.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import functools
import hashlib
import importlib
import inspect
import json
import keyword
import re
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml
from jsonschema import validators as jsonschema_validators
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from shared.errors import InvalidRequest, ToolArgumentsInvalid, ToolNotFound
from shared.models import RetryPolicy, ToolSpec, canonical_json, format_field, parse_model

__all__ = [
    "ArgumentProblem",
    "Catalog",
    "FunctionSchema",
    "PythonTransport",
    "Tool",
    "ToolTransport",
    "argument_problems",
    "function_schema",
    "parse_docstring",
    "python_identifier",
    "python_tool",
    "tool",
]

IDEMPOTENCY_PARAMETER = "idempotency_key"
"""A tool function declaring a parameter with this name receives the call's idempotency key there."""
_TOOL_MARK = "__weft_tool__"
_WEFT_KEYS = frozenset(ToolSpec.model_fields) - {"name", "description", "parameters"}
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Returns?|Yields?|Raises|Examples?|Notes?|Attributes|"
    r"See Also|Warnings?|Todo|References):\s*$"
)
_ARG_LINE = re.compile(r"^\**(?P<name>\w+)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")
_SHAPE_VALIDATORS = frozenset(
    {"type", "required", "additionalProperties", "minProperties", "maxProperties", "minItems", "maxItems",
     "propertyNames", "dependentRequired"}
)


# ------------------------------------------------------------------------------------------------ transports


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
            result = await asyncio.to_thread(self.fn, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        return result


# ------------------------------------------------------------------------------------------ schema from functions


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and its ``Args:`` descriptions by parameter name."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    index = 0
    while index < len(lines) and not _SECTION.match(lines[index]):
        description.append(lines[index])
        index += 1
    while index < len(lines):
        header = _SECTION.match(lines[index])
        index += 1
        if not header or header.group(1) not in {"Args", "Arguments", "Parameters", "Params", "Keyword Args"}:
            continue
        base: int | None = None
        current: str | None = None
        while index < len(lines):
            line = lines[index]
            if line.strip() and (indent := len(line) - len(line.lstrip())) == 0:
                break
            index += 1
            if not line.strip():
                continue
            base = indent if base is None else base
            match = _ARG_LINE.match(line.strip())
            if indent == base and match:
                current = match.group("name")
                params[current] = match.group("text").strip()
            elif current is not None:
                params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


@dataclass(frozen=True)
class FunctionSchema:
    """What :func:`function_schema` derives from a function."""

    description: str
    """The docstring's description (everything before its first section)."""
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""
    model: type[BaseModel]
    """Pydantic model that validates and converts arguments (field aliases are the parameter names)."""


def _strip_titles(node: Any, *, names: bool = False) -> Any:
    """Drop pydantic's generated ``title`` keys; ``names`` marks a mapping of property names (kept as they are)."""
    if isinstance(node, dict):
        return {
            key: _strip_titles(value, names=not names and key in {"properties", "$defs", "patternProperties"})
            for key, value in node.items()
            if names or key != "title" or not isinstance(value, str)
        }
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    return node


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``#/$defs/X`` references (LLMs read flat schemas better); recursive definitions stay as references."""
    defs = schema.get("$defs", {})
    kept: set[str] = set()

    def visit(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [visit(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
            name = ref[8:]
            if name in stack:
                kept.add(name)
                return node
            siblings = {key: visit(value, stack) for key, value in node.items() if key != "$ref"}
            return {**visit(defs[name], (*stack, name)), **siblings}
        return {key: visit(value, stack) for key, value in node.items() if key != "$defs"}

    out = visit(schema, ())
    if kept:
        out["$defs"] = {name: visit(defs[name], (name,)) for name in sorted(kept)}
    return out


def function_schema(fn: Callable[..., Any]) -> FunctionSchema:
    """Build the arguments' JSON schema and pydantic model of ``fn`` from its signature, hints and docstring."""
    try:
        built = _cached_function_schema(fn)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        built = _build_function_schema(fn)
    return FunctionSchema(built.description, copy.deepcopy(built.parameters), built.model)


@functools.lru_cache(maxsize=1024)
def _cached_function_schema(fn: Callable[..., Any]) -> FunctionSchema:
    # Building the pydantic model takes milliseconds; every catalog of a process registers the same functions.
    return _build_function_schema(fn)


def _build_function_schema(fn: Callable[..., Any]) -> FunctionSchema:
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    description, docs = parse_docstring(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    extra = "forbid"
    for position, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind is param.VAR_POSITIONAL or param.name == IDEMPOTENCY_PARAMETER:
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool function {fn.__qualname__}: positional-only parameter {param.name!r} is not allowed")
        default = ... if param.default is param.empty else param.default
        annotation = hints.get(param.name, Any)
        fields[f"p{position}"] = (annotation, Field(default, alias=param.name, description=docs.get(param.name)))
    model = create_model(
        f"{getattr(fn, '__name__', 'tool')}_arguments",
        __config__=ConfigDict(extra=extra, populate_by_name=False, arbitrary_types_allowed=False),
        **fields,
    )
    try:
        raw = model.model_json_schema(by_alias=True)
    except Exception as exc:  # pydantic raises several types for unsupported hints and defaults
        raise TypeError(f"tool function {fn.__qualname__}: cannot build a JSON schema: {exc}") from exc
    parameters = _inline_defs(_strip_titles(raw))
    parameters.setdefault("properties", {})
    return FunctionSchema(description=description, parameters=parameters, model=model)


# ----------------------------------------------------------------------------------------- argument checking


@dataclass(frozen=True)
class ArgumentProblem:
    """One way an arguments object does not match its schema."""

    path: tuple[str | int, ...]
    """Where, inside the arguments (``("items", 0, "name")``); empty for the object itself."""
    message: str
    """What is wrong, phrased for the caller."""

    def field(self, prefix: str = "args") -> str:
        """The path as a field name: ``args.items[0].name``."""
        return format_field([prefix, *self.path])


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = jsonschema_validators.validator_for(schema, default=jsonschema_validators.Draft202012Validator)
    return cls(schema)


def _under(path: tuple[Any, ...], prefix: tuple[Any, ...]) -> bool:
    return path[: len(prefix)] == prefix


def argument_problems(
    schema: Mapping[str, Any], args: Any, *, opaque: Iterable[tuple[str | int, ...]] = ()
) -> list[ArgumentProblem]:
    """Every problem with ``args`` under ``schema``, in a stable order.

    ``opaque`` paths hold values not known yet (``$ref`` placeholders in a plan): errors at or inside them are
    ignored, and so are errors at their ancestors unless they concern only the shape (missing or unexpected keys,
    wrong container type, sizes).
    """
    opaque = tuple(opaque)
    validator = _validator(canonical_json(dict(schema)))
    problems: list[ArgumentProblem] = []
    for error in (leaf for top in validator.iter_errors(args) for leaf in _leaves(top)):
        path = tuple(error.absolute_path)
        if any(_under(path, hole) for hole in opaque):
            continue
        if error.validator not in _SHAPE_VALIDATORS and any(_under(hole, path) for hole in opaque):
            continue
        problems.append(_describe(error, path))
    return problems


def _leaves(error: Any) -> Iterator[Any]:
    """An ``anyOf``/``oneOf`` error whose value has the type of exactly one branch becomes that branch's errors
    (``list[Point] | None`` given a list reports the bad item, not "not valid under any of the given schemas")."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        here = tuple(error.absolute_path)
        typed = [
            subs
            for subs in branches.values()
            if not any(sub.validator == "type" and tuple(sub.absolute_path) == here for sub in subs)
        ]
        if len(typed) == 1:
            for sub in typed[0]:
                yield from _leaves(sub)
            return
    yield error


def _describe(error: Any, path: tuple[Any, ...]) -> ArgumentProblem:
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in error.validator_value if name not in instance]
        named = [name for name in missing if error.message.startswith(repr(name))] or missing
        if named:
            return ArgumentProblem((*path, named[0]), f"missing required argument {named[0]!r}")
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(key for key in instance if key not in allowed)
        if unexpected:
            hint = difflib.get_close_matches(unexpected[0], allowed, n=1)
            message = f"unexpected argument {unexpected[0]!r}"
            message += f"; did you mean {hint[0]!r}?" if hint else ""
            message += f" (allowed: {', '.join(allowed)})" if allowed else " (this tool takes no arguments)"
            return ArgumentProblem((*path, unexpected[0]), message)
    return ArgumentProblem(path, error.message)


# ------------------------------------------------------------------------------------------------ tools


@dataclass(frozen=True)
class Tool:
    """A spec and the transport that calls it (``None``: spec-only, known but not callable here)."""

    spec: ToolSpec
    transport: ToolTransport | None = None

    @property
    def name(self) -> str:
        """The tool's name."""
        return self.spec.name

    def check_args(self, args: Any) -> list[ArgumentProblem]:
        """Problems with ``args`` under this tool's parameters schema (empty when valid)."""
        return argument_problems(self.spec.parameters, args)


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


def python_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: bool | None = None,
    idempotent: bool | None = None,
    timeout_s: float | None = None,
    tags: Sequence[str] | None = None,
    requires_approval: bool | None = None,
    retry: RetryPolicy | None = None,
    max_concurrency: int | None = None,
    source: str = "python",
) -> Tool:
    """A :class:`Tool` calling the Python function ``fn`` (sync or async); options not given come from its
    ``@tool`` mark, then from the defaults (no side effects, idempotent).

    The schema comes from the type hints, the description and parameter docs from the docstring.
    """
    given = {
        "name": name, "description": description, "side_effects": side_effects, "idempotent": idempotent,
        "timeout_s": timeout_s, "tags": tags, "requires_approval": requires_approval, "retry": retry,
        "max_concurrency": max_concurrency,
    }
    options = {key: value for key, value in getattr(fn, _TOOL_MARK, {}).items() if value is not None}
    options.update({key: value for key, value in given.items() if value is not None})
    schema = function_schema(fn)
    options["name"] = options.get("name") or fn.__name__
    options["description"] = options.get("description") or schema.description
    options["tags"] = list(options.get("tags", ()))
    spec = ToolSpec(parameters=schema.parameters, source=source, **options)
    return Tool(spec, PythonTransport(fn, input_model=schema.model))


def python_identifier(name: str) -> str:
    """A Python identifier for a tool or parameter name: ``weather.get`` -> ``weather_get``, ``class`` -> ``class_``."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = f"_{ident}"
    return f"{ident}_" if keyword.iskeyword(ident) else ident


def _import_impl(ref: str) -> Callable[..., Any]:
    module_name, _, attr_path = ref.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"impl must look like 'package.module:function', got {ref!r}")
    target: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    if not callable(target):
        raise ValueError(f"impl {ref!r} is not callable")
    return target


# ------------------------------------------------------------------------------------------------ catalog


@dataclass(frozen=True)
class _Snapshot:
    tools: Mapping[str, Tool]
    version: str


def _snapshot(tools: Mapping[str, Tool]) -> _Snapshot:
    ordered = {name: tools[name] for name in sorted(tools)}
    dumps = [entry.spec.model_dump(mode="json") for entry in ordered.values()]
    version = hashlib.sha256(canonical_json(dumps).encode("utf-8")).hexdigest()
    return _Snapshot(ordered, version)


class Catalog:
    """In-memory tool catalog: register, look up, render for LLMs. Safe to read from many threads."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._lock = threading.Lock()
        self._snap = _snapshot({})
        self.add_all(list(tools))

    # ---- writing

    def add(self, entry: Tool, *, replace: bool = False) -> Tool:
        """Add one tool; an existing name is an error unless ``replace``."""
        return self.add_all([entry], replace=replace)[0]

    def add_all(self, entries: Sequence[Tool], *, replace: bool = False) -> list[Tool]:
        """Add several tools at once: all of them or, on a duplicate name, none."""
        with self._lock:
            tools = dict(self._snap.tools)
            seen: set[str] = set()
            for entry in entries:
                if entry.name in seen or (entry.name in tools and not replace):
                    raise ValueError(f"tool {entry.name!r} is already registered")
                seen.add(entry.name)
                tools[entry.name] = entry
            self._snap = _snapshot(tools)
        return list(entries)

    def remove(self, name: str) -> None:
        """Remove a tool (:class:`ToolNotFound` if absent)."""
        with self._lock:
            if name not in self._snap.tools:
                raise self._not_found(name)
            self._snap = _snapshot({key: value for key, value in self._snap.tools.items() if key != name})

    def register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool | None = None,
        idempotent: bool | None = None,
        timeout_s: float | None = None,
        tags: Sequence[str] | None = None,
        requires_approval: bool | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int | None = None,
        source: str = "python",
        replace: bool = False,
    ) -> Tool:
        """Register a Python function (sync or async) as a tool (see :func:`python_tool`); an existing name is an
        error unless ``replace``."""
        entry = python_tool(
            fn, name=name, description=description, side_effects=side_effects, idempotent=idempotent,
            timeout_s=timeout_s, tags=tags, requires_approval=requires_approval, retry=retry,
            max_concurrency=max_concurrency, source=source,
        )
        return self.add(entry, replace=replace)

    def tool(self, name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`register`: ``@catalog.tool(side_effects=True)``; returns the function as is."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(fn, name=name, **options)
            return fn

        return decorate

    def load_entries(
        self, entries: Any, *, source: str = "file", allow_impl: bool = False, replace: bool = False
    ) -> list[Tool]:
        """Add tools from OpenAI-shaped entries (``{name, description, parameters}`` or ``{"type": "function",
        "function": {...}}``) with optional Weft keys (``tags``, ``side_effects``, ``timeout_s``, ``retry``, ...).

        ``{"tools": [...]}`` is accepted as well as a bare list. An ``impl: "module:function"`` key names the Python
        implementation (only with ``allow_impl``, since it imports code); entries without one are spec-only.
        Errors are :class:`InvalidRequest` with ``field`` like ``tools[2].parameters``; nothing is added on error.
        """
        if isinstance(entries, Mapping) and set(entries) == {"tools"}:
            entries = entries["tools"]
        if not isinstance(entries, list):
            raise InvalidRequest("a catalog is a list of tool entries (or {\"tools\": [...]})", field="tools")
        tools = [
            _entry_to_tool(entry, f"tools[{index}]", source=source, allow_impl=allow_impl)
            for index, entry in enumerate(entries)
        ]
        names = [entry.name for entry in tools]
        for index, entry_name in enumerate(names):
            if entry_name in names[:index]:
                raise InvalidRequest(f"tool {entry_name!r} appears twice", field=f"tools[{index}].name")
        try:
            return self.add_all(tools, replace=replace)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="tools") from None

    def load_file(self, path: str | Path, *, replace: bool = False) -> list[Tool]:
        """Add the tools of a JSON or YAML catalog file (see :meth:`load_entries`; ``impl`` allowed)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from None
        try:
            return self.load_entries(data, source="file", allow_impl=True, replace=replace)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{path}: {exc.message}", field=exc.field) from None

    # ---- reading

    def get(self, name: str) -> Tool:
        """The tool called ``name``; :class:`ToolNotFound` (with close matches) if there is none."""
        found = self._snap.tools.get(name)
        if found is None:
            raise self._not_found(name)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._snap.tools

    def __len__(self) -> int:
        return len(self._snap.tools)

    def names(self) -> list[str]:
        """Every tool name, sorted."""
        return list(self._snap.tools)

    def specs(self) -> list[ToolSpec]:
        """Every spec, sorted by name."""
        return [entry.spec for entry in self._snap.tools.values()]

    @property
    def version(self) -> str:
        """sha256 of the canonical JSON of all specs: changes whenever any tool is added, removed or changed."""
        return self._snap.version

    def to_openai_tools(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI function-tool dicts (``{"type": "function", "function": {...}}``) for ``names`` (default: all)."""
        chosen = [self.get(name) for name in names] if names is not None else list(self._snap.tools.values())
        return [
            {
                "type": "function",
                "function": {
                    "name": entry.name, "description": entry.spec.description, "parameters": entry.spec.parameters,
                },
            }
            for entry in chosen
        ]

    def render_python_stub(self, name: str) -> str:
        """An ``async def`` stub with typed parameters, defaults and docstring, for code-writing LLMs."""
        return _render_stub(self.get(name).spec)

    def _not_found(self, name: str) -> ToolNotFound:
        close = difflib.get_close_matches(name, list(self._snap.tools), n=3)
        hint = f"; did you mean {', '.join(repr(match) for match in close)}?" if close else ""
        return ToolNotFound(f"unknown tool {name!r}{hint}")


def _entry_to_tool(entry: Any, where: str, *, source: str, allow_impl: bool) -> Tool:
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
            schema = function_schema(fn)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise InvalidRequest(f"cannot load impl {impl!r}: {exc}", field=f"{where}.impl") from None
        transport = PythonTransport(fn, input_model=schema.model)
        marked = {key: value for key, value in getattr(fn, _TOOL_MARK, {}).items() if value is not None}
        for key, value in marked.items():
            data.setdefault(key, list(value) if key == "tags" else value)
        data.setdefault("parameters", schema.parameters)
        data.setdefault("description", schema.description)
    unknown = sorted(set(data) - {"name", "description", "parameters"} - _WEFT_KEYS)
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(_WEFT_KEYS | {"name", "description", "parameters"}), n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise InvalidRequest(f"unknown key {unknown[0]!r}{suffix}", field=f"{where}.{unknown[0]}")
    data.setdefault("source", source)
    return Tool(parse_model(ToolSpec, data, field=where), transport)


# ------------------------------------------------------------------------------------------------ python stubs

_STUB_WIDTH = 100
_JSON_TO_PY = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def _py_type(schema: Any) -> str:
    if not isinstance(schema, Mapping) or not schema:
        return "Any"
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return "Literal[" + ", ".join(repr(value) for value in values) + "]"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            parts = list(dict.fromkeys(_py_type(option) for option in schema[combinator]))
            if "None" in parts:  # X | None reads better last
                parts = [*(part for part in parts if part != "None"), "None"]
            return " | ".join(parts)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_py_type({**schema, "type": one}) for one in kind)
    if kind == "array":
        return f"list[{_py_type(schema.get('items'))}]"
    if kind == "object" or "$ref" in schema:
        return "dict[str, Any]"
    return _JSON_TO_PY.get(kind, "Any") if isinstance(kind, str) else "Any"


def _render_stub(spec: ToolSpec) -> str:
    properties: Mapping[str, Any] = spec.parameters.get("properties", {})
    required = set(spec.parameters.get("required", []))
    ordered = sorted(properties, key=lambda name: name not in required)  # stable: required first
    params: list[str] = []
    docs: list[str] = []
    for name in ordered:
        prop = properties[name] if isinstance(properties[name], Mapping) else {}
        annotation = _py_type(prop)
        text = f"{python_identifier(name)}: {annotation}"
        if name not in required:
            if "default" in prop:
                text += f" = {prop['default']!r}"
            else:
                text = f"{text} | None = None" if "None" not in annotation.split(" | ") else f"{text} = None"
        params.append(text)
        if prop.get("description"):
            docs.append(f"{python_identifier(name)}: {' '.join(str(prop['description']).split())}")
    body = [_doc_safe(line.rstrip()) for line in (spec.description or spec.name).splitlines()]
    if docs:
        body += ["", "Args:", *(f"    {_doc_safe(line)}" for line in docs)]
    head = f"async def {python_identifier(spec.name)}({', '.join(params)}) -> Any:"
    if len(head) > _STUB_WIDTH:
        head = "\n".join([f"async def {python_identifier(spec.name)}(", *(f"    {p}," for p in params), ") -> Any:"])
    lines = [head, f'    """{body[0]}']
    lines += [f"    {line}" if line else "" for line in body[1:]]
    return "\n".join([*lines, '    """', ""])


def _doc_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', "'''")

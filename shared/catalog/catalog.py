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
import difflib
import hashlib
import importlib
import inspect
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack, runtime_checkable

import yaml
from pydantic import BaseModel, ValidationError

from shared.catalog.file_cache import CatalogFileCache
from shared.catalog.schema import (
    IDEMPOTENCY_PARAMETER,
    ArgumentProblem,
    FunctionSchema,
    argument_problems,
    function_schema,
    parse_docstring,
    python_identifier,
    render_stub,
)
from shared.errors import InvalidRequest, ToolArgumentsInvalid, ToolNotFound
from shared.models import RetryPolicy, ToolSpec, canonical_json, format_field, parse_model

__all__ = [
    "ArgumentProblem",
    "Catalog",
    "FunctionSchema",
    "PythonTransport",
    "Tool",
    "ToolOptions",
    "ToolTransport",
    "argument_problems",
    "function_schema",
    "parse_docstring",
    "python_identifier",
    "python_tool",
    "tool",
]

_TOOL_MARK = "__weft_tool__"
_WEFT_KEYS = frozenset(ToolSpec.model_fields) - {"name", "description", "parameters"}
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


# ------------------------------------------------------------------------------------------------ tools


class Tool:
    """A spec and the transport that calls it (``None``: spec-only, known but not callable here). Immutable.

    A tool read back from a validated catalog file (:class:`~shared.catalog.file_cache.CatalogFileCache`) keeps its
    spec as canonical JSON and builds the :class:`~shared.models.ToolSpec` on first use: a warm start over 100k
    tools then parses none of them.
    """

    __slots__ = ("_name", "_spec", "_spec_json", "_transport")

    def __init__(self, spec: ToolSpec, transport: ToolTransport | None = None) -> None:
        self._name = spec.name
        self._spec: ToolSpec | None = spec
        self._spec_json: bytes | None = None
        self._transport = transport

    @classmethod
    def _validated(cls, name: str, spec_json: bytes) -> Tool:
        """A spec-only tool from the canonical JSON of a spec validated earlier by this code."""
        entry = cls.__new__(cls)
        entry._name, entry._spec, entry._spec_json, entry._transport = name, None, spec_json, None
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
        return argument_problems(self.spec.parameters, args)

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


class _Snapshot:
    """The tools at one moment, never changed once built. Name order and the version are computed on first read, so
    adding tools one at a time costs a dict copy each, not a sort and a hash of every spec (quadratic in the
    catalog's size when tens of thousands are registered one by one). Two threads may both compute them once; the
    results are equal (``functools.cached_property`` would instead hold a lock shared by every snapshot)."""

    def __init__(self, tools: dict[str, Tool]) -> None:
        self.tools = tools
        self._ordered: list[Tool] | None = None
        self._version: str | None = None

    @property
    def ordered(self) -> list[Tool]:
        if self._ordered is None:
            self._ordered = [self.tools[name] for name in sorted(self.tools)]
        return self._ordered

    @property
    def version(self) -> str:
        if self._version is None:
            # canonical_json of the list of dumps, joined from each tool's own canonical JSON (kept by cached tools)
            digest = hashlib.sha256(b"[")
            digest.update(b",".join([entry.spec_json() for entry in self.ordered]))  # 50 MB at 100k tools: one copy
            digest.update(b"]")
            self._version = digest.hexdigest()
        return self._version


class Catalog:
    """In-memory tool catalog: register, look up, render for LLMs. Safe to read from many threads."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._lock = threading.Lock()
        self._snap = _Snapshot({})
        self.add_all(list(tools))

    # ---- writing

    def add(self, entry: Tool, *, replace: bool = False) -> Tool:
        """Add one tool; an existing name is an error unless ``replace``."""
        return self.add_all([entry], replace=replace)[0]

    def add_all(self, entries: Sequence[Tool], *, replace: bool = False) -> list[Tool]:
        """Add several tools at once: all of them or, on a duplicate name, none."""
        added = {entry.name: entry for entry in entries}
        with self._lock:
            tools = self._snap.tools
            if len(added) != len(entries) or (not replace and not tools.keys().isdisjoint(added)):
                seen: set[str] = set()
                for entry in entries:
                    if entry.name in seen or (entry.name in tools and not replace):
                        raise ValueError(f"tool {entry.name!r} is already registered")
                    seen.add(entry.name)
            self._snap = _Snapshot({**tools, **added})
        return list(entries)

    def remove(self, name: str) -> None:
        """Remove a tool (:class:`ToolNotFound` if absent)."""
        with self._lock:
            if name not in self._snap.tools:
                raise self._not_found(name)
            self._snap = _Snapshot({key: value for key, value in self._snap.tools.items() if key != name})

    def register(
        self, fn: Callable[..., Any], *, source: str = "python", replace: bool = False, **options: Unpack[ToolOptions]
    ) -> Tool:
        """Register a Python function (sync or async) as a tool (see :func:`python_tool`); an existing name is an
        error unless ``replace``."""
        return self.add(python_tool(fn, source=source, **options), replace=replace)

    def tool(self, **options: Unpack[ToolOptions]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`register`: ``@catalog.tool(side_effects=True)``; returns the function as is."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(fn, **options)
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
        seen: set[str] = set()
        for index, entry in enumerate(tools):
            if entry.name in seen:
                raise InvalidRequest(f"tool {entry.name!r} appears twice", field=f"tools[{index}].name")
            seen.add(entry.name)
        try:
            return self.add_all(tools, replace=replace)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="tools") from None

    def load_file(self, path: str | Path, *, replace: bool = False, cache_dir: str | Path | None = None) -> list[Tool]:
        """Add the tools of a JSON or YAML catalog file (see :meth:`load_entries`; ``impl`` allowed).

        With ``cache_dir``, a file without ``impl`` entries is validated once per content and code version: the
        validated specs are saved there (:class:`~shared.catalog.file_cache.CatalogFileCache`) and read back by later
        loads of the same bytes, each spec built on first use.
        """
        path = Path(path)
        content = path.read_bytes()
        kind = "json" if path.suffix.lower() == ".json" else "yaml"
        cache = CatalogFileCache(cache_dir) if cache_dir else None
        key = cache.key(content, kind) if cache is not None else ""
        cached = cache.load(key) if cache is not None else None
        if cached is not None:
            try:
                validated = Tool._validated
                return self.add_all([validated(name, spec_json) for name, spec_json in zip(*cached, strict=True)],
                                    replace=replace)
            except ValueError as exc:
                raise InvalidRequest(f"{path}: {exc}", field="tools") from None
        text = content.decode("utf-8")
        try:
            data = json.loads(text) if kind == "json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from None
        try:
            loaded = self.load_entries(data, source="file", allow_impl=True, replace=replace)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{path}: {exc.message}", field=exc.field) from None
        if cache is not None:
            saved = _cacheable(loaded)
            if saved is not None:
                cache.save(key, saved)
        return loaded

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
        return [entry.name for entry in self._snap.ordered]

    def specs(self) -> list[ToolSpec]:
        """Every spec, sorted by name."""
        return [entry.spec for entry in self._snap.ordered]

    def search_entries(self) -> list[Mapping[str, Any]]:
        """Every tool as tool search indexes it (``name``, ``description``, ``parameters``, ``tags``, ``source``),
        sorted by name; a spec read from the catalog cache is built only when its entry is first read."""
        return list(map(_SearchEntry, self._snap.ordered))

    @property
    def version(self) -> str:
        """sha256 of the canonical JSON of all specs: changes whenever any tool is added, removed or changed."""
        return self._snap.version

    def render_python_stub(self, name: str) -> str:
        """An ``async def`` stub with typed parameters, defaults and docstring, for code-writing LLMs."""
        return render_stub(self.get(name).spec)

    def _not_found(self, name: str) -> ToolNotFound:
        close = difflib.get_close_matches(name, list(self._snap.tools), n=3)
        hint = f"; did you mean {', '.join(repr(match) for match in close)}?" if close else ""
        return ToolNotFound(f"unknown tool {name!r}{hint}")


class _SearchEntry(Mapping[str, Any]):
    """A read-only view of a tool's searchable fields."""

    __slots__ = ("_tool",)
    _KEYS = ("name", "description", "parameters", "tags", "source")

    def __init__(self, entry: Tool) -> None:
        self._tool = entry

    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(key)
        return self._tool.name if key == "name" else getattr(self._tool.spec, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


def _cacheable(tools: Sequence[Tool]) -> list[tuple[str, bytes]] | None:
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



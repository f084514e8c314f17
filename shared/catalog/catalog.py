"""The tool catalog: the tools of Python functions and JSON/YAML files, each with a transport that calls it.

A tool (:mod:`shared.catalog.tool`) is a :class:`~shared.models.ToolSpec` plus a :class:`ToolTransport` (``None`` for
spec-only entries). A catalog file is validated once per content and code (:mod:`shared.catalog.file_cache`).

Reads are lock-free on an immutable snapshot that writers replace under a lock, so the catalog is safe to share
between threads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import yaml

from shared.catalog.file_cache import CatalogFileCache
from shared.catalog.schema import (
    ArgumentProblem,
    FunctionSchema,
    argument_problems,
    function_schema,
    parse_docstring,
    python_identifier,
    render_stub,
)
from shared.catalog.tool import (
    PythonTransport,
    Tool,
    ToolOptions,
    ToolTransport,
    cacheable_specs,
    python_tool,
    tool,
    tool_from_entry,
)
from shared.errors import InvalidRequest, ToolNotFound
from shared.models import ToolSpec
from shared.suggestions import NameIndex

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

class _Snapshot:
    """The tools at one moment, never changed once built. Name order and the version are computed on first read, so
    adding tools one at a time costs a dict copy each, not a sort and a hash of every spec (quadratic in the
    catalog's size when tens of thousands are registered one by one). Two threads may both compute them once; the
    results are equal (``functools.cached_property`` would instead hold a lock shared by every snapshot)."""

    def __init__(self, tools: dict[str, Tool]) -> None:
        self.tools = tools
        self._ordered: list[Tool] | None = None
        self._version: str | None = None
        self._names: NameIndex | None = None

    @property
    def names(self) -> NameIndex:
        if self._names is None:
            self._names = NameIndex(self.tools)
        return self._names

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
                raise self._not_found(name, self._snap)
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
            tool_from_entry(entry, f"tools[{index}]", source=source, allow_impl=allow_impl)
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
                validated = Tool.validated
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
            saved = cacheable_specs(loaded)
            if saved is not None:
                cache.save(key, saved)
        return loaded

    # ---- reading

    def get(self, name: str) -> Tool:
        """The tool called ``name``; :class:`ToolNotFound` (with close matches) if there is none."""
        snap = self._snap
        found = snap.tools.get(name)
        if found is None:
            raise self._not_found(name, snap)
        return found

    def find(self, name: str) -> Tool | None:
        """The tool called ``name``, or None (one read of the catalog: no suggestion is computed)."""
        return self._snap.tools.get(name)

    def close_names(self, name: str, n: int = 3) -> list[str]:
        """Up to ``n`` tool names close to ``name``, best first, compared with a bounded number of names
        (:mod:`shared.suggestions`; the index is built once per catalog version)."""
        return self._snap.names.close_matches(name, n=n)

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

    def _not_found(self, name: str, snap: _Snapshot) -> ToolNotFound:
        close = snap.names.close_matches(name)
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

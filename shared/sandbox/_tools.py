"""How tools look inside sandboxed code: callable both ways, and reachable as written in the catalog.

Worker side, stdlib only. A tool is a :class:`ToolFunction`. Where the code calls it without ``await`` (the runtime's
rewriter decides that from the code, see :func:`shared.sandbox._runtime.compile_code`), the call is made at once and
returns the tool's result; where the code awaits it, or hands it to ``asyncio.gather``/``create_task``/``wait``/
``as_completed``, the call is a :class:`ToolCall`: a lazy coroutine that starts when it is first awaited, so calls
pending at the same time fan out in parallel (one round in replay mode).

A dotted tool name (``my.add``: a source alias and the tool) is also reachable through a namespace object
(``my.add(...)``) next to its flat Python name (``my_add(...)``).
"""

from __future__ import annotations

import asyncio
import bisect
import collections.abc
import difflib
import itertools
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

RESERVED_HEADS_HINT = "the namespace name is taken by a builtin or module; call the tool by its flat name"
MAX_CANDIDATES = 500
"""Names one did-you-mean compares with (as ``shared.suggestions.MAX_CANDIDATES``, which the worker cannot import:
it loads only this package, under a private name or from source)."""
MAX_NAME_CHARS = 64
"""Longest word or name a did-you-mean compares (as ``shared.suggestions.MAX_NAME_CHARS``)."""
MAX_LISTED = 10
"""Tools an unknown name's error lists; ``dir()`` of the namespace lists them all."""


def close_name(word: str, names: Iterable[Any]) -> str | None:
    """The name closest to ``word`` (difflib's, cutoff 0.6), at a bounded cost: with more than
    :data:`MAX_CANDIDATES` names, only those nearest ``word`` in sorted order are compared (a typo keeps its start
    more often than not); words and names longer than :data:`MAX_NAME_CHARS` are not compared, nor are dunder names.
    The worker's one did-you-mean, for tools, names and attributes. Only exact ``str`` words and names count: a
    subclass from the code could run its own methods while they are compared."""
    if type(word) is not str or len(word) > MAX_NAME_CHARS:
        return None
    pool = sorted({name for name in names
                   if type(name) is str and len(name) <= MAX_NAME_CHARS and not name.startswith("__")})
    if len(pool) > MAX_CANDIDATES:
        at = bisect.bisect_left(pool, word)
        start = max(0, min(at - MAX_CANDIDATES // 2, len(pool) - MAX_CANDIDATES))
        pool = pool[start : start + MAX_CANDIDATES]
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return matches[0] if matches else None


def flat_name(name: str) -> str:
    """The Python name of a (possibly dotted) tool name: ``my.add`` -> ``my_add``."""
    return name.replace(".", "_")


def _not_awaited(tool: str) -> str:
    return (
        f"{tool}(...) was called as a coroutine and never awaited, so there is no result yet: write "
        f"'x = {tool}(...)' (the result at once) or 'x = await {tool}(...)'; for several calls in parallel use "
        f"'await asyncio.gather({tool}(a), {tool}(b))'"
    )


def make_tool_types(
    call_async: Callable[[str, tuple[Any, ...], dict[str, Any]], Coroutine[Any, Any, Any]],
    call_now: Callable[[str, tuple[Any, ...], dict[str, Any]], Any],
) -> tuple[type, type, Callable[..., Any]]:
    """The run's ``ToolFunction`` and ``ToolCall`` classes and its ``__weft_now__`` helper.

    The run's callbacks live in closures, not in attributes, so code holding a tool cannot reach the runtime.
    """

    created = itertools.count(1)

    class ToolCall(collections.abc.Coroutine):
        """A tool call not yet awaited: a coroutine that starts the call when first awaited."""

        __slots__ = ("_args", "_hash", "_inner", "_kwargs", "tool")

        def __init__(self, tool: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.tool, self._args, self._kwargs = tool, args, kwargs
            self._inner: Any = None
            self._hash = next(created)

        def __hash__(self) -> int:
            # the order of creation, not the address: asyncio.wait/as_completed put calls in a set, and a replay
            # must see them in the same order every time
            return self._hash

        def __eq__(self, other: object) -> bool:
            return self is other

        def _start(self) -> Any:
            if self._inner is None:
                self._inner = call_async(self.tool, self._args, self._kwargs)
            return self._inner

        def send(self, value: Any) -> Any:
            return self._start().send(value)

        def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
            if val is None and tb is None:
                return self._start().throw(typ)
            return self._start().throw(typ, val, tb)

        def close(self) -> None:
            if self._inner is not None:
                self._inner.close()

        def __await__(self) -> Any:
            return self._start().__await__()

        def __getitem__(self, key: Any) -> Any:
            raise TypeError(_not_awaited(self.tool))

        def __iter__(self) -> Any:
            raise TypeError(_not_awaited(self.tool))

        def __len__(self) -> int:
            raise TypeError(_not_awaited(self.tool))

        def __getattr__(self, name: str) -> Any:
            raise AttributeError(_not_awaited(self.tool))

        def __repr__(self) -> str:
            return f"<tool call {self.tool}(...) not awaited>"

    class ToolFunction:
        """A tool: ``tool(...)`` gives the result, so does ``await tool(...)``; ``asyncio.gather`` runs calls at
        once."""

        __slots__ = ("tool",)

        def __init__(self, tool: str) -> None:
            self.tool = tool

        def __call__(self, *args: Any, **kwargs: Any) -> ToolCall:
            return ToolCall(self.tool, args, kwargs)

        def __repr__(self) -> str:
            return f"<tool {self.tool}>"

    def now(function: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A call the code does not await: a tool gives its result at once; anything else is called as written."""
        if type(function) is ToolFunction:
            return call_now(function.tool, args, kwargs)
        return function(*args, **kwargs)

    return ToolFunction, ToolCall, now


class ToolNamespace:
    """The tools under one prefix (``my`` for ``my.add``): ``my.add(...)``; ``dir(my)`` lists them."""

    def __init__(self, prefix: str, members: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_prefix", prefix)
        for key, value in members.items():
            object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Any:
        names = self.__dir__()
        close = close_name(name, names)
        hint = f"; did you mean {self._prefix}.{close}?" if close else ""
        raise AttributeError(f"there is no tool {self._prefix}.{name}{hint} (tools here: {self._listed(names)})")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"tools cannot be replaced; assign {self._prefix}.{name} to a variable of your own")

    def __dir__(self) -> list[str]:
        return sorted(n for n in vars(self) if not n.startswith("_"))

    def __repr__(self) -> str:
        return f"<tools {self._prefix}: {self._listed(self.__dir__())}>"

    def _listed(self, names: list[str]) -> str:
        """The first :data:`MAX_LISTED` tools, and how many more ``dir()`` shows (a prefix may hold 100,000)."""
        listed = ", ".join(f"{self._prefix}.{n}" for n in names[:MAX_LISTED])
        more = len(names) - MAX_LISTED
        return f"{listed}, and {more} more: dir({self._prefix}) lists them" if more > 0 else listed


def tool_globals(names: Iterable[str], make: Callable[[str], Any], reserved: Iterable[str]) -> dict[str, Any]:
    """Globals for the code: every tool by its flat name, plus one namespace object per dotted prefix."""
    taken = set(reserved)
    values: dict[str, Any] = {}
    tree: dict[str, Any] = {}
    for name in names:
        function = make(name)
        values[flat_name(name)] = function
        if "." in name:
            node = tree
            *parents, leaf = name.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            else:
                node.setdefault(leaf, function)

    def build(prefix: str, node: Mapping[str, Any]) -> ToolNamespace:
        return ToolNamespace(prefix, {
            key: build(f"{prefix}.{key}", value) if isinstance(value, dict) else value for key, value in node.items()
        })

    for head, node in tree.items():
        if head not in taken and head not in values and isinstance(node, dict):
            values[head] = build(head, node)
    return values


def namespace_heads(names: Iterable[str], reserved: Iterable[str]) -> frozenset[str]:
    """The prefixes that become namespace objects (for the rewriter)."""
    flat = {flat_name(n) for n in names}
    taken = set(reserved)
    return frozenset(h for h in (n.split(".")[0] for n in names if "." in n) if h not in taken and h not in flat)


def find_unawaited(value: Any, tool_call: type, depth: int = 0) -> str | None:
    """Describe an un-awaited coroutine or tool call in the code's result, or None."""
    if depth > 20:
        return None
    if isinstance(value, tool_call):
        return _not_awaited(str(getattr(value, "tool", "the tool")))
    if isinstance(value, asyncio.Future) and not value.done():
        return ("the result is an asyncio future that was never awaited (asyncio.gather(...) or a task), so its "
                "calls never finished: write 'await asyncio.gather(...)' or 'await task'")
    if isinstance(value, collections.abc.Coroutine):
        name = getattr(value, "__qualname__", None) or "a coroutine"
        return (f"the result is {name}(), a coroutine that was never awaited, so it never ran: write "
                f"'await {name}(...)' (or 'asyncio.run({name}(...))') to run it and get its value")
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return None
    for item in items:
        found = find_unawaited(item, tool_call, depth + 1)
        if found:
            return found
    return None

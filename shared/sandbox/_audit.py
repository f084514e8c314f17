"""The run-time layer under the AST policy: an audit hook that closes whole classes of objects and behaviours.

Worker side, stdlib only. CPython raises audit events when code reaches frames, code objects and tracebacks' frames
(``object.__getattr__`` for ``gi_frame``, ``cr_frame``, ``ag_frame``, ``tb_frame``, ``__code__``, ``gi_code``…),
when any code object is executed (``exec``: ``eval``/``exec`` hidden in library functions, such as annotation
evaluation in ``functools.singledispatch`` or ``typing.get_type_hints``), and when functions or code objects are
built by hand. The hook refuses each event the policy names (:data:`shared.sandbox.policy.RUNTIME_EVENTS`), however
the code got there: attribute syntax, ``getattr``, a format field, a ``match`` pattern or a library call. It is
installed once per worker process, is active only while sandboxed code runs, and cannot be removed. A violation
does not turn it off: in an embedded run the code may catch the ``Stop`` that unwinds it and go on.

Allowed: executing the run's own compiled code, and ``collections.namedtuple``'s own ``eval`` of the ``__new__`` it
generates from validated field names.
"""

from __future__ import annotations

import collections
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from ._format import quoted

_state: dict[str, Any] = {"world": None, "code": None, "installed": False}
# Library functions that may execute code they generated themselves (from inputs they validate).
_TRUSTED_EXEC_CALLERS = frozenset({collections.namedtuple.__code__})


def _hook(event: str, args: tuple[Any, ...]) -> None:
    world = _state["world"]
    if world is None:
        return
    reason = world.audit_events.get(event)
    if reason is None:
        return
    if event == "exec":
        code = args[0] if args else None
        if code is _state["code"]:
            return
        _state["world"] = None  # reading the caller's f_code is itself an audited event
        try:
            trusted = sys._getframe(1).f_code in _TRUSTED_EXEC_CALLERS
        finally:
            _state["world"] = world
        if trusted:
            return
    elif event in ("object.__setattr__", "object.__delattr__"):
        # a plain copy first: a str subclass's reflected __eq__ would answer the comparison below (CPython 3.11
        # passes only its own constant names here; this keeps the hook safe if that changes)
        name = str.__str__(args[1]) if len(args) > 1 and issubclass(type(args[1]), str) else ""
        if name in ("__module__", "__qualname__", "__doc__", "__name__") or world.rules.problem(name) is None:
            return
        reason = f"{reason} ({quoted(name)})"
    elif event == "object.__getattr__" and len(args) > 1:
        reason = f"attribute {quoted(args[1])} is not allowed: {reason}"
    _state["world"] = None  # reporting the violation is the runtime's own work, not the code's
    try:
        world.hooks.violation(reason)
    finally:
        # An embedded run unwinds with Stop, which the code can catch: what it runs next stays audited, and each
        # refused event ends the run again (the channel keeps the first outcome). A worker process has exited.
        _state["world"] = world


def install_audit_hook(world: Any, code: Any) -> None:
    """Activate the hook for this run (installing it in this process the first time)."""
    if not _state["installed"]:
        sys.addaudithook(_hook)
        _state["installed"] = True
    _state["code"] = code
    _state["world"] = world


def deactivate() -> None:
    """The run is over (embedded runs share their process with other work)."""
    _state["world"] = None
    _state["code"] = None


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Let the runtime itself read tracebacks (formatting the code's error walks its frames)."""
    world = _state["world"]
    _state["world"] = None
    try:
        yield
    finally:
        _state["world"] = world

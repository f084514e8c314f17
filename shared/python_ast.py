"""Parsing Python from several threads at once.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state. When a garbage collection runs
a finalizer while one thread is building a tree, another thread's parse can run in between and the first fails with
``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905). The app parses on worker threads
(the code policy check at admission and in activities, the ``calculate`` tool, the data tools), so every parse in
the app process goes through one lock. Sandbox workers are single-threaded processes and parse directly.
"""

from __future__ import annotations

import ast
import threading
from typing import Any, Literal

__all__ = ["literal_eval", "parse"]

_LOCK = threading.RLock()  # re-entrant: a finalizer that parses, run by a collection mid-parse, must not deadlock


def parse(source: str, filename: str = "<unknown>", mode: Literal["exec", "eval"] = "exec") -> Any:
    """``ast.parse(source, filename, mode)``, one thread at a time."""
    with _LOCK:
        return ast.parse(source, filename, mode)


def literal_eval(source: str) -> Any:
    """``ast.literal_eval`` of a string, its parse taken under the same lock."""
    return ast.literal_eval(parse(source.lstrip(" \t"), mode="eval"))

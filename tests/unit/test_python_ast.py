"""Parsing from many threads while finalizers run (python/cpython#106905): no spurious SystemError."""

from __future__ import annotations

import threading

from shared.python_ast import literal_eval, parse

_SOURCE = "x = " + "(" * 40 + "1" + ")" * 40 + "\n" + "\n".join(
    f"def f{i}(a, b=[1, 2, {{3: 4}}]):\n    return [a + b for a in range({i})]" for i in range(30))


class _Finalized:
    def __del__(self) -> None:
        pass


def test_parsing_on_many_threads_while_finalizers_run_never_fails() -> None:
    # Unlocked, ast.parse failed here with "AST constructor recursion depth mismatch" (3 of 2,400 parses on
    # CPython 3.11.7): garbage collections running finalizers let another thread's parse in mid-construction.
    errors: list[str] = []

    def parse_many() -> None:
        for _ in range(300):
            try:
                parse(_SOURCE)
            except SystemError as exc:
                errors.append(str(exc))
                return

    def make_cycles() -> None:
        for _ in range(15_000):
            a, b = _Finalized(), _Finalized()
            a.other, b.other = b, a  # type: ignore[attr-defined]

    threads = [threading.Thread(target=parse_many) for _ in range(6)] + [
        threading.Thread(target=make_cycles) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def test_literal_eval_reads_a_string_literal() -> None:
    assert literal_eval("'a.b'") == "a.b"
    assert literal_eval(" \t\"x\"") == "x"

"""The AST policy: every forbidden construct is reported with an actionable message; ordinary code passes."""

from __future__ import annotations

import ast
import json

import pytest

from shared.errors import SandboxViolation
from shared.sandbox import policy


def fullwidth(text: str) -> str:
    """ASCII letters as FULLWIDTH letters (the parser folds them back with NFKC)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in text)


def math_bold(text: str) -> str:
    """Lowercase letters as MATHEMATICAL BOLD letters."""
    return "".join(chr(0x1D41A + ord(c) - ord("a")) if c.islower() else c for c in text)


def math_sans_bold(text: str) -> str:
    """Lowercase letters as MATHEMATICAL SANS-SERIF BOLD letters."""
    return "".join(chr(0x1D5EE + ord(c) - ord("a")) if c.islower() else c for c in text)


VIOLATIONS = [
    pytest.param("import os", "import of module 'os' is not allowed", id="import-os"),
    pytest.param("import os.path", "import of module 'os.path'", id="import-os-path"),
    pytest.param("from subprocess import run", "import of module 'subprocess'", id="from-subprocess"),
    pytest.param("import importlib", "import of module 'importlib'", id="import-importlib"),
    pytest.param("import sys", "import of module 'sys'", id="import-sys"),
    pytest.param("import json.decoder", "import of module 'json.decoder'", id="import-submodule"),
    pytest.param("from . import x", "relative imports are not allowed", id="relative-import"),
    pytest.param("from json import _default_decoder", "private name '_default_decoder'", id="private-from-import"),
    pytest.param("from __future__ import barry_as_FLUFL", "only 'annotations'", id="future-other"),
    pytest.param("open('/etc/passwd')", "'open' is not allowed", id="open"),
    pytest.param("eval('1')", "'eval' is not allowed", id="eval"),
    pytest.param("exec('x=1')", "'exec' is not allowed", id="exec"),
    pytest.param("compile('1', 'f', 'eval')", "'compile' is not allowed", id="compile"),
    pytest.param("__import__('os')", "'__import__' is not allowed", id="dunder-import"),
    pytest.param("globals()", "'globals' is not allowed", id="globals"),
    pytest.param("locals()", "'locals' is not allowed", id="locals"),
    pytest.param("vars()", "'vars' is not allowed", id="vars"),
    pytest.param("breakpoint()", "'breakpoint' is not allowed", id="breakpoint"),
    pytest.param("input()", "'input' is not allowed", id="input"),
    pytest.param("f = open", "'open' is not allowed", id="alias-open"),
    pytest.param("().__class__", "attribute '__class__' is not allowed: use type(x) instead", id="dunder-class"),
    pytest.param("object.__subclasses__()", "attribute '__subclasses__'", id="subclasses"),
    pytest.param("type(1).__mro__", "attribute '__mro__'", id="mro"),
    pytest.param("f.__globals__", "attribute '__globals__'", id="func-globals"),
    pytest.param("x = __builtins__", "name '__builtins__' is not allowed", id="builtins-name"),
    pytest.param("__name__ = 'x'", "name '__name__' is not allowed", id="assign-dunder-name"),
    pytest.param("def g():\n    yield 1\ng().gi_frame", "attribute 'gi_frame'", id="gi-frame"),
    pytest.param("async def c():\n    pass\nc().cr_frame", "attribute 'cr_frame'", id="cr-frame"),
    pytest.param("x.ag_frame", "attribute 'ag_frame'", id="ag-frame"),
    pytest.param("e.tb_frame", "attribute 'tb_frame'", id="tb-frame"),
    pytest.param("frame.f_globals", "attribute 'f_globals'", id="f-globals"),
    pytest.param("frame.f_builtins", "attribute 'f_builtins'", id="f-builtins"),
    pytest.param("frame.f_back", "attribute 'f_back'", id="f-back"),
    pytest.param("f.co_code", "attribute 'co_code'", id="co-code"),
    pytest.param("task.get_stack()", "attribute 'get_stack'", id="task-stack"),
    pytest.param("getattr(x, name)", "computed attribute name", id="computed-getattr"),
    pytest.param("setattr(x, 'a' + 'b', 1)", "computed attribute name", id="computed-setattr"),
    pytest.param("hasattr(x, name)", "computed attribute name", id="computed-hasattr"),
    pytest.param("delattr(x, name)", "computed attribute name", id="computed-delattr"),
    pytest.param("getattr(x, '__class__')", "attribute '__class__'", id="getattr-dunder-literal"),
    pytest.param("'{0.__class__}'.format(1)", "format field '{0.__class__}'", id="format-literal"),
    pytest.param("'{x.__init__.__globals__}'.format_map({})", "attribute '__globals__'", id="format-map-literal"),
    pytest.param("class A:\n    __slots__ = ()", "name '__slots__'", id="class-dunder-assign"),
    pytest.param("class A:\n    def __getattribute__(self, n):\n        pass", "'__getattribute__'", id="getattribute"),
    pytest.param("def f(__x__):\n    pass", "name '__x__'", id="dunder-arg"),
    pytest.param("match p:\n    case int(__class__=c):\n        pass", "attribute '__class__'", id="match-class-attr"),
    pytest.param(fullwidth("eval") + "('1')", "'eval' is not allowed", id="fullwidth-eval"),
    pytest.param(math_bold("exec") + "('1')", "'exec' is not allowed", id="math-bold-exec"),
    pytest.param("__" + fullwidth("import") + "__('os')", "'__import__' is not allowed", id="fullwidth-dunder-import"),
    pytest.param("x.__" + fullwidth("class") + "__", "attribute '__class__'", id="fullwidth-attribute"),
    pytest.param(math_sans_bold("open") + "('x')", "'open' is not allowed", id="math-sans-open"),
]


@pytest.mark.parametrize(("code", "expected"), VIOLATIONS)
def test_forbidden_code_is_reported(code: str, expected: str) -> None:
    problems = policy.find_problems(ast.parse(code))
    assert any(expected in str(p) for p in problems), problems


ALLOWED = [
    pytest.param("import math\nmath.sqrt(2)", id="math"),
    pytest.param("import json, re, statistics, itertools, functools, decimal, fractions, string", id="modules"),
    pytest.param("from collections import Counter, defaultdict\nfrom collections.abc import Mapping", id="collections"),
    pytest.param("from typing import Any, Optional\nx: Optional[int] = None", id="typing"),
    pytest.param("from __future__ import annotations", id="future-annotations"),
    pytest.param("from math import *", id="star-import"),
    pytest.param("class A:\n    def __init__(self):\n        super().__init__()\n"
                 "    def __repr__(self):\n        return 'A'",
                 id="special-methods"),
    pytest.param("if __name__ == '__main__':\n    pass", id="dunder-name-read"),
    pytest.param("def f():\n    pass\nf.__name__", id="function-name"),
    pytest.param("getattr(x, 'real', 0)\nhasattr(x, 'imag')", id="literal-getattr"),
    pytest.param("'{0:>10} {name!r}'.format(1, name=2)", id="format-plain"),
    pytest.param("x = await get_weather('Oslo')", id="top-level-await"),
    pytest.param("import asyncio\nasync def main():\n    return 1\nasyncio.run(main())", id="asyncio-run"),
    pytest.param("try:\n    pass\nexcept* ValueError:\n    pass", id="except-star"),
    pytest.param("match x:\n    case {'a': 1, **rest}:\n        pass\n    case [1, *others]:\n        pass",
                 id="match"),
    pytest.param("self._cache = {}\nobj._private", id="single-underscore-attributes"),
    pytest.param("f'{x!r:>{width}}'", id="f-string"),
]


@pytest.mark.parametrize("code", ALLOWED)
def test_ordinary_code_passes(code: str) -> None:
    assert policy.find_problems(ast.parse(code)) == []


def test_check_code_reports_every_violation_at_once_for_the_llm() -> None:
    code = "import numpy\nx = open('f')\ny = ().__class__\n"
    with pytest.raises(SandboxViolation) as caught:
        policy.check_code(code, max_code_bytes=10_000)
    message = caught.value.message
    assert message.startswith("the code breaks the sandbox policy:")
    assert "line 1: import of module 'numpy' is not allowed; allowed modules: asyncio" in message
    assert "line 2: 'open' is not allowed: there is no file system" in message
    assert "line 3: attribute '__class__' is not allowed: use type(x) instead" in message
    assert caught.value.field == "code"


@pytest.mark.parametrize(
    ("code", "suggestion"),
    [
        pytest.param("import mathh", "did you mean 'math'?", id="module"),
        pytest.param("import jsonn", "did you mean 'json'?", id="module-json"),
        pytest.param("from itertool import chain", "did you mean 'itertools'?", id="from-module"),
    ],
)
def test_violation_names_the_closest_allowed_name(code: str, suggestion: str) -> None:
    with pytest.raises(SandboxViolation, match=suggestion):
        policy.check_code(code, max_code_bytes=10_000)


LONG = "a" * 50_000


@pytest.mark.parametrize(
    ("code", "says"),
    [
        pytest.param(f"import {LONG}", "import of module 'aaa", id="module"),
        pytest.param(f"from json import _{LONG}", "private name '_aaa", id="private-name"),
        pytest.param(f"from __future__ import {LONG}", "only 'annotations'", id="future"),
        pytest.param(f"x.__{LONG}__", "attribute '__aaa", id="dunder-attribute"),
        pytest.param(f"x.co_{LONG}", "attribute 'co_aaa", id="forbidden-prefix"),
        pytest.param(f"__{LONG}__ = 1", "name '__aaa", id="dunder-name"),
        pytest.param(f"'{{0.__{LONG}__}}'.format(1)", "format field '{0.__aaa", id="format-field"),
    ],
)
def test_violations_quote_a_bounded_part_of_long_names(code: str, says: str) -> None:
    """Every problem quotes at most QUOTED_CHARS of a name (20 problems of 50 kB names made a 1 MB message)."""
    with pytest.raises(SandboxViolation) as caught:
        policy.check_code(code, max_code_bytes=1_000_000)
    assert says in caught.value.message
    assert len(caught.value.message) < 1_000


def test_syntax_errors_are_not_violations() -> None:
    with pytest.raises(SyntaxError):
        policy.check_code("def f(:\n", max_code_bytes=10_000)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("x" * 20_001, id="too-big"),
        pytest.param("x = 1\x00", id="nul"),
        pytest.param("-" * 10_000 + "1", id="deep-unary"),
        pytest.param("a" + ".b" * 9_000, id="deep-attribute-chain"),
    ],
)
def test_hostile_code_shapes_are_refused_without_crashing_the_checker(code: str) -> None:
    with pytest.raises(SandboxViolation):
        policy.check_code(code, max_code_bytes=20_000)


def test_the_worker_policy_is_json_and_mirrors_the_named_data() -> None:
    data = json.loads(json.dumps(policy.worker_policy()))
    assert set(data["modules"]) == set(policy.ALLOWED_MODULES)
    assert set(data["builtins"]) == set(policy.ALLOWED_BUILTINS)
    assert not set(data["builtins"]) & set(policy.FORBIDDEN_NAMES)
    assert "__class__" not in data["allowed_dunder_attributes"]
    assert "__init__" in data["allowed_dunder_attributes"]


def test_every_allowed_node_type_is_an_ast_class() -> None:
    assert all(isinstance(t, type) and issubclass(t, ast.AST) for t in policy.ALLOWED_NODE_TYPES)
    assert ast.Module in policy.ALLOWED_NODE_TYPES


@pytest.mark.parametrize(
    "code",
    [
        "input = {'city': 'Oslo'}\ninput['city']",
        "open = [1]\nopen[0]",
        "def f(input):\n    return input\nf(1)",
        "for vars in range(3):\n    print(vars)",
        "import json as help\nhelp.dumps(1)",
        "tool(input='x', open=True)",
        "id, type, list, log = 1, 'a', [2], []",
    ],
)
def test_builtin_names_may_be_used_for_the_codes_own_values(code: str) -> None:
    policy.check_code(code, max_code_bytes=10_000)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("input()", "'input' is not allowed"),
        ("x = open('f')", "'open' is not allowed"),
        ("def f(x):\n    open = x\n    return open\neval('1')", "'eval' is not allowed"),
        ("type(1).mro()", "attribute 'mro' is not allowed: the class graph is not reachable"),
        ("getattr(int, 'mro')", "attribute 'mro' is not allowed"),
    ],
)
def test_reaching_the_real_builtin_or_the_class_graph_is_refused(code: str, expected: str) -> None:
    with pytest.raises(SandboxViolation, match=expected):
        policy.check_code(code, max_code_bytes=10_000)


def test_runtime_events_are_named_data_sent_to_the_worker() -> None:
    assert {"object.__getattr__", "exec"} <= set(policy.worker_policy()["runtime_events"])
    assert all(isinstance(reason, str) and reason for reason in policy.RUNTIME_EVENTS.values())

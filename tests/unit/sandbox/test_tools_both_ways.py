"""Issue 13's failing cases: tools called without ``await``, un-awaited coroutines, namespaces, builtin names."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidRequest
from shared.sandbox import ProcessSandbox

TOOLS: dict[str, Any] = {
    "calculate": lambda expression: {"result": sum(int(p) for p in expression.split("+"))},
    "get_weather": lambda city: {"city": city, "temp_c": 3},
    "my.add": lambda a, b: a + b,
}


@pytest.mark.parametrize(
    ("code", "expected", "calls"),
    [
        pytest.param("r = get_weather('Oslo')\nr['temp_c']", 3, 1, id="unawaited-subscript"),
        pytest.param("x = calculate('1+1')\nresult = x", {"result": 2}, 1, id="unawaited-result"),
        pytest.param("async def f():\n    return 1\nfor i in range(3):\n    f()\n'ok'", "ok", 0,
                     id="unawaited-coroutines-in-a-loop"),
        pytest.param("for c in 'ab':\n    get_weather(c)\n'done'", "done", 2, id="unawaited-tool-loop"),
        pytest.param("input = {'n': '2+3'}\nid = calculate(input['n'])\nid['result']", 5, 1, id="builtin-names"),
        pytest.param("my.add(1, 2) + my_add(3, 4)", 10, 2, id="namespace-and-flat-name"),
        pytest.param("import asyncio\nsum(await asyncio.gather(my.add(1, 1), my.add(2, 2)))", 6, 2,
                     id="namespace-gathered"),
    ],
)
def test_ordinary_code_just_works(sandbox: ProcessSandbox, code: str, expected: Any, calls: int) -> None:
    result = sandbox.run(code, TOOLS)
    assert result.error is None, result.error
    assert (result.result, len(result.tool_calls)) == (expected, calls)


@pytest.mark.parametrize(
    ("code", "says"),
    [
        pytest.param("async def main():\n    return 1\nmain()", "write 'await main(...)'", id="result-is-coroutine"),
        pytest.param("import asyncio\nasyncio.gather(calculate('1'))", "write 'await asyncio.gather(...)'",
                     id="result-is-unawaited-gather"),
        pytest.param("g = get_weather\nx = g('Oslo')\nx['temp_c']", "write 'x = get_weather(...)'",
                     id="aliased-tool-unawaited"),
        pytest.param("def h():\n    return calculate('1')\nawait h()", "drop the 'await'", id="await-on-a-result"),
        pytest.param("my.ad(1, 2)", "did you mean my.add?", id="unknown-tool-in-namespace"),
    ],
)
def test_misuse_says_what_to_write_instead(sandbox: ProcessSandbox, code: str, says: str) -> None:
    error = sandbox.run(code, TOOLS).error
    assert error is not None
    assert says in error.traceback


def test_tools_whose_flat_names_clash_are_refused(sandbox: ProcessSandbox) -> None:
    with pytest.raises(InvalidRequest, match="would both be 'my_add'"):
        sandbox.run("1", {"my.add": int, "my_add": int})

"""The benign suite: ordinary code (what an LLM writes) runs in the process sandbox and gives the right answer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from shared.sandbox import CodeResult, Limits, ProcessSandbox, run_code

WEATHER = {"Oslo": 3, "Paris": 11, "Rome": 17, "Cairo": 29}


async def get_weather(city: str, unit: str = "C") -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"city": city, "temp": WEATHER[city], "unit": unit}


def convert(value: float, to: str = "F") -> float:
    return value * 9 / 5 + 32 if to == "F" else value


def fail(reason: str) -> None:
    raise RuntimeError(f"upstream says {reason}")


TOOLS = {"get_weather": get_weather, "convert": convert, "fail": fail}

BENIGN = [
    pytest.param("1 + 1", 2, id="expression"),
    pytest.param("result = sum(x * x for x in range(10))", 285, id="result-variable"),
    pytest.param("x = 5\nx * 2\nprint('done')\nresult = 'fallback'", "fallback", id="final-print-falls-back"),
    pytest.param("import math\nround(math.sqrt(2) * math.pi, 6)", 4.442883, id="math"),
    pytest.param("import json\njson.loads(json.dumps({'a': [1, 2, {'b': None}]}))", {"a": [1, 2, {"b": None}]},
                 id="json"),
    pytest.param("[i * i for i in range(5) if i % 2 == 0]", [0, 4, 16], id="list-comprehension"),
    pytest.param("{k: v for k, v in zip('abc', range(3))}", {"a": 0, "b": 1, "c": 2}, id="dict-comprehension"),
    pytest.param("sorted({c.upper() for c in 'banana'})", ["A", "B", "N"], id="set-comprehension"),
    pytest.param(
        "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n"
        "    def __add__(self, other):\n        return Point(self.x + other.x, self.y + other.y)\n"
        "    def __repr__(self):\n        return f'Point({self.x}, {self.y})'\n"
        "repr(Point(1, 2) + Point(3, 4))",
        "Point(4, 6)", id="class-with-special-methods",
    ),
    pytest.param(
        "class AppError(Exception):\n    def __init__(self, code):\n        super().__init__(f'code {code}')\n"
        "        self.code = code\ntry:\n    raise AppError(7)\nexcept AppError as e:\n    result = (str(e), e.code)",
        ["code 7", 7], id="custom-exception-caught",
    ),
    pytest.param("name, n = 'Oslo', 3.14159\nf'{name!r:>8}|{n:.2f}|{n:{7}.1f}'", "  'Oslo'|3.14|    3.1",
                 id="f-strings"),
    pytest.param("'{} has {n:,} people'.format('Oslo', n=709037)", "Oslo has 709,037 people", id="str-format"),
    pytest.param("'{city[name]}'.format_map({'city': {'name': 'Rome'}})", "Rome", id="format-map-index"),
    pytest.param("import statistics\n[statistics.mean([1, 2, 3, 4]), statistics.median([3, 1, 2])]", [2.5, 2],
                 id="statistics"),
    pytest.param("from decimal import Decimal\nDecimal('0.1') + Decimal('0.2')", "0.3", id="decimal"),
    pytest.param("from fractions import Fraction\nFraction(1, 3) + Fraction(1, 6)", "1/2", id="fractions"),
    pytest.param("import re\nre.findall(r'\\d+', 'a1b22c333')", ["1", "22", "333"], id="regex"),
    pytest.param("import itertools\nlist(itertools.islice(itertools.cycle('ab'), 5))", ["a", "b", "a", "b", "a"],
                 id="itertools"),
    pytest.param(
        "import functools\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n"
        "    return n if n < 2 else fib(n-1) + fib(n-2)\nfib(80)",
        23416728348467685, id="functools-lru-cache",
    ),
    pytest.param(
        "import functools\ndef deco(f):\n    @functools.wraps(f)\n    def inner(*a):\n        return f(*a) * 2\n"
        "    return inner\n@deco\ndef three():\n    return 3\n[three(), three.__name__]",
        [6, "three"], id="functools-wraps",
    ),
    pytest.param(
        "from collections import Counter, defaultdict, deque, namedtuple\nP = namedtuple('P', 'x y')\n"
        "d = defaultdict(list)\nd['a'].append(1)\n"
        "[Counter('abca').most_common(1), dict(d), list(deque([1, 2], maxlen=1)), P(1, 2)._asdict()]",
        [[["a", 2]], {"a": [1]}, [2], {"x": 1, "y": 2}], id="collections",
    ),
    pytest.param("import string\nstring.Template('$who likes $what').substitute(who='Ada', what='math')",
                 "Ada likes math", id="string-template"),
    pytest.param("import string\nstring.Formatter().format('{0}-{x}', 1, x=2)", "1-2", id="string-formatter"),
    pytest.param(
        "from __future__ import annotations\nfrom typing import Optional\n"
        "def f(x: Optional[int] = None) -> list[int]:\n    return [x or 0]\nf()",
        [0], id="typing-annotations",
    ),
    pytest.param(
        "def classify(v):\n    match v:\n        case {'kind': 'point', 'x': x}:\n            return f'point {x}'\n"
        "        case [first, *rest]:\n            return f'list of {1 + len(rest)}'\n        case _:\n"
        "            return 'other'\n[classify({'kind': 'point', 'x': 1}), classify([1, 2, 3]), classify(5)]",
        ["point 1", "list of 3", "other"], id="match",
    ),
    pytest.param("def gen(n):\n    for i in range(n):\n        yield i * 2\nlist(gen(4))", [0, 2, 4, 6],
                 id="generator"),
    pytest.param("try:\n    {}['missing']\nexcept KeyError as e:\n    result = f'missing {e}'", "missing 'missing'",
                 id="exception-caught"),
    pytest.param("try:\n    1 / 0\nexcept ZeroDivisionError:\n    result = 'inf'\nfinally:\n    print('cleanup')",
                 "inf", id="try-finally"),
    pytest.param("(1, 'a', None, 2.5, True)", [1, "a", None, 2.5, True], id="tuple-becomes-list"),
    pytest.param("object()", "<object object", id="unserialisable-result-is-repr"),
    pytest.param("hasattr('x', 'upper') and getattr(3, 'real') == 3", True, id="literal-getattr"),
    pytest.param("if __name__ == '__main__':\n    result = 'main'", "main", id="dunder-main"),
    pytest.param("import datetime\nstr(datetime.date(2024, 2, 29) + datetime.timedelta(days=1))", "2024-03-01",
                 id="datetime-arithmetic"),
    pytest.param("x = [1, 2, 3]\nx.reverse()\nx", [3, 2, 1], id="methods-on-builtins"),
]


@pytest.mark.parametrize(("code", "expected"), BENIGN)
def test_benign_code_gives_the_right_answer(sandbox: ProcessSandbox, code: str, expected: Any) -> None:
    result = sandbox.run(code, TOOLS)
    assert result.error is None, result.error
    if isinstance(expected, str) and expected.startswith("<"):
        assert str(result.result).startswith(expected)
    else:
        assert result.result == expected


TOOL_PROGRAMS = [
    pytest.param(
        "import asyncio\nasync def main():\n"
        "    rows = await asyncio.gather(*[get_weather(c) for c in ['Oslo', 'Paris', 'Rome']])\n"
        "    return {r['city']: r['temp'] for r in rows}\nasyncio.run(main())",
        {"Oslo": 3, "Paris": 11, "Rome": 17}, 3, id="gather-in-asyncio-run",
    ),
    pytest.param(
        "oslo = await get_weather('Oslo')\nawait convert(oslo['temp'], to='F')", 37.4, 2, id="top-level-await",
    ),
    pytest.param(
        "import asyncio\nasync def hottest(cities):\n    temps = {}\n    async with asyncio.TaskGroup() as tg:\n"
        "        tasks = {c: tg.create_task(get_weather(c)) for c in cities}\n"
        "    return max(tasks, key=lambda c: tasks[c].result()['temp'])\nawait hottest(['Oslo', 'Cairo', 'Rome'])",
        "Cairo", 3, id="task-group",
    ),
    pytest.param(
        "import asyncio\nasync def one(c):\n    w = await get_weather(c)\n    return await convert(w['temp'])\n"
        "async def main():\n    return sorted(await asyncio.gather(one('Oslo'), one('Paris')))\nasyncio.run(main())",
        [37.4, 51.8], 4, id="nested-gather",
    ),
    pytest.param(
        "try:\n    await fail('busy')\nexcept ToolError as e:\n    result = str(e)",
        "fail failed: RuntimeError: upstream says busy", 1, id="tool-error-caught",
    ),
    pytest.param(
        "import asyncio\nasync def main():\n    out = []\n"
        "    for coro in asyncio.as_completed([get_weather('Rome'), get_weather('Oslo')]):\n"
        "        out.append((await coro)['city'])\n    return sorted(out)\nasyncio.run(main())",
        ["Oslo", "Rome"], 2, id="as-completed",
    ),
    pytest.param(
        "import asyncio\nsem = asyncio.Semaphore(2)\nasync def limited(c):\n    async with sem:\n"
        "        return (await get_weather(c))['temp']\n"
        "sum(await asyncio.gather(*[limited(c) for c in ['Oslo', 'Paris', 'Rome', 'Cairo']]))",
        60, 4, id="semaphore",
    ),
    pytest.param(
        "try:\n    await get_weather(object())\nexcept TypeError as e:\n    print(e)\nawait get_weather('Rome')",
        {"city": "Rome", "temp": 17, "unit": "C"}, 1, id="unserialisable-argument-is-a-type-error",
    ),
    pytest.param("await get_weather(city='Paris', unit='K')", {"city": "Paris", "temp": 11, "unit": "K"}, 1,
                 id="keyword-arguments"),
]


@pytest.mark.parametrize(("code", "expected", "calls"), TOOL_PROGRAMS)
def test_code_calls_tools(sandbox: ProcessSandbox, code: str, expected: Any, calls: int) -> None:
    result = sandbox.run(code, TOOLS)
    assert result.error is None, result.error
    assert result.result == expected
    assert len(result.tool_calls) == calls
    assert [c.call_id for c in result.tool_calls] == [f"c{i}" for i in range(1, calls + 1)]


def test_gathered_tool_calls_really_run_in_parallel(sandbox: ProcessSandbox) -> None:
    inside, peak, release = [0], [0], threading.Event()
    lock = threading.Lock()

    def slow(i: int) -> int:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            if inside[0] == 4:
                release.set()
        release.wait(timeout=5)
        with lock:
            inside[0] -= 1
        return i

    result = sandbox.run("import asyncio\nsum(await asyncio.gather(*[slow(i) for i in range(4)]))", {"slow": slow})
    assert result.result == 6
    assert peak[0] == 4


def test_tool_calls_are_recorded_with_arguments_and_outcomes(sandbox: ProcessSandbox) -> None:
    code = "await get_weather('Oslo')\ntry:\n    await fail('x')\nexcept ToolError:\n    pass\nresult = 1"
    calls = sandbox.run(code, TOOLS).tool_calls
    assert [(c.tool, c.args, c.kwargs, c.ok) for c in calls] == [
        ("get_weather", ["Oslo"], {}, True), ("fail", ["x"], {}, False)
    ]
    assert calls[0].result == {"city": "Oslo", "temp": 3, "unit": "C"}
    assert calls[1].error == "RuntimeError: upstream says x"


def test_stdout_is_captured(sandbox: ProcessSandbox) -> None:
    result = sandbox.run("for i in range(3):\n    print('line', i, sep='-')\nprint('a', 'b', end='!')", {})
    assert result.stdout == "line-0\nline-1\nline-2\na b!"


def test_fixed_clock_and_seeded_random(sandbox: ProcessSandbox) -> None:
    code = "import datetime, random, time\n[datetime.datetime.now().isoformat(), time.time(), random.randint(1, 10**9)]"
    first = sandbox.run(code, {}, clock_iso="2025-06-01T12:00:00+00:00", seed=42)
    second = sandbox.run(code, {}, clock_iso="2025-06-01T12:00:00+00:00", seed=42)
    assert first.result == second.result
    assert first.result[:2] == ["2025-06-01T12:00:00", 1748779200.0]


def test_uncaught_errors_come_back_as_code_error_not_exceptions(sandbox: ProcessSandbox) -> None:
    result = sandbox.run("print('before')\nvalues = [1, 2]\nvalues[5]", {})
    assert not result.ok and result.result is None
    assert result.stdout == "before\n"
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("IndexError", "list index out of range")
    assert "line 3, in <module>" in result.error.traceback
    assert "_runtime" not in result.error.traceback and "weft_sandbox" not in result.error.traceback


def test_syntax_errors_come_back_as_code_error(sandbox: ProcessSandbox) -> None:
    result = sandbox.run("def broken(:\n    pass", {})
    assert result.error is not None and result.error.type == "SyntaxError"
    assert "line 1" in result.error.traceback


def test_run_code_uses_the_default_sandbox() -> None:
    result = run_code("await double(21)", {"double": lambda x: x * 2}, Limits(wall_seconds=10))
    assert isinstance(result, CodeResult)
    assert result.result == 42


def test_run_code_works_from_inside_a_running_event_loop() -> None:
    async def caller() -> Any:
        return run_code("await add(1, 2)", {"add": lambda a, b: a + b}).result

    assert asyncio.run(caller()) == 3


def test_run_async_serves_async_tools_on_the_callers_loop(sandbox: ProcessSandbox) -> None:
    loop_of_tool: list[asyncio.AbstractEventLoop] = []

    async def where() -> str:
        loop_of_tool.append(asyncio.get_running_loop())
        return "here"

    async def caller() -> tuple[Any, asyncio.AbstractEventLoop]:
        result = await sandbox.run_async("await where()", {"where": where})
        return result.result, asyncio.get_running_loop()

    value, loop = asyncio.run(caller())
    assert value == "here" and loop_of_tool == [loop]


def test_concurrent_runs_from_threads_stay_separate(sandbox: ProcessSandbox) -> None:
    results: dict[int, Any] = {}

    def worker(i: int) -> None:
        results[i] = sandbox.run(f"x = {i}\nawait echo(x * 10)", {"echo": lambda v: v}).result

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i * 10 for i in range(6)}

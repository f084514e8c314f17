"""The worker runtime driven in-process (embedded mode, as the remote backend runs it): replay semantics.

No worker process here: these tests pin down what the code sees (stubs, clock, seeded random, ToolError) and which
calls a replay step reports, independently of the process layer.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.sandbox import Limits, ProcessSandbox, _runtime, _tools, policy

CLOCK = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def job(code: str, recorded: list[dict[str, Any]] | None = None, *, tools: tuple[str, ...] = ("get", "put"),
        seed: int = 7, limits: Limits | None = None) -> dict[str, Any]:
    return {
        "t": "job", "mode": "replay", "code": code, "tools": list(tools), "recorded": recorded or [],
        "limits": (limits or Limits()).worker_view(), "clock": CLOCK, "seed": seed,
    }


def run(code: str, recorded: list[dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, Any]:
    return _runtime.run_embedded(job(code, recorded, **kwargs), policy.worker_policy())


def answer(outcome: dict[str, Any], result: Any = None, error: str | None = None) -> list[dict[str, Any]]:
    """Records for every pending call of ``outcome`` (result computed by ``result(call)`` when callable)."""
    records = []
    for call in outcome["calls"]:
        value = result(call) if callable(result) else result
        records.append({"call_id": call["id"], "tool": call["tool"], "args": call["args"], "kwargs": call["kwargs"],
                        "result": None if error else value, "error": error})
    return records


GATHER_TEN = """
import asyncio
async def main():
    values = await asyncio.gather(*[get(i) for i in range(10)])
    return sum(values)
asyncio.run(main())
"""


def test_gather_of_ten_yields_ten_pending_calls_in_one_step() -> None:
    outcome = run(GATHER_TEN)
    assert outcome["t"] == "pending"
    assert [c["id"] for c in outcome["calls"]] == [f"c{i}" for i in range(1, 11)]
    assert [c["args"] for c in outcome["calls"]] == [[i] for i in range(10)]
    finished = run(GATHER_TEN, answer(outcome, lambda call: call["args"][0] * 10))
    assert (finished["t"], finished["result"], finished["error"]) == ("done", 450, None)


SEQUENTIAL = """
a = await get("a")
print("got", a)
b = await put(a, mode="x")
[a, b]
"""


def test_sequential_calls_pause_one_at_a_time_and_stdout_comes_only_at_the_end() -> None:
    first = run(SEQUENTIAL)
    assert [(c["tool"], c["args"], c["kwargs"]) for c in first["calls"]] == [("get", ["a"], {})]
    second = run(SEQUENTIAL, answer(first, "A"))
    assert [(c["id"], c["tool"], c["args"], c["kwargs"]) for c in second["calls"]] == [
        ("c2", "put", ["A"], {"mode": "x"})
    ]
    records = answer(first, "A") + answer(second, "B")
    done = run(SEQUENTIAL, records)
    assert (done["result"], done["stdout"]) == (["A", "B"], "got A\n")


def test_replay_is_deterministic_for_the_same_inputs() -> None:
    code = """
import random, time, datetime
picks = random.sample(range(100), 3)
stamp = time.time()
today = datetime.datetime.now().isoformat()
await get(picks, stamp, today, sorted({"b", "a", "c"}))
"""
    first, second = run(code), run(code)
    assert first == second
    args = first["calls"][0]["args"]
    assert args[1] == CLOCK
    assert args[2] == "2023-11-14T22:13:20"
    assert run(code, seed=8)["calls"][0]["args"][0] != args[0]


def test_reseeding_without_an_argument_stays_deterministic() -> None:
    code = (
        "import random\nrandom.seed()\na = random.random()\nrandom.seed()\n"
        "[a, random.random(), random.Random().random()]"
    )
    first = run(code)["result"]
    assert first == run(code)["result"]
    assert first[0] == first[1]


def test_top_level_await_and_asyncio_run_together_get_a_clear_error() -> None:
    code = "import asyncio\nasync def main():\n    return 1\nawait asyncio.sleep(0)\nasyncio.run(main())"
    error = run(code)["error"]
    assert "write 'await main()'" in error["message"]


def test_virtual_sleep_moves_the_fixed_clock_forward() -> None:
    code = "import asyncio, time\nstart = time.time()\nawait asyncio.sleep(20)\ntime.time() - start"
    assert run(code)["result"] == 20


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import time\ntime.sleep(31)", id="blocking-sleep"),
        pytest.param("import asyncio\nwhile True:\n    await asyncio.sleep(1)", id="sleep-loop"),
    ],
)
def test_sleeping_past_the_wall_clock_limit_is_a_limit(code: str) -> None:
    outcome = run(code, limits=Limits(wall_seconds=30))
    assert (outcome["t"], outcome["kind"]) == ("limit", "wall")


def test_a_diverging_replay_is_reported() -> None:
    first = run(SEQUENTIAL)
    forged = [{**answer(first, "A")[0], "args": ["something else"]}]
    outcome = run(SEQUENTIAL, forged)
    assert outcome["t"] == "diverged"
    assert "replay diverged at tool call c1" in outcome["message"]
    assert "get(*['something else']" in outcome["message"]


def test_records_the_code_never_reaches_are_a_divergence() -> None:
    records = [{"call_id": "c1", "tool": "get", "args": [1], "kwargs": {}, "result": 1, "error": None}]
    outcome = run("1 + 1", records)
    assert outcome["t"] == "diverged"
    assert "without making the recorded tool calls c1" in outcome["message"]


def test_a_recorded_failure_reaches_the_code_as_tool_error() -> None:
    code = """
try:
    await get("x")
except ToolError as exc:
    result = f"{exc.tool}: {exc}"
"""
    outcome = run(code, answer(run(code), error="ToolFailed: upstream 503"))
    assert outcome["result"] == "get: get failed: ToolFailed: upstream 503"


def test_partially_recorded_batches_report_only_the_missing_calls() -> None:
    first = run(GATHER_TEN)
    records = answer(first, 1)[:4]
    outcome = run(GATHER_TEN, records)
    assert [c["id"] for c in outcome["calls"]] == [f"c{i}" for i in range(5, 11)]


def test_the_tool_call_limit_counts_recorded_calls_too() -> None:
    limits = Limits(max_tool_calls=5)
    outcome = run(GATHER_TEN, limits=limits)
    assert (outcome["t"], outcome["kind"]) == ("limit", "tool_calls")


def test_a_timeout_around_a_tool_call_is_deterministic() -> None:
    code = """
import asyncio
try:
    value = await asyncio.wait_for(get(1), timeout=5)
except TimeoutError:
    value = "timeout"
value
"""
    first = run(code)
    assert first["t"] == "pending"
    assert run(code, answer(first, "fast"))["result"] == "fast"


def test_uncaught_errors_are_reported_with_only_the_codes_frames() -> None:
    outcome = run("def f(x):\n    return 1 / x\n\nf(0)\n")
    error = outcome["error"]
    assert error["type"] == "ZeroDivisionError"
    assert error["traceback"].splitlines() == [
        "Traceback (most recent call last):",
        "  line 4, in <module>",
        "    f(0)",
        "  line 2, in f",
        "    return 1 / x",
        "ZeroDivisionError: division by zero",
    ]


def test_a_misspelt_tool_gets_a_suggestion() -> None:
    error = run("await gett(1)")["error"]
    assert error["type"] == "NameError"
    assert error["traceback"].endswith("NameError: name 'gett' is not defined. Did you mean: 'get'?")


def test_a_misspelt_attribute_gets_a_suggestion() -> None:
    error = run("import math\nmath.sqrtt(2)")["error"]
    assert error["traceback"].endswith("Did you mean: 'sqrt'?")


MANY_TOOLS = tuple(f"my.tool_{i:05d}" for i in range(3_000))


def test_a_misspelt_tool_among_many_in_a_namespace_lists_a_few_and_compares_a_bounded_number(
        compared_names: list[int]) -> None:
    """100,000 tools under one prefix: the error was 2 MB long and its did-you-mean took seconds."""
    error = run("my.tool_01234x(1)", tools=MANY_TOOLS)["error"]
    assert error["type"] == "AttributeError"
    assert error["message"].startswith(
        "there is no tool my.tool_01234x; did you mean my.tool_01234? (tools here: my.tool_00000, my.tool_00001, ")
    assert error["message"].endswith("my.tool_00009, and 2990 more: dir(my) lists them)")
    assert len(error["traceback"]) < 1_000
    assert compared_names and max(compared_names) <= _tools.MAX_CANDIDATES


def test_a_misspelt_name_among_many_tools_compares_a_bounded_number(compared_names: list[int]) -> None:
    error = run("my_tool_01234x(1)", tools=MANY_TOOLS)["error"]
    assert error["traceback"].endswith(
        "NameError: name 'my_tool_01234x' is not defined. Did you mean: 'my_tool_01234'?")
    assert compared_names and max(compared_names) <= _tools.MAX_CANDIDATES


def test_a_namespace_repr_lists_a_few_tools() -> None:
    outcome = run("repr(my)", tools=MANY_TOOLS)
    assert outcome["result"] == "<tools my: my.tool_00000, " + ", ".join(
        f"my.tool_{i:05d}" for i in range(1, 10)) + ", and 2990 more: dir(my) lists them>"
    assert run("len(dir(my))", tools=MANY_TOOLS)["result"] == 3_000


def test_long_names_get_no_did_you_mean(compared_names: list[int]) -> None:
    """A comparison costs up to the product of the lengths: no word or name over 64 characters is compared."""
    long_name = "v" * 10_000
    error = run(f"{long_name} = 1\n{long_name}x")["error"]
    assert error["type"] == "NameError" and "Did you mean" not in error["traceback"]
    assert compared_names == []


def test_a_tool_called_without_await_returns_its_result() -> None:
    outcome = run("x = get(1)\nx['a']")
    assert outcome["t"] == "pending" and [c["id"] for c in outcome["calls"]] == ["c1"]
    assert run("x = get(1)\nx['a']", answer(outcome, {"a": 5}))["result"] == 5


def test_an_aliased_tool_left_unawaited_says_what_to_write() -> None:
    error = run("g = get\nx = g(1)\nx['a']")["error"]
    assert error["type"] == "TypeError"
    assert "was called as a coroutine and never awaited" in error["message"]
    assert "'x = get(...)'" in error["message"]


def test_a_result_that_is_an_unawaited_coroutine_is_explained() -> None:
    error = run("async def main():\n    return 1\nmain()")["error"]
    assert error["type"] == "TypeError" and "never awaited" in error["message"] and "await main" in error["message"]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("class O:\n    def __repr__(self):\n        raise ValueError('no repr')\nO()", id="repr"),
        pytest.param("class Boom(BaseException):\n    pass\nclass D(dict):\n    def items(self):\n"
                     "        raise Boom('no repr')\nD(a=1)", id="mapping-items-base-exception"),
    ],
)
def test_a_result_whose_own_methods_raise_is_the_codes_error(code: str) -> None:
    """Converting the result runs its methods; what they raised escaped the runtime (a worker exited with code 72)."""
    error = run(code)["error"]
    assert error is not None and error["message"] == "no repr"


def test_a_waiting_forever_program_reports_a_deadlock() -> None:
    error = run("import asyncio\nawait asyncio.Event().wait()")["error"]
    assert error["type"] == "Deadlock"
    assert error["traceback"].endswith("Deadlock: " + error["message"])


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        pytest.param("g = getattr\ng(1, '__cla' + 'ss__')", "violation", id="aliased-getattr"),
        pytest.param("f = '{0.__cl' + 'ass__}'\nf.format(1)", "violation", id="computed-format"),
        pytest.param("str.format('{0.__class__}', 1)", "violation", id="unbound-format"),
        pytest.param("class S(str):\n    def f(self):\n        return super().format(0)\nS('{0.__class__}').f()",
                     "violation", id="format-through-super"),
        pytest.param("class S(str):\n    pass\nS.format(S('{0.__class__}'), 0)", "violation",
                     id="subclass-unbound-format"),
        pytest.param("import string\nstring.Formatter().format('{0.__class__}', 1)", "violation", id="formatter"),
        pytest.param("import functools, json\nfunctools.update_wrapper(len, json.dumps, assigned=('__globals__',))",
                     "violation", id="update-wrapper"),
        pytest.param("class S(str):\n    def startswith(self, *args):\n        return False\ng = getattr\n"
                     "g(1, S('__cla' + 'ss__'))", "violation", id="str-subclass-name"),
        pytest.param("class S(str):\n    def startswith(self, *args):\n        return False\ng = setattr\n"
                     "class C:\n    pass\ng(C, S('__cla' + 'ss__'), int)", "violation", id="str-subclass-setattr"),
        pytest.param("print('x' * 100_000)", "limit", id="stdout"),
        pytest.param("def f():\n    return f()\nf()", "limit", id="recursion"),
    ],
)
def test_run_time_guards_end_the_run(code: str, kind: str) -> None:
    assert run(code)["t"] == kind


def evaluating_a_string(returned: str) -> str:
    """A method body that runs code in a string (an annotation evaluated by singledispatch): the AST check cannot
    see it, the audit hook stops it."""
    return ("        @functools.singledispatch\n        def f(x):\n            return 'base'\n"
            "        def g(x: 'int'):\n            return 'evaluated'\n        f.register(g)\n"
            f"        return {returned}\n")


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("class E(Exception):\n    def __str__(self):\n" + evaluating_a_string("f(1)") + "raise E()",
                     id="exception-str"),
        pytest.param("class O:\n    def __dir__(self):\n" + evaluating_a_string("[f(1)]") + "O().missing",
                     id="did-you-mean-dir"),
        pytest.param("class E(NameError):\n    @property\n    def name(self):\n" + evaluating_a_string("f(1)")
                     + "raise E()", id="error-name-property"),
    ],
)
def test_the_codes_own_methods_run_under_the_guards_while_its_error_is_reported(code: str) -> None:
    """Reporting an uncaught error calls the code's ``__str__``, ``__dir__`` or properties: they stay policed (only
    the runtime's own walk over the traceback's frames runs unaudited). Before, they ran with the audit hook off."""
    outcome = run("import functools\n" + code)
    assert outcome["t"] == "violation", outcome
    assert "code built from strings" in outcome["message"]


def test_getattr_looks_up_the_name_it_checked() -> None:
    """A str subclass's ``__hash__`` and ``__eq__`` made getattr find ``__class__`` under a harmless name."""
    code = ("class S(str):\n    def __hash__(self):\n        return hash('__class__')\n"
            "    def __eq__(self, other):\n        return True\ng = getattr\ng(1, S('harmless'))")
    error = run(code)["error"]
    assert (error["type"], error["message"]) == ("AttributeError", "'int' object has no attribute 'harmless'")


def test_run_time_guards_cannot_be_caught_by_the_code() -> None:
    code = "try:\n    getattr(1, '__cl' + 'ass__')\nexcept BaseException:\n    pass\nresult = 'escaped'"
    outcome = run(code)
    assert outcome["t"] == "violation"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("import random\nrandom._os", "AttributeError", id="random-os"),
        pytest.param("import json\njson.decoder", "AttributeError", id="json-submodule"),
        pytest.param("import typing\ntyping.get_type_hints", "AttributeError", id="type-hints-eval"),
        pytest.param("import asyncio\nasyncio.create_subprocess_shell", "AttributeError", id="asyncio-subprocess"),
        pytest.param("import asyncio\nasyncio.get_event_loop().run_in_executor(None, print)", "NotImplementedError",
                     id="executor"),
        pytest.param("memoryview(b'x')", "NameError", id="no-memoryview"),
    ],
)
def test_modules_and_builtins_expose_only_the_policy(code: str, expected: str) -> None:
    assert run(code)["error"]["type"] == expected


LONG = "x" * 100_000


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(f"getattr(1, '__{LONG}__')", id="dunder-attribute"),
        pytest.param(f"getattr(1, 'co_{LONG}')", id="internal-attribute"),
        pytest.param(f"'{{0.__{LONG}__}}'.format(1)", id="format-field"),
        pytest.param(f"import {LONG}", id="import"),
        pytest.param(f"class C:\n    __match_args__ = ('__{LONG}__',)\nmatch 1:\n    case C(x):\n        pass",
                     id="match-args"),
        pytest.param(f"class M(type):\n    pass\nclass {LONG}(metaclass=M):\n    pass\nmatch 1:\n    case {LONG}():\n"
                     "        pass", id="match-metaclass"),
    ],
)
def test_violations_quote_the_codes_names_cut(code: str) -> None:
    """A name the code builds may be megabytes long: the worker's messages quote its first 60 characters."""
    outcome = run(code)
    assert outcome["t"] == "violation", outcome
    assert len(outcome["message"]) < 600 and "xxx'…" in outcome["message"]


class_raising_from = ("class Boom(BaseException):\n    pass\n"
                      "class Loud(Exception):\n    def __str__(self):\n        raise Boom()\n")


@pytest.mark.parametrize(
    ("code", "last_line"),
    [
        pytest.param(class_raising_from + "raise Loud()", "Loud: <unprintable Loud>", id="str-raises-base-exception"),
        pytest.param("class E(NameError):\n    @property\n    def name(self):\n        raise ValueError('no')\n"
                     "raise E('bad name')", "E: bad name", id="name-property-raises"),
        pytest.param(class_raising_from + "class O:\n    def __dir__(self):\n        raise Boom()\nO().missing",
                     "AttributeError: 'O' object has no attribute 'missing'", id="dir-raises-base-exception"),
        pytest.param(class_raising_from + "class M(type):\n    @property\n    def __module__(cls):\n"
                     "        raise Boom()\n    @property\n    def __name__(cls):\n        raise Boom()\n"
                     "class E(Exception, metaclass=M):\n    pass\nraise E('x')", "E: x", id="metaclass-names-raise"),
    ],
)
def test_an_error_whose_own_methods_raise_is_still_reported(code: str, last_line: str) -> None:
    """Before, anything but an Exception from __str__, and anything at all from a name property, __dir__ or the
    class's names, escaped the report: embedded runs raised it, worker processes exited with code 72 (a crash)."""
    error = run(code)["error"]
    assert error["traceback"].splitlines()[-1] == last_line


def test_a_worker_process_reports_an_error_whose_str_raises(sandbox: ProcessSandbox) -> None:
    result = sandbox.run(class_raising_from + "raise Loud()", {})
    assert result.error is not None and result.error.message == "<unprintable Loud>"


def test_the_real_traceback_is_walked_not_a_property_of_the_codes_class() -> None:
    """The walk over the frames runs with the audit hook off: a ``__traceback__`` property (a class built with
    ``type()``) ran there, unaudited, and chose the frames shown."""
    code = ("import functools\nclass Frames:\n    def get(self):\n" + evaluating_a_string("print(f(1))")
            + "E = type('E', (Exception,), {'__traceback__': property(Frames.get)})\nraise E('x')")
    outcome = run(code)
    assert (outcome["t"], outcome["stdout"]) == ("done", "")
    assert outcome["error"]["traceback"].splitlines()[-3:] == ["  line 12, in <module>", "    raise E('x')", "E: x"]


def test_the_errors_notes_are_shown_each_cut() -> None:
    """The hand-built last line dropped the notes (Python's own formatting prints them)."""
    code = "e = ValueError('boom')\ne.add_note('while reading row 3')\ne.add_note('n' * 10_000)\nraise e"
    lines = run(code)["error"]["traceback"].splitlines()
    assert lines[-3:] == ["ValueError: boom", "while reading row 3", "n" * _runtime.MAX_NOTE_CHARS + "…"]
    many = "e = ValueError('boom')\nfor i in range(12):\n    e.add_note(f'note {i}')\nraise e"
    lines = run(many)["error"]["traceback"].splitlines()
    assert lines[-11:] == [f"note {i}" for i in range(10)] + ["(and 2 more notes)"]

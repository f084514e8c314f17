"""The ordinary-program corpus (issue 13): every program gives its expected result in inline and in replay mode.

Replay mode is driven here as the orchestrator drives it: run a step, execute the calls it reports (all of a round at
once), append their records, run again until the code finishes. The figure (programs passing / total, per mode) is
printed by the last test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.demo_tools.calc import calculate, summary_statistics
from shared.demo_tools.convert import convert_units, currency_convert
from shared.demo_tools.data import format_table, json_query, sort_list
from shared.demo_tools.dates import add_duration, convert_timezone, date_difference
from shared.demo_tools.faults import fail_always
from shared.demo_tools.text import decode_text, encode_text, hash_text, regex_extract, text_statistics, word_frequency
from shared.sandbox import Limits, ProcessSandbox, RecordedCall, _wire

from .corpus.programs import PROGRAMS

TOOLS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (
        calculate, summary_statistics, convert_units, currency_convert, add_duration, convert_timezone,
        date_difference, text_statistics, word_frequency, regex_extract, hash_text, encode_text, decode_text,
        json_query, sort_list, format_table, fail_always,
    )
}
TOOLS.update({"units.convert": convert_units, "money.convert": currency_convert})
LIMITS = Limits(wall_seconds=20, max_rounds=50)
CLOCK = "2025-06-01T12:00:00+00:00"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProcessSandbox]:
    executor = ProcessSandbox()
    yield executor
    executor.close()


def _run_tool(call: Any) -> RecordedCall:
    try:
        return RecordedCall.succeeded(call, _wire.to_json_safe(TOOLS[call.tool](*call.args, **call.kwargs),
                                                               strict=False))
    except Exception as exc:  # the tool's failure reaches the code as a ToolError
        return RecordedCall.failed(call, f"{type(exc).__name__}: {exc}")


def replay(sandbox: ProcessSandbox, code: str) -> tuple[Any, Any, int]:
    """Drive the replay steps to the end: (result, error, rounds)."""
    recorded: list[RecordedCall] = []
    for rounds in range(LIMITS.max_rounds):
        step = sandbox.step(code, sorted(TOOLS), recorded, LIMITS, clock_iso=CLOCK, seed=1)
        if step.done:
            return step.result, step.error, rounds
        recorded.extend(_run_tool(call) for call in step.calls)
    raise AssertionError("too many rounds")


_outcomes: dict[tuple[str, str], tuple[Any, Any]] = {}


def outcome(sandbox: ProcessSandbox, mode: str, index: int) -> tuple[Any, Any]:
    name, code, _ = PROGRAMS[index]
    key = (mode, name)
    if key not in _outcomes:
        if mode == "inline":
            run = sandbox.run(code, TOOLS, LIMITS, clock_iso=CLOCK, seed=1)
            _outcomes[key] = (run.result, run.error)
        else:
            result, error, _ = replay(sandbox, code)
            _outcomes[key] = (result, error)
    return _outcomes[key]


def _passes(sandbox: ProcessSandbox, mode: str, index: int) -> bool:
    result, error = outcome(sandbox, mode, index)
    return error is None and result == PROGRAMS[index][2]


IDS = [name for name, _, _ in PROGRAMS]


@pytest.mark.parametrize("mode", ["inline", "replay"])
@pytest.mark.parametrize("index", range(len(PROGRAMS)), ids=IDS)
def test_program_gives_its_expected_result(sandbox: ProcessSandbox, mode: str, index: int) -> None:
    result, error = outcome(sandbox, mode, index)
    assert error is None, error.traceback if error else None
    assert result == PROGRAMS[index][2]


def test_parallel_calls_are_one_replay_round(sandbox: ProcessSandbox) -> None:
    code = dict((n, c) for n, c, _ in PROGRAMS)["gather-parallel"]
    assert replay(sandbox, code)[2] == 1
    code = dict((n, c) for n, c, _ in PROGRAMS)["sync-loop"]
    assert replay(sandbox, code)[2] == 3  # calls not awaited run one after the other


def test_the_corpus_figure(sandbox: ProcessSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    total = len(PROGRAMS)
    passing = {mode: sum(_passes(sandbox, mode, i) for i in range(total)) for mode in ("inline", "replay")}
    with capsys.disabled():
        print(f"\nordinary-program corpus: inline {passing['inline']}/{total}, replay {passing['replay']}/{total}")
    assert total >= 50
    assert passing == {"inline": total, "replay": total}



"""A redelivered inline run (``run_inline`` again with the same run id and payload store, as Durable does after a
crash) replays its journal: completed calls are never executed again, a call that began and never completed is run
again only by an idempotent tool (flagged ``redelivered``), and code that now makes other calls stops clearly."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.errors import ExecutionUncertain, JournalMismatch
from shared.payloads import LocalPayloadStore
from shared.runs.call_journal import journal_for
from shared.runs.code_sandbox import run_inline
from shared.runs.contracts import CodeOutcome, CodeRunRequest
from shared.sandbox import Limits, ProcessSandbox

CODE = """
import asyncio
first = await post(to="a")
results = await asyncio.gather(post(to="b"), put(key="k"))
try:
    await fail(to="x")
except Exception as exc:
    failed = str(exc)
last = await post(to="c")
result = [first, *results, failed, last]
"""


@pytest.fixture
def sandbox() -> Iterator[ProcessSandbox]:
    executor = ProcessSandbox()
    yield executor
    executor.close()


class _World:
    """Tools that count their executions (a non-idempotent post, an idempotent put, a failing send)."""

    def __init__(self, tmp_path: Path, sandbox: ProcessSandbox) -> None:
        self.sandbox = sandbox
        self.store = LocalPayloadStore(tmp_path / "payloads")
        self.executions: Counter[str] = Counter()
        self.catalog = Catalog()

        def post(to: str) -> dict[str, Any]:
            """Post to someone (not idempotent)."""
            self.executions[f"post:{to}"] += 1
            return {"posted": to, "n": self.executions[f"post:{to}"]}

        def put(key: str) -> dict[str, Any]:
            """Put a key (idempotent)."""
            self.executions[f"put:{key}"] += 1
            return {"put": key}

        def fail(to: str) -> None:
            """Always fails (not idempotent)."""
            self.executions[f"fail:{to}"] += 1
            raise ValueError("no route to " + to)

        self.catalog.register(post, side_effects=True, idempotent=False)
        self.catalog.register(put, side_effects=True, idempotent=True)
        self.catalog.register(fail, side_effects=True, idempotent=False)
        self.executor = ToolExecutor(self.catalog)

    def run(self, code: str = CODE, run_id: str = "run-1") -> CodeOutcome:
        request = CodeRunRequest(run_id=run_id, code=code, tools={"post": "post", "put": "put", "fail": "fail"},
                                 limits=Limits().to_dict())
        return asyncio.run(run_inline(request, self.catalog, self.executor, self.sandbox, self.store))

    def journal_folder(self, run_id: str = "run-1") -> Path:
        return self.store.root / "journal" / run_id / "calls"


def _dumps(outcome: CodeOutcome) -> list[dict[str, Any]]:
    return [step.model_dump(mode="json") for step in outcome.steps]


def test_a_redelivered_inline_run_replays_its_completed_calls(tmp_path: Path, sandbox: ProcessSandbox) -> None:
    world = _World(tmp_path, sandbox)
    first = world.run()
    assert first.status == "finished", first
    expected = [{"posted": "a", "n": 1}, {"posted": "b", "n": 1}, {"put": "k"},
                "fail failed: RuntimeError: ValueError: no route to x", {"posted": "c", "n": 1}]
    assert first.result == expected
    once = Counter({"post:a": 1, "post:b": 1, "put:k": 1, "fail:x": 1, "post:c": 1})
    assert world.executions == once
    assert sorted(p.name for p in world.journal_folder().iterdir()) == [f"{i:08d}.json" for i in range(1, 6)]

    again = world.run()  # the activity delivered again after a crash: the same code, the same run
    assert again.status == "finished" and again.result == expected, again
    assert world.executions == once, "a completed call executed again"
    assert _dumps(again) == _dumps(first)
    assert not any(step.redelivered for step in again.steps)


def test_a_call_that_began_and_never_completed_runs_again_only_if_idempotent(tmp_path: Path,
                                                                             sandbox: ProcessSandbox) -> None:
    world = _World(tmp_path, sandbox)
    assert world.run().status == "finished"
    # the crash fell inside c3 (put k) and c5 (post c): begun (their markers exist), never journalled
    for seq in (3, 5):
        (world.journal_folder() / f"{seq:08d}.json").unlink()
    again = world.run()
    assert again.status == "finished", again
    assert again.code_error is not None and "may already have executed" in again.code_error.message
    steps = {step.step_id: step for step in again.steps}
    assert steps["c5"].status == "failed" and steps["c5"].redelivered
    assert steps["c5"].error is not None and steps["c5"].error.code == ExecutionUncertain.code
    assert steps["c3"].status == "succeeded" and steps["c3"].redelivered, "an idempotent tool runs again, flagged"
    assert world.executions == Counter({"post:a": 1, "post:b": 1, "put:k": 2, "fail:x": 1, "post:c": 1})
    assert [s.redelivered for s in again.steps] == [False, False, True, False, True]
    # a third delivery now finds every call journalled, the uncertain one included: nothing runs
    third = world.run()
    assert _dumps(third) == _dumps(again)
    assert world.executions["put:k"] == 2 and world.executions["post:c"] == 1


def test_a_call_that_never_began_runs_after_a_crash(tmp_path: Path, sandbox: ProcessSandbox) -> None:
    world = _World(tmp_path, sandbox)
    assert world.run().status == "finished"
    # the crash came before c5 began: neither journalled nor marked, so it runs on the next delivery
    (world.journal_folder() / f"{5:08d}.json").unlink()
    for marker in (world.store.root / "journal" / "run-1" / "begun").iterdir():
        marker.unlink()
    again = world.run()
    assert again.status == "finished"
    assert world.executions == Counter({"post:a": 1, "post:b": 1, "put:k": 1, "fail:x": 1, "post:c": 2})
    assert not any(step.redelivered for step in again.steps)


def test_code_that_makes_other_calls_after_a_restart_stops_and_runs_nothing(tmp_path: Path,
                                                                            sandbox: ProcessSandbox) -> None:
    world = _World(tmp_path, sandbox)
    assert world.run().status == "finished"
    changed = CODE.replace('post(to="b")', 'post(to="B")')
    again = world.run(changed)
    error = again.failure
    assert again.status == "error" and error is not None, again
    assert error.code == JournalMismatch.code and error.field == "code"
    assert "c2" in error.message and "not deterministic" in error.message
    assert "B" not in json.dumps(error.model_dump())  # argument values are never echoed
    assert world.executions["post:B"] == 0 and sum(world.executions.values()) == 5
    assert [step.step_id for step in again.steps] == ["c1"]


def test_runs_keep_separate_journals(tmp_path: Path, sandbox: ProcessSandbox) -> None:
    world = _World(tmp_path, sandbox)
    assert world.run(run_id="run-1").status == "finished"
    assert world.run(run_id="run-2").status == "finished"
    assert world.executions["post:a"] == 2


def test_a_canceled_inline_run_runs_no_side_effecting_call(tmp_path: Path, sandbox: ProcessSandbox) -> None:
    world = _World(tmp_path, sandbox)
    assert journal_for(world.store).cancel("run-1")  # a cancel reached the journal while the activity was running
    outcome = world.run()
    assert sum(world.executions.values()) == 0
    assert outcome.status == "error" and outcome.failure is not None and outcome.failure.code == "canceled"
    assert [step.error.code for step in outcome.steps if step.error] == ["canceled"]  # nothing was tried after it
    other = world.run(run_id="run-2")  # another run is not affected
    assert other.status == "finished" and world.executions["post:a"] == 1

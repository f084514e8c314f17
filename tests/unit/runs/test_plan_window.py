"""Long plans in windows: each generation carries the ready steps and what waits only on them, not the whole plan;
the plan and the run's progress wait in payload storage, and the final result lists every step as a whole-plan run
would. Driven here as the orchestrator drives it, generation by generation, against a real local payload store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from shared.models import ErrorInfo, Plan, RunOptions, RunResult, RunStatus, StepRecord, StepStatus
from shared.payloads import LocalPayloadStore
from shared.runs.contracts import (
    ArchivedStepRecords,
    FinishedRun,
    PlanAdvance,
    PlanFinish,
    PlanProgress,
    PlanProgressRefs,
)
from shared.runs.plan import check_plan
from shared.runs.plan_fold import fold
from shared.runs.plan_run import PlanRun
from shared.runs.plan_window import advance, finish, load_progress
from shared.runs.record_archive import load_records
from tests.unit.runs.test_plan_run import SPECS, T0, failed, ok, plan

LATE = T0 + dt.timedelta(seconds=90)
"""When a run whose deadline passed ends."""
DENIAL = ErrorInfo(code="approval_denied", message="this call of add was denied: no", field="approval")


def chain(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    """Each step adds 1 to its predecessor's sum, read by ``$ref``."""
    return [{"id": f"{prefix}0", "tool": "add", "args": {"a": 0, "b": 1}}] + [
        {"id": f"{prefix}{i}", "tool": "add", "args": {"a": {"$ref": f"{prefix}{i - 1}.sum"}, "b": 1}}
        for i in range(1, n)]


@dataclasses.dataclass
class Generations:
    """What the orchestrator does, generation by generation: run the carried steps (``calls`` per generation),
    then ``advance_plan``; at the end ``finish_plan``. JSON in between, as in Durable."""

    whole: Plan
    store: LocalPayloadStore
    window_steps: int
    calls: int = 3
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    fail: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    """Steps whose call is refused (failed as a denied approval is), which stops the run."""
    held: frozenset[str] = frozenset()
    """Steps whose call is prepared and never decided (awaiting approval when a denial stops the run)."""
    expire_after: int | None = None
    """The run's deadline passes once this many calls have been made: the steps not started are skipped."""
    old: bool = False
    """End as the runs prepared before ``finish_plan`` did: ``load_plan_progress`` and :func:`fold` (the
    orchestrator's part), then the archived records."""
    inputs: list[int] = dataclasses.field(default_factory=list)
    """Steps each generation carried."""
    totals: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """(done, total) each generation showed when it started."""

    def run(self) -> RunResult:
        steps: list[dict[str, Any]] = [s.model_dump(mode="json") for s in self.whole.steps]
        state: dict[str, Any] | None = None
        refs: tuple[str, str] | None = None
        stop: ErrorInfo | None = None
        expired = False
        made_in_all = 0
        for _ in range(200):
            part_plan = Plan.model_validate({"steps": steps})
            graph = check_plan(part_plan, SPECS, check_arguments=False)[1]
            assert graph is not None
            if state is not None and "index" in state:
                graph = dataclasses.replace(graph, index=state["index"])
            run = PlanRun("rw", part_plan, SPECS, self.options, T0, graph=graph, state=state)
            self.inputs.append(len(steps))
            shown = run.status_dump(T0)
            self.totals.append((shown["done"], shown["total"]))
            made = 0
            while run.has_ready and made < self.calls and stop is None and not expired:
                for call in run.take_ready(T0, self.calls - made):
                    made += 1
                    made_in_all += 1
                    step_id, args = call.call.step_id, call.call.args
                    if step_id in self.held:
                        continue
                    outcome = failed(step_id) if step_id in self.fail | self.deny else ok(
                        step_id, {"sum": args["a"] + args["b"]})
                    run.record([outcome], T0)
                    stop = stop or (DENIAL if step_id in self.deny else None)
                if self.expire_after is not None and made_in_all >= self.expire_after:
                    run.expire(LATE)
                    expired = True
            if stop is not None or expired or not (run.has_ready or run.outside_pending):
                break
            window = advance(self.store, PlanAdvance.model_validate(json.loads(json.dumps(PlanAdvance(
                run_id="rw", started=T0.isoformat(), now=T0.isoformat(), options=self.options, specs=SPECS,
                window_steps=self.window_steps, plan=None if refs else self.whole,
                plan_ref=refs[0] if refs else None, progress_ref=refs[1] if refs else None,
                part=run.checkpoint()).dump()))))
            refs = (window.plan_ref, window.progress_ref)
            if window.steps is None:
                return self._finish(refs, None)
            steps, state = window.steps, json.loads(json.dumps(window.state))
        else:
            raise AssertionError("the plan did not finish")
        now = LATE if expired else T0
        if refs is None:
            return run.result(now) if stop is None else run.stopped(stop, now)
        return self._finish(refs, run.checkpoint(), stop, run.started_records(), expired)

    def _finish(self, refs: tuple[str, str], part: dict[str, Any] | None, stop: ErrorInfo | None = None,
                awaiting: list[StepRecord] | None = None, expired: bool = False) -> RunResult:
        request = PlanFinish.model_validate(json.loads(json.dumps(PlanFinish(
            run_id="rw", started=T0.isoformat(), now=(LATE if expired else T0).isoformat(), options=self.options,
            specs=SPECS, plan_ref=refs[0], progress_ref=refs[1], part=part, stop=stop, awaiting=awaiting or [],
            expired=expired).dump())))
        if self.old:
            stored = PlanProgress.model_validate(json.loads(json.dumps(load_progress(self.store, PlanProgressRefs(
                run_id="rw", plan_ref=refs[0], progress_ref=refs[1])).dump())))
            run = fold(request, stored.plan, stored.state)
            run.restore_archived(load_records(self.store, ArchivedStepRecords(run_id="rw", refs=run.archives)))
            now = dt.datetime.fromisoformat(request.now)
            return run.stopped(stop, now) if stop is not None else run.result(now)
        answer = FinishedRun.of(finish(self.store, request))
        finished = FinishedRun.model_validate(json.loads(json.dumps(answer.dump())))
        result = RunResult.model_validate(finished.result)
        assert (finished.status, finished.total, finished.elapsed_ms) == (result.status, len(result.steps),
                                                                    result.elapsed_ms)
        assert (finished.done, finished.failed, finished.skipped) == (
            len(result.steps), *(sum(s.status == status for s in result.steps)
                                 for status in (StepStatus.FAILED, StepStatus.SKIPPED)))
        return result


def test_a_long_chain_carries_a_bounded_window_and_ends_as_a_whole_plan_would(tmp_path: Path) -> None:
    gens = Generations(plan(*chain(40)), LocalPayloadStore(tmp_path), window_steps=5)
    result = gens.run()
    assert result.status == RunStatus.COMPLETED
    assert [s.step_id for s in result.steps] == [f"s{i}" for i in range(40)]
    assert all(s.status == StepStatus.SUCCEEDED for s in result.steps)
    assert result.output == {"s39": {"sum": 40}}  # every $ref resolved across 13 windows
    assert gens.inputs[0] == 40 and max(gens.inputs[1:]) <= 5 + 1  # the window and the step it reads
    assert all(total == 40 for _, total in gens.totals)  # the status counts the whole plan in every window
    assert [done for done, _ in gens.totals] == list(range(0, 40, 3))


def test_parallel_chains_advance_together_and_a_wide_ready_set_stays_whole(tmp_path: Path) -> None:
    wide = [{"id": f"w{i}", "tool": "add", "args": {"a": i, "b": 0}} for i in range(12)]
    whole = plan(*chain(10, "a"), *chain(10, "b"), *wide)
    run = PlanRun("rw", whole, SPECS, RunOptions(), T0)
    window = run.next_window(4, T0)
    assert window == ["a0", "b0", *(f"w{i}" for i in range(12))]  # every ready step, beyond the limit
    run = PlanRun("rw", whole, SPECS, RunOptions(), T0, state={
        "statuses": {"a0": "succeeded", "b0": "succeeded"}, "records": {}, "failed": False,
        "results": {"a0": {"sum": 1}, "b0": {"sum": 1}}, "recent": []})
    assert run.next_window(6, T0)[:2] == ["a1", "b1"]  # breadth first: both chains, not one chain's next six
    gens = Generations(whole, LocalPayloadStore(tmp_path), window_steps=4, calls=5)
    result = gens.run()
    assert result.status == RunStatus.COMPLETED and len(result.steps) == 32
    assert result.output["a9"] == {"sum": 10} and result.output["b9"] == {"sum": 10}


def test_a_failure_skips_what_depends_on_it_beyond_the_window(tmp_path: Path) -> None:
    gens = Generations(plan(*chain(30), *chain(8, "t")), LocalPayloadStore(tmp_path), window_steps=4,
                       fail=frozenset({"s5"}))
    result = gens.run()
    by_id = {s.step_id: s for s in result.steps}
    assert result.status == RunStatus.COMPLETED_WITH_ERRORS
    assert by_id["s5"].status == StepStatus.FAILED
    assert all(by_id[f"s{i}"].status == StepStatus.SKIPPED for i in range(6, 30))
    assert by_id["s29"].error is not None and "not run: step 's28' skipped" in by_id["s29"].error.message
    assert by_id["s6"].error is not None and "not run: step 's5' failed" in by_id["s6"].error.message
    assert all(by_id[f"t{i}"].status == StepStatus.SUCCEEDED for i in range(8))  # the other chain ran on
    assert result.output == {"t7": {"sum": 8}}
    assert [e.field for e in result.errors] == ["plan.steps[5]"]  # its place in the whole plan


def test_fail_fast_skips_every_step_outside_the_window_too(tmp_path: Path) -> None:
    gens = Generations(plan(*chain(30)), LocalPayloadStore(tmp_path), window_steps=4,
                       options=RunOptions(fail_fast=True), fail=frozenset({"s7"}))
    result = gens.run()
    statuses = [s.status for s in result.steps]
    assert result.status == RunStatus.FAILED
    assert statuses == [StepStatus.SUCCEEDED] * 7 + [StepStatus.FAILED] + [StepStatus.SKIPPED] * 22


def denied_midway() -> Plan:
    """"gate" is denied after a chain; beyond any small window: its many dependents and what waits on them."""
    return plan(*chain(6), {"id": "gate", "tool": "add", "args": {"a": 1, "b": 1}, "depends_on": ["s5"]},
                *({"id": f"k{i}", "tool": "add", "args": {"a": i, "b": 0}, "depends_on": ["gate"]} for i in range(6)),
                *chain(6, "t"), *({"id": f"after{i}", "tool": "add", "args": {"a": 1, "b": 1},
                                   "depends_on": [f"k{i}", "t5"]} for i in range(6)))


@pytest.mark.parametrize("options", [pytest.param(RunOptions(), id="default"),
                                     pytest.param(RunOptions(fail_fast=True), id="fail-fast")])
def test_a_denial_in_a_window_reports_every_step_as_the_whole_plan_does(tmp_path: Path, options: RunOptions) -> None:
    whole = Generations(denied_midway(), LocalPayloadStore(tmp_path / "whole"), window_steps=100, calls=1000,
                        options=options, deny=frozenset({"gate"})).run()
    gens = Generations(denied_midway(), LocalPayloadStore(tmp_path / "windows"), window_steps=3, calls=2,
                       options=options, deny=frozenset({"gate"}))
    windowed = gens.run()
    assert len(gens.inputs) > 2 and max(gens.inputs[1:]) < len(whole.steps)  # it did run in windows
    assert windowed.status == whole.status == RunStatus.FAILED and windowed.errors == whole.errors == [DENIAL]
    assert [(s.step_id, s.status, s.error) for s in windowed.steps] == [(s.step_id, s.status, s.error)
                                                                       for s in whole.steps]
    if not options.fail_fast:
        by_id = {s.step_id: s for s in windowed.steps}
        assert by_id["k5"].error is not None and by_id["k5"].error.message == "not run: step 'gate' failed"


def awaiting_when_denied() -> Plan:
    """"wait" and "gate" are asked for together after a chain; "gate" is denied while "wait" still awaits; a chain
    beyond any small window waits on "wait"."""
    tail = chain(8, "t")
    tail[0]["depends_on"] = ["wait"]
    return plan(*chain(6), *({"id": name, "tool": "add", "args": {"a": 1, "b": 1}, "depends_on": ["s5"]}
                             for name in ("wait", "gate")), *tail)


def whole_and_windowed(tmp_path: Path, whole_plan: Plan, **script: Any) -> tuple[RunResult, RunResult]:
    """The same run as one generation and in small windows (which it must have used); the plans here make their
    calls in the same order either way (no parallel branches)."""
    whole = Generations(whole_plan, LocalPayloadStore(tmp_path / "whole"), window_steps=100, calls=1000,
                        **script).run()
    gens = Generations(whole_plan, LocalPayloadStore(tmp_path / "windows"), window_steps=3, calls=4, **script)
    windowed = gens.run()
    assert len(gens.inputs) > 2 and max(gens.inputs[1:]) < len(whole.steps)
    return whole, windowed


def test_finish_reports_the_calls_left_awaiting_approval_by_a_denial_as_the_whole_plan_does(tmp_path: Path) -> None:
    whole, windowed = whole_and_windowed(tmp_path, awaiting_when_denied(), deny=frozenset({"gate"}),
                                         held=frozenset({"wait"}))
    assert windowed.status == whole.status == RunStatus.FAILED and windowed.errors == whole.errors == [DENIAL]
    assert windowed.steps == whole.steps
    wait = {s.step_id: s for s in windowed.steps}["wait"]
    assert wait.status == StepStatus.SKIPPED and wait.args_hash  # its prepared call's hash, not a blank record
    assert {s.step_id: s.status for s in windowed.steps}["t7"] == StepStatus.SKIPPED  # outside the last window


def test_finish_skips_every_step_outside_the_window_once_the_deadline_passed(tmp_path: Path) -> None:
    whole, windowed = whole_and_windowed(tmp_path, plan(*chain(20)), options=RunOptions(timeout_s=60),
                                         expire_after=9)
    assert windowed.status == whole.status == RunStatus.COMPLETED_WITH_ERRORS
    assert [(s.step_id, s.status) for s in windowed.steps] == [(s.step_id, s.status) for s in whole.steps]
    assert [s.status for s in windowed.steps] == [StepStatus.SUCCEEDED] * 9 + [StepStatus.SKIPPED] * 11
    by_id = {s.step_id: s for s in windowed.steps}
    assert by_id["s9"].error is not None and "deadline (options.timeout_s=60)" in by_id["s9"].error.message


def test_finish_names_the_deadline_for_the_steps_outside_the_window_as_the_whole_plan_does(tmp_path: Path) -> None:
    whole, windowed = whole_and_windowed(tmp_path, plan(*chain(20)), options=RunOptions(timeout_s=60),
                                         expire_after=9)
    assert windowed.steps == whole.steps


SCRIPTS = [
    pytest.param(plan(*chain(20)), {}, id="completed"),
    pytest.param(plan(*chain(20), *chain(6, "t")), {"fail": frozenset({"s5"})}, id="failed"),
    pytest.param(awaiting_when_denied(), {"deny": frozenset({"gate"}), "held": frozenset({"wait"})}, id="denied"),
    pytest.param(plan(*chain(20)), {"options": RunOptions(timeout_s=60), "expire_after": 9},
                 id="expired"),
]


@pytest.mark.parametrize(("whole_plan", "script"), SCRIPTS)
def test_a_run_prepared_before_finish_plan_ends_with_the_same_result(tmp_path: Path, whole_plan: Plan,
                                                                     script: dict[str, Any]) -> None:
    new = Generations(whole_plan, LocalPayloadStore(tmp_path / "new"), window_steps=3, calls=4, **script).run()
    old = Generations(whole_plan, LocalPayloadStore(tmp_path / "old"), window_steps=3, calls=4, old=True,
                      **script).run()
    assert old == new


def test_advancing_twice_stores_the_same_values_under_the_same_references(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    run = PlanRun("rw", plan(*chain(20)), SPECS, RunOptions(), T0)
    for call in run.take_ready(T0):
        run.record([ok(call.call.step_id, {"sum": 1})], T0)
    request = PlanAdvance(run_id="rw", started=T0.isoformat(), now=T0.isoformat(), options=RunOptions(), specs=SPECS,
                          window_steps=5, plan=plan(*chain(20)), part=run.checkpoint())
    first, again = advance(store, request), advance(store, request)  # a retried activity
    assert first == again
    assert [s["id"] for s in first.steps or []] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert first.steps is not None and first.steps[0] == {"id": "s0", "tool": "add"}  # settled: no arguments
    assert first.state["results"] == {"s0": {"sum": 1}} and first.state["statuses"] == {"s0": "succeeded"}


def test_a_reference_of_another_run_is_refused(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    theirs = store.put({"steps": chain(3)}, prefix="other-run")
    with pytest.raises(ValueError, match="another run"):
        finish(store, PlanFinish(run_id="rw", started=T0.isoformat(), now=T0.isoformat(), options=RunOptions(),
                                 specs=SPECS, plan_ref=theirs, progress_ref=theirs))
    with pytest.raises(ValueError, match="another run"):
        advance(store, PlanAdvance(run_id="rw", started=T0.isoformat(), now=T0.isoformat(), options=RunOptions(),
                                   specs=SPECS, window_steps=5, plan_ref=theirs, part={}))
    mine = store.put(["not", "an", "object"], prefix="rw")
    with pytest.raises(ValueError, match="holds no object"):
        finish(store, PlanFinish(run_id="rw", started=T0.isoformat(), now=T0.isoformat(), options=RunOptions(),
                                 specs=SPECS, plan_ref=mine, progress_ref=mine))
    with pytest.raises(ValueError, match="step-record archive of another run"):  # the same reader as the plan's
        load_records(store, ArchivedStepRecords(run_id="rw", refs=[theirs]))
    with pytest.raises(ValueError, match="holds no records"):
        load_records(store, ArchivedStepRecords(run_id="rw", refs=[store.put({"s0": 1}, prefix="rw")]))


def test_a_plan_cached_for_one_run_is_not_served_to_another(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    run = PlanRun("rw", plan(*chain(20)), SPECS, RunOptions(), T0)
    for call in run.take_ready(T0):
        run.record([ok(call.call.step_id, {"sum": 1})], T0)
    mine = advance(store, PlanAdvance(run_id="rw", started=T0.isoformat(), now=T0.isoformat(), options=RunOptions(),
                                      specs=SPECS, window_steps=5, plan=plan(*chain(20)), part=run.checkpoint()))
    with pytest.raises(ValueError, match="another run"):  # the plan is in this process's cache by now
        advance(store, PlanAdvance(run_id="other", started=T0.isoformat(), now=T0.isoformat(), options=RunOptions(),
                                   specs=SPECS, window_steps=5, plan_ref=mine.plan_ref, part=run.checkpoint()))

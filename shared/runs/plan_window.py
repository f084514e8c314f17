"""Long plans go on in windows: each ``continue_as_new`` generation carries a bounded part of the plan, not all of it.

Every replay of an orchestrator parses its input, and a plan run's input held the whole plan: a 1,000-step chain's
generations replayed ~130 KB per episode, so a step cost twice as much as in a 50-step chain. A plan of more than
``window_steps`` steps (WEFT_PLAN_WINDOW_STEPS) therefore continues as new with only a *window* (~11 KB for that
chain with windows of 40): the steps that are ready and, breadth first, those waiting only on them, up to
``window_steps`` (every ready step, however many: a wide batch still goes out whole), plus, as *settled* steps with
no arguments, the finished steps the window reads results of. The whole plan and the run's progress (every finished
step's status, the results later steps still need, the references of the archived records) wait in the run's
payload storage, written by ``advance_plan`` once per generation; the final generation's ``finish_plan`` folds its
part into them and answers the run's result, listing every step (the orchestrator does no work in the plan's size).
The runs prepared before ``finish_plan`` existed end as they began: ``load_plan_progress`` reads the plan and the
progress back and the orchestrator folds them (:func:`~shared.runs.plan_fold.fold`, the same fold).
A step outside the window whose dependency failed is skipped when a later window is chosen.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from shared.models import Plan, RunResult, StepStatus, ToolSpec
from shared.payloads import PayloadStore, ref_of_run, run_object
from shared.runs.contracts import (
    ArchivedStepRecords,
    PlanAdvance,
    PlanFinish,
    PlanProgress,
    PlanProgressRefs,
    PlanWindow,
)
from shared.runs.plan import PlanGraph, check_plan
from shared.runs.plan_fold import fold, merge_progress
from shared.runs.plan_run import CHECKPOINT_VERSION, PlanRun
from shared.runs.record_archive import load_records
from shared.ttl_cache import TtlLruCache

__all__ = ["advance", "finish", "load_progress"]

_REF = "a plan or progress reference"
_PLANS: TtlLruCache[tuple[Plan, PlanGraph | None]] = TtlLruCache(8, math.inf)  # by plan reference (by content)


def advance(payloads: PayloadStore, request: PlanAdvance) -> PlanWindow:
    """Fold the generation in ``request`` into the stored progress, archive its records and choose the next window.
    The same request stores the same values under the same references, so a retried call changes nothing."""
    run_id = request.run_id
    if request.plan is not None:
        plan_ref = payloads.put(request.plan.model_dump(mode="json"), prefix=run_id)
    elif request.plan_ref is not None:
        plan_ref = request.plan_ref
    else:
        raise ValueError("advance_plan needs the plan or its reference")
    plan, graph = _plan(payloads, plan_ref, run_id, request.specs, request.plan)
    stored = run_object(payloads, request.progress_ref, run_id, _REF) if request.progress_ref is not None else None
    run = PlanRun(run_id, plan, request.specs, request.options, dt.datetime.fromisoformat(request.started),
                  graph=graph, state=merge_progress(stored, request.part))
    assert run.graph is not None
    window = run.next_window(request.window_steps, dt.datetime.fromisoformat(request.now))
    records = run.unarchived_records()
    progress = run.checkpoint(payloads.put(records, prefix=run_id) if records else None)
    progress_ref = payloads.put(progress, prefix=run_id)
    if not window:
        return PlanWindow(plan_ref=plan_ref, progress_ref=progress_ref, steps=None, state={})
    steps, state = _window_input(run, run.graph, window)
    return PlanWindow(plan_ref=plan_ref, progress_ref=progress_ref, steps=steps, state=state)


def finish(payloads: PayloadStore, request: PlanFinish) -> RunResult:
    """The run's result: the last generation's part folded into the stored progress, the whole plan's records read
    back. The same request answers the same result (nothing is stored)."""
    plan, graph = _plan(payloads, request.plan_ref, request.run_id, request.specs)
    run = fold(request, plan, run_object(payloads, request.progress_ref, request.run_id, _REF), graph)
    if run.archives:
        run.restore_archived(load_records(payloads, ArchivedStepRecords(run_id=request.run_id, refs=run.archives)))
    now = dt.datetime.fromisoformat(request.now)
    return run.stopped(request.stop, now) if request.stop is not None else run.result(now)


def load_progress(payloads: PayloadStore, refs: PlanProgressRefs) -> PlanProgress:
    """The whole plan and the run's progress, for the runs that end with ``load_plan_progress`` (prepared before
    ``finish_plan`` existed) and :func:`fold` in the orchestrator."""
    return PlanProgress.model_validate({"plan": run_object(payloads, refs.plan_ref, refs.run_id, _REF),
                                        "state": run_object(payloads, refs.progress_ref, refs.run_id, _REF)})


def _window_input(run: PlanRun, graph: PlanGraph, window: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    members = set(window)
    settled = sorted({parent for step_id in window for parent in graph.dependencies[step_id]
                      if parent not in members}, key=graph.index.__getitem__)
    steps = [{"id": step_id, "tool": graph.steps[step_id].tool} for step_id in settled]
    steps += [graph.steps[step_id].model_dump(mode="json") for step_id in window]
    failed, skipped = run.counts
    state = {"v": CHECKPOINT_VERSION, "statuses": dict.fromkeys(settled, StepStatus.SUCCEEDED.value),
             "records": {}, "archives": [], "failed": run.failed,
             "results": {step_id: run.results[step_id] for step_id in settled}, "recent": run.recent,
             "outside": {"total": len(graph.steps) - len(steps), "done": run.done - len(settled), "failed": failed,
                         "skipped": skipped},
             "index": {step_id: graph.index[step_id] for step_id in [*settled, *window]}}
    return steps, state


def _plan(payloads: PayloadStore, ref: str, run_id: str, specs: dict[str, ToolSpec],
          plan: Plan | None = None) -> tuple[Plan, PlanGraph | None]:
    """The plan and its graph, kept by reference: parsing and checking 1,000 steps each generation cost more than
    the rest of the call (a reference names one run's plan, whose specs are fixed when it starts)."""
    if not ref_of_run(ref, run_id):  # before the cache: a run never reads another's plan
        raise ValueError(f"{_REF} of another run")
    entry = _PLANS.get(ref)
    if entry is None:
        plan = plan or Plan.model_validate(run_object(payloads, ref, run_id, _REF))
        entry = plan, check_plan(plan, specs, check_arguments=False)[1]
        _PLANS.put(ref, entry)
    return entry

"""The end of a long plan's run (:mod:`shared.runs.plan_window`): the stored progress and the last generation's part
folded into the whole plan's run, and a generation's checkpoint folded into the progress (:func:`merge_progress`).
Pure (no I/O), so the orchestrator can fold the runs that end the older way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from shared.models import Plan
from shared.runs.contracts import PlanFinish
from shared.runs.plan import PlanGraph
from shared.runs.plan_run import CHECKPOINT_VERSION, PlanRun

__all__ = ["fold", "merge_progress"]


def fold(request: PlanFinish, plan: Plan, progress: Mapping[str, Any], graph: PlanGraph | None = None) -> PlanRun:
    """The whole plan's run at its end, from the stored ``progress`` and the last generation in ``request``: the
    calls it left awaiting taken over, and what its failures, its stop or the deadline leave unrun skipped as in a
    whole plan's run. The records earlier generations archived are not read (:attr:`PlanRun.archives`)."""
    now = dt.datetime.fromisoformat(request.now)
    run = PlanRun(request.run_id, plan, request.specs, request.options, dt.datetime.fromisoformat(request.started),
                  graph=graph, state=progress if request.part is None else merge_progress(progress, request.part))
    run.resume_started(request.awaiting)
    run.skip_blocked(now, expired=request.expired)  # what the last window's failures skip outside it, as in a whole run
    if request.expired:  # the steps outside the last window were not started either
        run.expire(now)
    return run


def merge_progress(progress: Mapping[str, Any] | None, part: Mapping[str, Any]) -> dict[str, Any]:
    """The run's progress with a generation's :meth:`~shared.runs.plan_run.PlanRun.checkpoint` folded in (the later
    one wins)."""
    if progress is None:
        return dict(part)
    return {"v": CHECKPOINT_VERSION,
            "statuses": {**progress["statuses"], **part["statuses"]},
            "records": {**progress["records"], **part["records"]},
            "archives": [*progress["archives"], *part["archives"]],
            "failed": bool(progress["failed"] or part["failed"]),
            "results": {**progress["results"], **part["results"]},
            "recent": part["recent"]}

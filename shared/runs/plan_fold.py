"""The end of a long plan's run (:mod:`shared.runs.plan_window`): the stored progress and the last generation's part
folded into the whole plan's run. Pure (no I/O), so the orchestrator can fold the runs that end the older way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from shared.models import Plan
from shared.runs.contracts import PlanFinish
from shared.runs.plan import PlanGraph
from shared.runs.plan_run import PlanRun, merge_progress

__all__ = ["fold"]


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

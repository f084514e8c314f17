"""Runs: admission of requests, plan graphs and the pure bookkeeping of plan, code and task runs.

The pure parts (what the orchestrators use) are exported here, with the contracts between orchestrators and
activities in :mod:`shared.runs.contracts` and their names in :mod:`shared.runs.names`. The activities' side is
imported by its own path: :mod:`shared.runs.admission` and :mod:`shared.runs.run_status` (the triggers),
:mod:`shared.runs.code_sandbox` (the sandbox activities) and :mod:`shared.runs.task_planner` (the LLM activities).
"""

from shared.runs.code_run import CodeRun, seed_for
from shared.runs.plan import PlanGraph, PlanProblem, check_plan, resolve_refs, validate_plan
from shared.runs.plan_run import PlanRun
from shared.runs.step_calls import CircuitWait, StepCall, StepOutcome
from shared.runs.task_run import TaskRun

__all__ = [
    "CircuitWait",
    "CodeRun",
    "PlanGraph",
    "PlanProblem",
    "PlanRun",
    "StepCall",
    "StepOutcome",
    "TaskRun",
    "check_plan",
    "resolve_refs",
    "seed_for",
    "validate_plan",
]

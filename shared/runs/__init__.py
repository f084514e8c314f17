"""Runs: admission of requests, plan graphs and the pure bookkeeping of plan, code and task runs.

The pure parts (what the orchestrators use) are exported here; :mod:`shared.runs.admission` (the triggers' side) and
:mod:`shared.runs.code_run` (the sandbox activities' side) are imported by their own paths.
"""

from shared.runs.plan import PlanGraph, PlanProblem, check_plan, resolve_refs, validate_plan
from shared.runs.plan_run import PlanRun
from shared.runs.step_calls import CircuitWait, StepCall, StepOutcome

__all__ = [
    "CircuitWait",
    "PlanGraph",
    "PlanProblem",
    "PlanRun",
    "StepCall",
    "StepOutcome",
    "check_plan",
    "resolve_refs",
    "validate_plan",
]

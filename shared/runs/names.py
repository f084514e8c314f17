"""Names shared by the orchestrators, the activities and the run API, written once.

The Durable function names are the Python names of the decorated functions (``activities/*.py``,
``orchestrations/*.py``); recorded histories refer to them, so they never change. These enums spell them for the
callers (``context.call_activity(Activity.PREPARE_PLAN, ...)``), and a unit test checks each one names a function.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["APPROVAL_EVENT", "CHECKPOINT_KEY", "PREPARED_KEY", "Activity", "Orchestrator", "Stage"]

APPROVAL_EVENT = "approval"
"""The external event ``POST /api/runs/{id}/approve`` raises on a run waiting for approval."""
CHECKPOINT_KEY = "plan_checkpoint"
"""Key of a continued plan run's state in the ``run`` orchestrator's input (beside the request)."""
PREPARED_KEY = "plan_prepared"
"""Key of the :class:`~shared.runs.contracts.PreparedPlan` the trigger adds to a plan run's input (beside the
request, which forbids other keys: only the app's own code can put it there)."""


class Orchestrator(StrEnum):
    """Durable orchestrator functions."""

    RUN = "run"
    """Every run, whatever its mode (also each sub-run of a task)."""
    RUN_STEPS = "run_steps"
    """A slice of a wide fan-out of tool calls."""


class Activity(StrEnum):
    """Durable activity functions."""

    PREPARE_PLAN = "prepare_plan"
    CALL_TOOL = "call_tool"
    ARCHIVE_STEP_RECORDS = "archive_step_records"
    LOAD_STEP_RECORDS = "load_step_records"
    ADVANCE_PLAN = "advance_plan"
    FINISH_PLAN = "finish_plan"
    LOAD_PLAN_PROGRESS = "load_plan_progress"
    """The end of the windowed runs prepared before ``finish_plan`` existed (their histories may name it)."""
    PREPARE_CODE = "prepare_code"
    RUN_CODE_STEP = "run_code_step"
    RUN_CODE_INLINE = "run_code_inline"
    PREPARE_TASK = "prepare_task"
    SEARCH_TOOLS = "search_tools"
    LLM_PLAN = "llm_plan"
    LLM_ANSWER = "llm_answer"


class Stage(StrEnum):
    """Where a run is (``CustomStatus.stage``, shown as ``stage`` by ``GET /api/runs/{id}``)."""

    VALIDATING = "validating"
    PREPARING = "preparing"
    SEARCHING_TOOLS = "searching_tools"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    ANSWERING = "answering"
    DONE = "done"

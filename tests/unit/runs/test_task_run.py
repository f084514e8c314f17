"""Task mode: the pure TaskRun, and the task orchestrator driven as a generator with a fake context, as the Durable
SDK drives it (planner answers plan / code / direct answer / search-more / unusable → repair, approval refused,
turn limit)."""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrations.task_mode import run_task_mode
from shared.errors import ModelBehaviorError, TurnLimitExceeded
from shared.models import RunRequest, RunResult, RunStatus, StepRecord, StepStatus, TokenUsage
from shared.runs.contracts import LlmPlanReply, PlannerReply, PreparedTask
from shared.runs.names import APPROVAL_EVENT, Activity, Orchestrator, Stage
from shared.runs.task_run import TaskRun

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PLAN = {"steps": [{"id": "s1", "tool": "weather.get", "args": {"city": "Paris"}}]}
USAGE = {"prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 40}


def _prepared(max_turns: int = 4, tools: list[str] | None = None) -> dict[str, Any]:
    return {"tools": tools if tools is not None else ["weather.get"], "max_turns": max_turns, "search_k": 5,
            "approval_timeout_s": 60, "llm_retry": {"first_interval_ms": 1000, "max_attempts": 3}}


def _reply(action: str, *, final: bool = True, **fields: Any) -> dict[str, Any]:
    return {"ok": True, "reply": {"action": action, "final": final, **fields}, "raw": f'{{"action": "{action}"}}',
            "usage": USAGE}


UNUSABLE = {"ok": False, "error": "plan.steps[0].tool: unknown tool", "raw": "{nonsense}", "usage": USAGE}


def _sub_result(run_id: str, status: str = "completed", output: Any = None) -> dict[str, Any]:
    step = StepRecord(step_id="s1", tool="weather.get", status=StepStatus(
        "failed" if status == "completed_with_errors" else "succeeded"), result={"temp": 21})
    return RunResult(run_id=run_id, mode="plan", status=RunStatus(status), steps=[step], output=output).model_dump(
        mode="json")


class _Event:
    def __init__(self) -> None:
        self.result: Any = None


class _Timer:
    def __init__(self, fire_at: datetime) -> None:
        self.fire_at = fire_at
        self.canceled = False

    def cancel(self) -> None:
        self.canceled = True


class _Context:
    """What the task orchestrator asks of the Durable context; every scheduled task is recorded in order."""

    instance_id = "task-1"
    parent_instance_id = None
    is_replaying = True  # no telemetry from a test

    def __init__(self) -> None:
        self.current_utc_datetime = START
        self.scheduled: list[tuple[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.event = _Event()

    def set_custom_status(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def call_activity(self, name: str, payload: Any) -> tuple[str, str, Any]:
        self.scheduled.append((name, payload))
        return ("activity", name, payload)

    def call_activity_with_retry(self, name: str, retry: Any, payload: Any) -> tuple[str, str, Any]:
        assert retry.to_json() == {"firstRetryIntervalInMilliseconds": 1000, "maxNumberOfAttempts": 3}
        return self.call_activity(name, payload)

    def call_sub_orchestrator(self, name: str, payload: Any, instance_id: str) -> tuple[str, str, Any]:
        self.scheduled.append((name, {"input": payload, "instance_id": instance_id}))
        return ("sub", name, instance_id)

    def wait_for_external_event(self, name: str) -> _Event:
        assert name == APPROVAL_EVENT
        return self.event

    def create_timer(self, fire_at: datetime) -> _Timer:
        return _Timer(fire_at)

    def task_any(self, tasks: list[Any]) -> tuple[str, list[Any]]:
        return ("any", tasks)





def _drive(request: RunRequest, answers: dict[str, list[Any]], context: _Context | None = None) -> tuple[
        RunResult, _Context]:
    """Run the orchestrator to the end, answering each yielded task from ``answers`` (by function name, in order;
    ``any`` for the approval wait)."""
    context = context or _Context()
    gen: Generator[Any, Any, RunResult] = run_task_mode(context, request)  # type: ignore[arg-type]
    value: Any = None
    while True:
        try:
            task = gen.send(value)
        except StopIteration as stop:
            return stop.value, context
        context.current_utc_datetime += timedelta(seconds=1)
        kind, name = task[0], task[1]
        if kind == "any":
            decision = answers["any"].pop(0)
            context.event.result = decision
            value = context.event
            continue
        if kind == "sub":
            value = answers[name].pop(0)(task[2])
            continue
        value = answers[name].pop(0)


def _task(style: str = "plan") -> RunRequest:
    return RunRequest.model_validate({"mode": "task", "task": "weather in Paris?", "options": {"task_style": style}})


def _names(context: _Context) -> list[str]:
    return [name for name, _ in context.scheduled]


def test_a_plan_runs_as_a_sub_run_and_the_worker_answers() -> None:
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared()],
        Activity.LLM_PLAN: [_reply("plan", plan=PLAN)],
        Orchestrator.RUN: [_sub_result],
        Activity.LLM_ANSWER: [{"answer": "21 °C", "usage": USAGE}],
    })
    assert _names(context) == ["prepare_task", "llm_plan", "run", "llm_answer"]
    sub = context.scheduled[2][1]
    assert sub["instance_id"] == "task-1:turn1" and sub["input"]["mode"] == "plan"
    assert result.status == RunStatus.COMPLETED
    assert result.output == {"answer": "21 °C", "turns": 1, "tools": ["weather.get"]}
    assert [s.step_id for s in result.steps] == ["turn1.s1"]
    assert result.usage == TokenUsage(prompt_tokens=200, completion_tokens=20, cached_tokens=80)
    answer_input = context.scheduled[3][1]
    assert answer_input["results"][0]["step"] == "s1" and answer_input["results"][0]["result"] == {"temp": 21}
    assert [s["stage"] for s in context.statuses] == [Stage.SEARCHING_TOOLS, Stage.PLANNING, Stage.EXECUTING,
                                                     Stage.ANSWERING]


def test_code_runs_with_the_task_tools_and_its_value_is_shown() -> None:
    result, context = _drive(_task("code"), {
        Activity.PREPARE_TASK: [_prepared()],
        Activity.LLM_PLAN: [_reply("code", code="result = await weather_get('Paris')")],
        Orchestrator.RUN: [lambda sub_id: _sub_result(sub_id, output={"result": 21, "stdout": ""})],
        Activity.LLM_ANSWER: [{"answer": "21", "usage": USAGE}],
    })
    sub = context.scheduled[2][1]["input"]
    assert sub["mode"] == "code" and sub["tools"] == ["weather.get"]
    assert {"code_result": {"result": 21, "stdout": ""}} in context.scheduled[3][1]["results"]
    assert result.status == RunStatus.COMPLETED


def test_a_direct_answer_ends_the_run_without_a_sub_run() -> None:
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared()],
        Activity.LLM_PLAN: [_reply("answer", answer="Paris is in France.")],
    })
    assert _names(context) == ["prepare_task", "llm_plan"]
    assert result.status == RunStatus.COMPLETED and result.output["answer"] == "Paris is in France."
    assert result.usage.total_tokens == 110


def test_searching_for_more_tools_adds_them_and_tells_the_planner() -> None:
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared(tools=[])],
        Activity.LLM_PLAN: [_reply("search_tools", query="weather"), _reply("plan", plan=PLAN)],
        Activity.SEARCH_TOOLS: [["weather.get", "weather.forecast"]],
        Orchestrator.RUN: [_sub_result],
        Activity.LLM_ANSWER: [{"answer": "21 °C", "usage": USAGE}],
    })
    assert _names(context) == ["prepare_task", "llm_plan", "search_tools", "llm_plan", "run", "llm_answer"]
    assert context.scheduled[2][1] == {"query": "weather", "k": 5, "run_id": "task-1"}
    second = context.scheduled[3][1]
    assert second["tools"] == ["weather.get", "weather.forecast"]
    assert second["transcript"][-1]["content"].startswith("Tools loaded: weather.get, weather.forecast.")
    assert context.scheduled[4][1]["instance_id"] == "task-1:turn2"
    assert result.output["turns"] == 2 and result.status == RunStatus.COMPLETED


def test_an_unusable_reply_gets_one_repair_round() -> None:
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared()],
        Activity.LLM_PLAN: [UNUSABLE, _reply("answer", answer="done")],
    })
    repair = context.scheduled[2][1]["repair"]
    assert repair == {"raw": "{nonsense}", "error": "plan.steps[0].tool: unknown tool"}
    assert result.status == RunStatus.COMPLETED and result.output["turns"] == 1


def test_a_second_unusable_reply_fails_the_run() -> None:
    result, _ = _drive(_task(), {Activity.PREPARE_TASK: [_prepared()], Activity.LLM_PLAN: [UNUSABLE, UNUSABLE]})
    assert result.status == RunStatus.FAILED
    (error,) = result.errors
    assert error.code == ModelBehaviorError.code and error.field == "task"
    assert "even after a repair round: plan.steps[0].tool: unknown tool" in error.message


def test_a_plan_using_an_approval_tool_runs_as_a_sub_run_that_asks_per_call() -> None:
    """The task asks for no approval up front: the sub-run asks for each call (where the call runs), and the
    task's status names the sub-run so the API reaches it."""
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared()],
        Activity.LLM_PLAN: [_reply("plan", plan=PLAN)],
        Orchestrator.RUN: [lambda sub_id: _sub_result(sub_id, "completed_with_errors")],
        Activity.LLM_ANSWER: [{"answer": "partly", "usage": USAGE}],
    })
    assert _names(context) == ["prepare_task", "llm_plan", "run", "llm_answer"]
    executing = [s for s in context.statuses if s["stage"] == Stage.EXECUTING]
    assert executing and executing[-1]["sub_run"].endswith(":turn1")
    assert result.status == RunStatus.COMPLETED_WITH_ERRORS


def test_the_last_turn_answers_even_when_the_planner_wanted_more() -> None:
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared(max_turns=1)],
        Activity.LLM_PLAN: [_reply("plan", plan=PLAN, final=False)],
        Orchestrator.RUN: [_sub_result],
        Activity.LLM_ANSWER: [{"answer": "21 °C", "usage": USAGE}],
    })
    assert _names(context)[-1] == "llm_answer" and result.status == RunStatus.COMPLETED


def test_turns_used_up_without_an_answer_fail_the_run() -> None:
    result, context = _drive(_task(), {
        Activity.PREPARE_TASK: [_prepared(max_turns=1)],
        Activity.LLM_PLAN: [_reply("search_tools", query="more")],
        Activity.SEARCH_TOOLS: [[]],
    })
    assert _names(context) == ["prepare_task", "llm_plan", "search_tools"]
    assert result.status == RunStatus.FAILED and result.errors[0].code == TurnLimitExceeded.code


# ------------------------------------------------------------------------------------------------ TaskRun alone


def _run(max_turns: int = 3) -> TaskRun:
    return TaskRun("t", _task(), PreparedTask.model_validate(_prepared(max_turns)), START)


def test_task_run_keeps_the_transcript_the_planner_sees() -> None:
    task = _run()
    decision = task.planned(LlmPlanReply.model_validate(_reply("plan", plan=PLAN, final=False)))
    assert isinstance(decision, PlannerReply) and task.turns == 1
    sub = RunResult.model_validate(_sub_result("t:turn1"))
    assert task.ran(decision, sub) is False
    asking = task.plan_request()
    assert asking is not None
    assert [turn.role for turn in asking.transcript] == ["assistant", "results"]
    assert asking.dump()["transcript"][1] == {"role": "results", "results": task.results}


def test_task_run_hides_summary_errors_already_shown_per_step() -> None:
    task = _run()
    decision = task.planned(LlmPlanReply.model_validate(_reply("plan", plan=PLAN)))
    assert decision is not None
    sub = RunResult.model_validate({**_sub_result("t:turn1", "completed_with_errors"), "errors": [
        {"code": "tool_failed", "message": "step 's1' failed"}, {"code": "plan_invalid", "message": "bad ref"}]})
    assert task.ran(decision, sub) is True
    assert {"error": "bad ref"} in task.results and {"error": "step 's1' failed"} not in task.results


@pytest.mark.parametrize("turns", [0, 2])
def test_task_run_asks_until_the_turns_are_used_up(turns: int) -> None:
    task = _run(max_turns=turns)
    for _ in range(turns):
        assert task.plan_request() is not None
        task.planned(LlmPlanReply.model_validate(_reply("search_tools", query="x")))
    assert task.plan_request() is None and task.finished
    assert task.result(START).errors[0].code == TurnLimitExceeded.code

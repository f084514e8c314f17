"""Task mode end to end: planner and worker deployments on a loopback Azure OpenAI, tokens from a loopback
managed-identity endpoint, plans and code executed durably, repair, approval, throttling, garbage replies."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.fakes.openai_server import Reply
from tests.integration.runs.conftest import steps_by_id, submit, wait_run
from tests.integration.task.conftest import TaskStack
from tests.support import http

CALC_PLAN = {"action": "plan", "final": True, "plan": {"steps": [
    {"id": "a", "tool": "calculate", "args": {"expression": "6*7"}},
    {"id": "b", "tool": "convert_units", "args": {"value": {"$ref": "a.result"}, "from_unit": "km", "to_unit": "m"},
     "depends_on": ["a"]}]}}


def task(stack: TaskStack, text: str, tools: list[str] | None = None, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"mode": "task", "task": text, "tools": tools or ["calculate", "convert_units"]}
    if options:
        body["options"] = options
    return submit(stack.host, body)


def requests_since(stack: TaskStack, start: int) -> list[dict[str, Any]]:
    return [r.json() for r in stack.llm.chat_requests[start:]]


def test_plan_path_with_planner_and_worker_deployments(stack: TaskStack) -> None:
    start = len(stack.llm.chat_requests)
    stack.llm.script(Reply.json(CALC_PLAN, prompt_tokens=300, completion_tokens=60, cached_tokens=100),
                     Reply.text("42 km is 42000 m.", prompt_tokens=200, completion_tokens=12))
    view = wait_run(stack.host, task(stack, "What is 6*7 km in metres?")["id"])
    assert view["status"] == "completed", view["errors"]
    result = view["result"]
    assert result["output"]["answer"] == "42 km is 42000 m."
    assert result["usage"] == {"prompt_tokens": 500, "completion_tokens": 72, "cached_tokens": 100}
    steps = steps_by_id(view)
    assert steps["turn1.b"]["result"]["result"] == 42000
    sent = requests_since(stack, start)
    assert [r["model"] for r in sent] == ["planner-dep", "worker-dep"]
    assert sent[0]["response_format"]["type"] == "json_schema"
    assert "calculate" in sent[0]["messages"][0]["content"] and "convert_units" in sent[0]["messages"][0]["content"]
    assert "42000" in sent[1]["messages"][-1]["content"], "the worker sees the step results"
    assert stack.identity.issued("https://cognitiveservices.azure.com") >= 1


def test_code_path(stack: TaskStack) -> None:
    code = "import asyncio\nr = await calculate(expression='6*7')\nm = await convert_units(r['result'], 'km', 'm')\n" \
           "result = m['result']"
    stack.llm.script(Reply.json({"action": "code", "code": code, "final": True}),
                     Reply.text("42000 metres."))
    view = wait_run(stack.host, task(stack, "6*7 km in m, by code", task_style="code")["id"])
    assert view["status"] == "completed", view["errors"]
    assert view["result"]["output"]["answer"] == "42000 metres."
    assert [s["tool"] for s in view["result"]["steps"]] == ["calculate", "convert_units"]


def test_repair_round_shows_the_model_its_error(stack: TaskStack) -> None:
    start = len(stack.llm.chat_requests)
    bad = {"action": "plan", "plan": {"steps": [{"id": "a", "tool": "calculator", "args": {"expression": "1"}}]}}
    stack.llm.script(Reply.json(bad), Reply.json(CALC_PLAN), Reply.text("done"))
    view = wait_run(stack.host, task(stack, "compute")["id"])
    assert view["status"] == "completed", view["errors"]
    repair_prompt = requests_since(stack, start)[1]["messages"][-1]["content"]
    assert "unknown tool 'calculator'" in repair_prompt and "did you mean 'calculate'" in repair_prompt


def test_garbage_twice_fails_clearly_with_usage(stack: TaskStack) -> None:
    stack.llm.script(Reply.text("I think you should...", prompt_tokens=100, completion_tokens=5),
                     Reply.text("{not json", prompt_tokens=120, completion_tokens=3))
    view = wait_run(stack.host, task(stack, "compute")["id"])
    assert view["status"] == "failed"
    error = view["errors"][0]
    assert error["code"] == "model_behavior_error" and "even after a repair round" in error["message"]
    assert view["result"]["usage"]["prompt_tokens"] == 220 and view["result"]["usage"]["completion_tokens"] == 8


def test_throttling_is_retried_durably(stack: TaskStack) -> None:
    start = len(stack.llm.chat_requests)
    stack.llm.script(Reply.throttled(retry_after="60"), Reply.json(CALC_PLAN), Reply.text("ok"))
    view = wait_run(stack.host, task(stack, "compute")["id"])
    assert view["status"] == "completed", view["errors"]
    assert len(stack.llm.chat_requests) - start == 3, "429, then the durable retry, then the worker"


def test_search_tools_meta_action_loads_more_tools(stack: TaskStack) -> None:
    start = len(stack.llm.chat_requests)
    convert = {"action": "plan", "final": True, "plan": {"steps": [
        {"id": "c", "tool": "currency_convert", "args": {"amount": 10, "from_currency": "USD",
                                                          "to_currency": "EUR"}}]}}
    stack.llm.script(Reply.json({"action": "search_tools", "query": "convert an amount of money between currencies"}),
                     Reply.json(convert), Reply.text("about 9 EUR"))
    view = wait_run(stack.host, task(stack, "10 USD in EUR?", tools=["calculate"])["id"], timeout=120)
    assert view["status"] == "completed", view["errors"]
    assert "currency_convert" in view["result"]["output"]["tools"]
    assert "currency_convert" in requests_since(stack, start)[1]["messages"][0]["content"]


def wait_stage(stack: TaskStack, run_id: str, stage: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = http("GET", f"{stack.host.base_url}/api/runs/{run_id}")[2]
        if view.get("stage") == stage:
            return view
        time.sleep(0.05)
    raise TimeoutError(stage)


EMAIL_PLAN = {"action": "plan", "final": True, "plan": {"steps": [
    {"id": "mail", "tool": "send_email", "args": {"to": "ops@example.com", "subject": "hi"}}]}}


@pytest.mark.parametrize(("decision", "expected_status", "expected_code"), [
    pytest.param({"approved": True}, "completed", None, id="approve"),
    pytest.param({"approved": False, "reason": "not today"}, "failed", "approval_denied", id="deny"),
    pytest.param(None, "failed", "approval_timeout", id="timeout"),
])
def test_approval(stack: TaskStack, decision: dict | None, expected_status: str, expected_code: str | None) -> None:
    stack.llm.script(Reply.json(EMAIL_PLAN), *([Reply.text("sent")] if expected_status == "completed" else []))
    run_id = task(stack, "email ops", tools=["send_email"])["id"]
    waiting = wait_stage(stack, run_id, "awaiting_approval")
    assert waiting["status"] == "running"
    if decision is not None:
        status, _, reply = http("POST", f"{stack.host.base_url}/api/runs/{run_id}/approve", decision)
        assert status == 202, reply
    view = wait_run(stack.host, run_id, timeout=30)
    assert view["status"] == expected_status
    if expected_code:
        assert view["errors"][0]["code"] == expected_code
    else:
        assert steps_by_id(view)["turn1.mail"]["result"] == {"status": "sent", "to": "ops@example.com"}


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"approved": "yes"}, "approved", id="not-bool"),
    pytest.param({"approved": True, "extra": 1}, "extra", id="unknown-field"),
    pytest.param(b"nope", "body", id="not-json"),
])
def test_bad_approvals_are_400(stack: TaskStack, body: Any, field: str) -> None:
    status, _, reply = http("POST", f"{stack.host.base_url}/api/runs/whatever/approve", body)
    assert status == 400 and reply["field"] == field


def test_approving_a_run_that_does_not_wait_is_409(stack: TaskStack) -> None:
    stack.llm.script(Reply.json({"action": "answer", "answer": "nothing to do"}))
    run_id = task(stack, "say hi")["id"]
    view = wait_run(stack.host, run_id)
    assert view["result"]["output"]["answer"] == "nothing to do"
    assert http("POST", f"{stack.host.base_url}/api/runs/{run_id}/approve", {"approved": True})[0] == 409


def test_logs_hold_no_token_or_key(stack: TaskStack) -> None:
    log = stack.host.log()
    assert log, "the devhost log is captured"
    token = stack.identity.token_for("https://cognitiveservices.azure.com")
    assert token not in log
    assert stack.identity.identity_header not in log
    for request in stack.llm.chat_requests:
        assert json.dumps(request.json()["messages"][-1]["content"])[:60] not in log


def test_plan_mode_asks_approval_for_tools_that_require_it(stack: TaskStack) -> None:
    run_id = submit(stack.host, {"mode": "plan", "plan": {"steps": [
        {"id": "mail", "tool": "send_email", "args": {"to": "a@example.com", "subject": "s"}}]}})["id"]
    assert wait_stage(stack, run_id, "awaiting_approval")["status"] == "running"
    assert http("POST", f"{stack.host.base_url}/api/runs/{run_id}/approve", {"approved": True})[0] == 202
    view = wait_run(stack.host, run_id)
    assert view["status"] == "completed"
    assert steps_by_id(view)["mail"]["result"]["status"] == "sent"


def test_code_mode_denied_approval_runs_nothing(stack: TaskStack) -> None:
    code = "r = await send_email(to='a@example.com', subject='s')\nresult = r"
    run_id = submit(stack.host, {"mode": "code", "code": code, "tools": ["send_email", "calculate"]})["id"]
    wait_stage(stack, run_id, "awaiting_approval")
    decision = {"approved": False, "reason": "wrong recipient"}
    assert http("POST", f"{stack.host.base_url}/api/runs/{run_id}/approve", decision)[0] == 202
    view = wait_run(stack.host, run_id)
    assert view["status"] == "failed" and view["errors"][0]["code"] == "approval_denied"
    assert "wrong recipient" in view["errors"][0]["message"]
    (step,) = view["result"]["steps"]  # the denied call, which never ran
    assert step["status"] == "failed" and step["attempts"] == 0 and step["error"]["code"] == "approval_denied"

"""Runs on an in-process devhost, with the OpenTelemetry SDK's in-memory exporter: the run, stage, activity, LLM,
tool, sandbox and search spans carry the attributes operators query (tokens, tool, run id, models), each activity's
spans sit in the trace the host gave the invocation, and prompt, argument, result, code and query content appears
only with WEFT_TELEMETRY_CAPTURE_CONTENT=true."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.models import hash_args
from tests.fakes.openai_server import FakeChatCompletionsServer, Reply

ROOT = Path(__file__).resolve().parents[2]
SECRET_WORD = "zebra-canary-41"
RESPONSE_MODEL = "gpt-4.1-mini-2025-04-14"
PLAN = {"action": "plan", "final": True, "plan": {"steps": [
    {"id": "a", "tool": "hash_text", "args": {"text": SECRET_WORD}},
    {"id": "b", "tool": "text_statistics", "args": {"text": SECRET_WORD}}]}}
TASK = {"mode": "task", "task": f"Describe the word {SECRET_WORD}", "tools": ["hash_text", "text_statistics"]}
FLAKY = {"mode": "plan", "plan": {"steps": [{"id": "f", "tool": "flaky", "args": {"fail_first": 1, "key": "otel"}}]}}
CODE = f"""
digest = await hash_text(text="{SECRET_WORD}")
stats = await text_statistics("{SECRET_WORD}")
result = {{"digest": digest["hex"], "words": stats["words"]}}
"""
INLINE = {"mode": "code", "code": CODE, "tools": ["hash_text", "text_statistics"],
          "options": {"code_execution": "inline"}}
WEFT_SPANS = ("weft.", "execute_tool ", "chat ")
"""Name prefixes of the spans Weft makes (the others come from instrumented libraries)."""


def _collect(env: dict[str, str], requests: list[dict[str, Any]], out: Any) -> None:
    """Runs in a fresh process: global tracer provider with an in-memory exporter, devhost in-process; runs the
    requests one after the other and sends back their statuses, the finished spans and the Prometheus text."""
    os.environ.update(env)
    os.chdir(ROOT)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from devhost.host import DevHost, HostOptions
    from shared.runtime import get_runtime

    host = DevHost(HostOptions(app_dir=ROOT, db=":memory:", serve_http=False, poll_queues=False, run_timers=False))
    host.start()
    try:
        statuses = [host.wait_for(host.start_new("run", request), timeout=120) for request in requests]
    finally:
        host.stop()
    spans = [{"name": s.name, "attributes": dict(s.attributes or {}), "trace": format(s.context.trace_id, "032x"),
              "id": format(s.context.span_id, "016x"), "parent": format(s.parent.span_id, "016x") if s.parent else None,
              "remote_parent": bool(s.parent and s.parent.is_remote)} for s in exporter.get_finished_spans()]
    metrics = get_runtime().telemetry.metrics.prometheus_text()[0].decode()
    out.put(json.dumps({"statuses": statuses, "spans": spans, "metrics": metrics}, default=str))


def _in_fresh_process(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Run ``target(*args, queue)`` in a spawned process (fresh logging and telemetry state); return what it sent."""
    context = multiprocessing.get_context("spawn")
    queue: Any = context.Queue()
    proc = context.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        return json.loads(queue.get(timeout=240))
    finally:
        proc.join(timeout=30)


def _llm_env(llm: FakeChatCompletionsServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"LLM_PROVIDER": "openai_compatible", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "key-for-tests",
            "LLM_PLANNER_DEPLOYMENT": "p", "LLM_WORKER_DEPLOYMENT": "w", "WEFT_STATE_DIR": str(tmp_path),
            "WEFT_PAYLOAD_DIR": str(tmp_path / "payloads"), "AzureWebJobsStorage": "", **extra}


def _named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"].startswith(prefix)]


def test_task_run_spans(tmp_path) -> None:
    llm = FakeChatCompletionsServer(bearer="key-for-tests", deployments=["p", "w"], path_prefix="/v1")
    llm.start()
    llm.script(Reply.json(PLAN, prompt_tokens=321, completion_tokens=45, model=RESPONSE_MODEL),
               Reply.text(f"The word {SECRET_WORD} has 15 characters.", prompt_tokens=210, completion_tokens=12))
    try:
        data = _in_fresh_process(_collect, _llm_env(llm, tmp_path), [TASK, FLAKY])
    finally:
        llm.stop()
    task, flaky = data["statuses"]
    assert task["runtimeStatus"] == "Completed"
    assert task["output"]["status"] == "completed"
    assert flaky["output"]["status"] == "completed" and flaky["output"]["steps"][0]["attempts"] == 2
    spans = data["spans"]
    run_id = task["instanceId"]
    run = [s for s in spans if s["name"] == "weft.run task"]
    assert len(run) == 1 and run[0]["attributes"]["weft.run.status"] == "completed"

    # every Weft span carries the run id (a task's sub-runs are "<run id>:turn<n>")
    weft = [s for s in spans if s["name"].startswith(WEFT_SPANS)]
    assert [s["name"] for s in weft if "weft.run.id" not in s["attributes"]] == []
    of_task = [s for s in weft if s["attributes"]["weft.run.id"].startswith(run_id)]
    assert {s["name"] for s in of_task} >= {
        "weft.run task", "weft.stage search", "weft.stage plan", "weft.stage execute", "weft.stage answer",
        "weft.activity prepare_task", "weft.activity llm_plan", "weft.activity call_tool", "weft.activity llm_answer",
        "chat p", "chat w", "execute_tool hash_text", "execute_tool text_statistics"}

    # each activity's span is a child of the invocation's trace context; the spans inside it share its trace
    activities = {s["id"]: s for s in _named(spans, "weft.activity ")}
    assert all(s["remote_parent"] for s in activities.values())
    assert len({s["trace"] for s in activities.values()}) == len(activities), "one trace per activity invocation"
    for child in _named(of_task, "execute_tool ") + _named(of_task, "chat ") + _named(of_task, "weft.search"):
        parent = activities[child["parent"]]
        assert child["trace"] == parent["trace"]
        assert parent["attributes"]["weft.run.id"] == child["attributes"]["weft.run.id"]

    tools = _named(of_task, "execute_tool ")
    assert sorted(s["attributes"]["weft.tool.name"] for s in tools) == ["hash_text", "text_statistics"]
    assert {s["attributes"]["weft.tool.arguments_sha256"] for s in tools} == {hash_args({"text": SECRET_WORD})}
    llm_spans = _named(of_task, "chat ")
    usage = sorted((s["attributes"]["gen_ai.usage.input_tokens"], s["attributes"]["gen_ai.usage.output_tokens"])
                   for s in llm_spans)
    assert usage == [(210, 12), (321, 45)]
    assert {s["attributes"]["gen_ai.request.model"] for s in llm_spans} == {"p", "w"}
    assert sorted(s["attributes"]["gen_ai.response.model"] for s in llm_spans) == [RESPONSE_MODEL, "w"]
    assert {s["attributes"]["server.address"] for s in llm_spans} == {"127.0.0.1"}
    assert {s["attributes"]["gen_ai.provider.name"] for s in llm_spans} == {"openai"}
    assert all(s["attributes"]["gen_ai.response.id"].startswith("chatcmpl-") for s in llm_spans)

    assert 'weft_tool_retries_total{tool="flaky"} 1.0' in data["metrics"].splitlines()
    assert SECRET_WORD not in json.dumps(spans), "no prompt, argument or result content by default"
    assert "key-for-tests" not in json.dumps(spans)


def test_content_is_recorded_with_capture_on(tmp_path) -> None:
    """Prompts, completions, tool arguments and results, the search query and the code land on the spans; inline
    code-mode tool calls are tool spans inside the sandbox span, counted like activity calls."""
    search = {"action": "search_tools", "query": f"tools that hash {SECRET_WORD}"}
    llm = FakeChatCompletionsServer(bearer="key-for-tests", deployments=["p", "w"], path_prefix="/v1")
    llm.start()
    llm.script(Reply.json(search), Reply.json(PLAN), Reply.text(f"The word {SECRET_WORD} has 15 characters."))
    try:
        data = _in_fresh_process(_collect, _llm_env(llm, tmp_path, WEFT_TELEMETRY_CAPTURE_CONTENT="true"),
                                 [TASK, INLINE])
    finally:
        llm.stop()
    task, inline = data["statuses"]
    assert task["output"]["status"] == "completed", task["output"]
    assert inline["output"]["status"] == "completed", inline["output"]
    spans = data["spans"]
    of_task = [s for s in spans if s.get("attributes", {}).get("weft.run.id", "").startswith(task["instanceId"])]

    planner = [s for s in _named(of_task, "chat p")]
    assert len(planner) == 2
    prompt = json.loads(planner[0]["attributes"]["gen_ai.input.messages"])
    assert [m["role"] for m in prompt] == ["system", "user"] and SECRET_WORD in prompt[1]["content"]
    reply = json.loads(planner[-1]["attributes"]["gen_ai.output.messages"])
    assert reply[0]["role"] == "assistant" and json.loads(reply[0]["content"]) == PLAN
    (answer,) = _named(of_task, "chat w")
    assert SECRET_WORD in json.loads(answer["attributes"]["gen_ai.output.messages"])[0]["content"]
    queries = [s["attributes"]["weft.search.query"] for s in _named(of_task, "weft.search")]
    assert f"tools that hash {SECRET_WORD}" in queries
    hashed = [s for s in _named(of_task, "execute_tool hash_text")]
    assert json.loads(hashed[0]["attributes"]["weft.tool.arguments"]) == {"text": SECRET_WORD}
    assert "hex" in json.loads(hashed[0]["attributes"]["weft.tool.result"])

    of_code = [s for s in spans if s["attributes"].get("weft.run.id") == inline["instanceId"]]
    (sandbox,) = _named(of_code, "weft.sandbox inline")
    assert sandbox["attributes"]["weft.sandbox.code"] == CODE
    assert sandbox["attributes"]["weft.sandbox.backend"] == "local"
    assert sandbox["attributes"]["weft.sandbox.tool_calls"] == 2
    calls = _named(of_code, "execute_tool ")
    assert sorted(s["attributes"]["weft.step.id"] for s in calls) == ["c1", "c2"]
    assert all(s["parent"] == sandbox["id"] and s["trace"] == sandbox["trace"] for s in calls)
    assert json.loads(calls[0]["attributes"]["weft.tool.arguments"])["text"] == SECRET_WORD
    tool_calls = [line for line in data["metrics"].splitlines() if line.startswith("weft_tool_calls_total")]
    assert 'weft_tool_calls_total{outcome="ok",tool="text_statistics"} 2.0' in tool_calls, "one plan, one inline"


URL_CANARY = "tag-canary-7f3e"
"""A query-string value: what an httpx request line at INFO would carry into the logs."""
PETS_PLAN = {"action": "plan", "final": True, "plan": {"steps": [
    {"id": "pets", "tool": "pets.listPets", "args": {"tag": [URL_CANARY], "limit": 5}}]}}


def _run_logged(env: dict[str, str], out: Any) -> None:
    """Runs in a fresh process. The root logger is at DEBUG with a handler that keeps every record, as in the
    Functions Python worker (it relays every record to the host, which filters only by host.json categories)."""
    import logging

    os.environ.update(env)
    os.chdir(ROOT)
    records: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append({"name": record.name, "level": record.levelno, "message": record.getMessage()})

    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(Keep())
    from devhost.host import DevHost, HostOptions

    host = DevHost(HostOptions(app_dir=ROOT, db=":memory:", serve_http=False, poll_queues=False, run_timers=False))
    host.start()
    try:
        request = {"mode": "task", "task": "List the pets", "tools": ["pets.listPets"]}
        status = host.wait_for(host.start_new("run", request), timeout=120)
    finally:
        host.stop()
    out.put(json.dumps({"status": status, "records": records}, default=str))


def test_http_client_loggers_do_not_log_request_urls(tmp_path) -> None:
    """httpx (OpenAPI tools) and httpx2 (the LLM client) log every request's full URL at INFO; the app lowers them to
    WARNING when it configures telemetry, so neither the query string nor the endpoints reach the logs."""
    from tests.fakes.openapi_server import PetsApi

    llm = FakeChatCompletionsServer(bearer="key-for-tests", deployments=["p", "w"], path_prefix="/v1")
    pets = PetsApi()
    llm.start()
    pets.start()
    llm.script(Reply.json(PETS_PLAN), Reply.text("There are no pets with that tag."))
    endpoints = (f"{pets.url}/api/", llm.base_url)  # the operation and chat URLs (the source URL may be logged)
    (tmp_path / "sources.json").write_text(json.dumps([pets.source_config(alias="pets")]))
    env = {"LLM_PROVIDER": "openai_compatible", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "key-for-tests",
           "LLM_PLANNER_DEPLOYMENT": "p", "LLM_WORKER_DEPLOYMENT": "w", "WEFT_STATE_DIR": str(tmp_path),
           "WEFT_PAYLOAD_DIR": str(tmp_path / "payloads"), "AzureWebJobsStorage": "",
           "WEFT_TOOL_SOURCES": str(tmp_path / "sources.json"), "WEFT_ALLOW_PRIVATE_NETWORK": "true",
           "WEFT_DISCOVERY_CACHE_DIR": str(tmp_path / "discovery")}
    try:
        data = _in_fresh_process(_run_logged, env)
    finally:
        llm.stop()
        pets.stop()
    assert data["status"]["output"]["status"] == "completed", data["status"]["output"]
    assert any(r.path == "/api/pets" and r.query.get("tag") == URL_CANARY for r in pets.requests), "the tool ran"
    assert len(llm.requests) == 2, "the planner and the worker were called"
    records = data["records"]
    assert any(r["name"].startswith("shared.") for r in records), "the app's own records were kept"
    http_client = [r for r in records if r["name"].split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")]
    assert [r for r in http_client if r["level"] < logging.WARNING] == []
    logged = "\n".join(r["message"] for r in records if r["level"] >= logging.INFO)
    assert URL_CANARY not in logged
    assert [url for url in endpoints if url in logged] == []

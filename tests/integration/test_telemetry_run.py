"""A task run on an in-process devhost, with the OpenTelemetry SDK's in-memory exporter: the run, LLM and tool spans
carry the attributes operators query (tokens, tool, run id) and no prompt, argument or result content."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.openai_server import FakeChatCompletionsServer, Reply

ROOT = Path(__file__).resolve().parents[2]
SECRET_WORD = "zebra-canary-41"
PLAN = {"action": "plan", "final": True, "plan": {"steps": [
    {"id": "a", "tool": "hash_text", "args": {"text": SECRET_WORD}},
    {"id": "b", "tool": "text_statistics", "args": {"text": SECRET_WORD}}]}}


def _collect(env: dict[str, str], out: Any) -> None:
    """Runs in a fresh process: global tracer provider with an in-memory exporter, devhost in-process."""
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

    host = DevHost(HostOptions(app_dir=ROOT, db=":memory:", serve_http=False, poll_queues=False, run_timers=False))
    host.start()
    try:
        request = {"mode": "task", "task": f"Describe the word {SECRET_WORD}",
                   "tools": ["hash_text", "text_statistics"]}
        status = host.wait_for(host.start_new("run", request), timeout=120)
    finally:
        host.stop()
    spans = [{"name": s.name, "attributes": dict(s.attributes or {}), "trace": s.context.trace_id,
              "parent": s.parent.span_id if s.parent else None} for s in exporter.get_finished_spans()]
    out.put(json.dumps({"status": status, "spans": spans}, default=str))


def _in_fresh_process(target: Callable[[dict[str, str], Any], None], env: dict[str, str]) -> dict[str, Any]:
    """Run ``target(env, queue)`` in a spawned process (fresh logging and telemetry state); return what it sent."""
    context = multiprocessing.get_context("spawn")
    queue: Any = context.Queue()
    proc = context.Process(target=target, args=(env, queue))
    proc.start()
    try:
        return json.loads(queue.get(timeout=180))
    finally:
        proc.join(timeout=30)


def test_task_run_spans(tmp_path) -> None:
    llm = FakeChatCompletionsServer(bearer="key-for-tests", deployments=["p", "w"], path_prefix="/v1")
    llm.start()
    llm.script(Reply.json(PLAN, prompt_tokens=321, completion_tokens=45),
               Reply.text(f"The word {SECRET_WORD} has 15 characters.", prompt_tokens=210, completion_tokens=12))
    env = {"LLM_PROVIDER": "openai_compatible", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "key-for-tests",
           "LLM_PLANNER_DEPLOYMENT": "p", "LLM_WORKER_DEPLOYMENT": "w", "WEFT_STATE_DIR": str(tmp_path),
           "WEFT_PAYLOAD_DIR": str(tmp_path / "payloads"), "AzureWebJobsStorage": ""}
    try:
        data = _in_fresh_process(_collect, env)
    finally:
        llm.stop()
    assert data["status"]["runtimeStatus"] == "Completed"
    assert data["status"]["output"]["status"] == "completed"
    spans = data["spans"]
    by_name: dict[str, list[dict]] = {}
    for span in spans:
        by_name.setdefault(span["name"].split(" ")[0], []).append(span)
    run = [s for s in spans if s["name"] == "weft.run task"]
    assert len(run) == 1 and run[0]["attributes"]["weft.run.status"] == "completed"
    run_id = data["status"]["instanceId"]
    tools = by_name["execute_tool"]
    assert sorted(s["attributes"]["weft.tool.name"] for s in tools) == ["hash_text", "text_statistics"]
    assert all(s["attributes"]["weft.run.id"].startswith(run_id) for s in tools)
    llm_spans = by_name["chat"]
    usage = sorted((s["attributes"]["gen_ai.usage.input_tokens"], s["attributes"]["gen_ai.usage.output_tokens"])
                   for s in llm_spans)
    assert usage == [(210, 12), (321, 45)]
    assert {s["attributes"]["gen_ai.request.model"] for s in llm_spans} == {"p", "w"}
    assert SECRET_WORD not in json.dumps(spans), "no prompt, argument or result content by default"
    assert "key-for-tests" not in json.dumps(spans)


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

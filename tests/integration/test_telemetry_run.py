"""A task run on an in-process devhost, with the OpenTelemetry SDK's in-memory exporter: the run, LLM and tool spans
carry the attributes operators query (tokens, tool, run id) and no prompt, argument or result content."""

from __future__ import annotations

import json
import multiprocessing
import os
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


def test_task_run_spans(tmp_path) -> None:
    llm = FakeChatCompletionsServer(bearer="key-for-tests", deployments=["p", "w"], path_prefix="/v1")
    llm.start()
    llm.script(Reply.json(PLAN, prompt_tokens=321, completion_tokens=45),
               Reply.text(f"The word {SECRET_WORD} has 15 characters.", prompt_tokens=210, completion_tokens=12))
    env = {"LLM_PROVIDER": "openai_compatible", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "key-for-tests",
           "LLM_PLANNER_DEPLOYMENT": "p", "LLM_WORKER_DEPLOYMENT": "w", "WEFT_STATE_DIR": str(tmp_path),
           "WEFT_PAYLOAD_DIR": str(tmp_path / "payloads"), "AzureWebJobsStorage": ""}
    queue: Any = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(target=_collect, args=(env, queue))
    proc.start()
    try:
        data = json.loads(queue.get(timeout=180))
    finally:
        proc.join(timeout=30)
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

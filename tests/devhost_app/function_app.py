"""A v2-model test app exercising every Durable feature the devhost emulates (not part of Weft)."""

import asyncio
import datetime as dt
import json
import threading
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


@app.activity_trigger(input_name="x")
def square(x: int) -> int:
    return x * x


@app.activity_trigger(input_name="job")
def sleep_ms(job: dict) -> int:
    time.sleep(job["ms"] / 1000.0)
    return job.get("value", 0)


@app.activity_trigger(input_name="job")
async def async_sleep_ms(job: dict) -> int:
    await asyncio.sleep(job["ms"] / 1000.0)
    return job.get("value", 0)


@app.activity_trigger(input_name="job")
def flaky(job: dict) -> str:
    """Fails until it has been called ``fail_times`` times for ``key``."""
    with _attempts_lock:
        _attempts[job["key"]] = _attempts.get(job["key"], 0) + 1
        count = _attempts[job["key"]]
    if count <= job["fail_times"]:
        raise RuntimeError(f"boom {job['key']} attempt {count}")
    return f"{job['key']} ok after {count}"


@app.activity_trigger(input_name="path")
def append_line(path: str) -> int:
    """Appends a line to a file: lets a crash test count executions across processes."""
    with open(path, "a") as fh:
        fh.write("x\n")
    return 1


@app.activity_trigger(input_name="x")
def trace_parent(x: int, context: func.Context) -> str:
    """The traceparent the host gave this invocation."""
    return context.trace_context.trace_parent


@app.orchestration_trigger(context_name="context")
def traced(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("trace_parent", 1)
    second = yield context.call_activity("trace_parent", 2)
    return [first, second]


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    a = yield context.call_activity("square", 2)
    context.set_custom_status({"step": 1})
    b = yield context.call_activity("square", a)
    context.set_custom_status({"step": 2})
    c = yield context.call_activity(square, 3)
    return [a, b, c]


@app.orchestration_trigger(context_name="context")
def big_status(context: df.DurableOrchestrationContext):
    context.set_custom_status({"text": "x" * int(context.get_input())})
    return (yield context.call_activity("square", 3))


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    spec = context.get_input() or {}
    n = spec.get("n", 10)
    ms = spec.get("ms", 0)
    if ms:
        name = "async_sleep_ms" if spec.get("async") else "sleep_ms"
        tasks = [context.call_activity(name, {"ms": ms, "value": i}) for i in range(n)]
    else:
        tasks = [context.call_activity("square", i) for i in range(n)]
    results = yield context.task_all(tasks)
    return sum(results)


@app.orchestration_trigger(context_name="context")
def catch_failure(context: df.DurableOrchestrationContext):
    caught = []
    try:
        yield context.call_activity("flaky", {"key": context.instance_id + "-a", "fail_times": 9})
    except Exception as exc:
        caught.append(str(exc).splitlines()[0])
    try:
        yield context.task_all(
            [
                context.call_activity("square", 1),
                context.call_activity("flaky", {"key": context.instance_id + "-b", "fail_times": 9}),
            ]
        )
    except Exception as exc:
        caught.append(str(exc).splitlines()[0])
    return caught


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=spec.get("interval_ms", 10), max_number_of_attempts=spec["attempts"]
    )
    tasks = [
        context.call_activity_with_retry("flaky", options, {"key": f"{context.instance_id}-{i}", "fail_times": f})
        for i, f in enumerate(spec["fail_times"])
    ]
    tasks += [context.call_activity("square", i) for i in range(spec.get("plain", 0))]
    try:
        results = yield context.task_all(tasks)
    except Exception as exc:
        return {"error": str(exc).splitlines()[0]}
    return results


@app.orchestration_trigger(context_name="context")
def timer_then_value(context: df.DurableOrchestrationContext):
    fire_at = context.current_utc_datetime + dt.timedelta(seconds=context.get_input() or 1)
    yield context.create_timer(fire_at)
    return "fired"


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Waits for 'Approve' with a timeout: the task_any timeout pattern."""
    timeout_s = context.get_input() or 5
    deadline = context.current_utc_datetime + dt.timedelta(seconds=timeout_s)
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("Approve")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return {"approved": event.result}
    return {"approved": None, "timed_out": True}


@app.orchestration_trigger(context_name="context")
def two_events(context: df.DurableOrchestrationContext):
    first = yield context.wait_for_external_event("First")
    second = yield context.wait_for_external_event("Second")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    ok = yield context.call_sub_orchestrator("sequence", None, f"{context.instance_id}-child")
    try:
        yield context.call_sub_orchestrator("crashes", "child failure")
        crashed = None
    except Exception as exc:
        crashed = str(exc).splitlines()[0]
    return {"child": ok, "crashed": crashed}


@app.orchestration_trigger(context_name="context")
def crashes(context: df.DurableOrchestrationContext):
    message = context.get_input() or "orchestrator blew up"
    yield context.call_activity("square", 1)
    raise ValueError(message)


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    state = context.get_input() or {"i": 0, "limit": 5}
    yield context.call_activity("square", state["i"])
    if state["i"] + 1 < state["limit"]:
        context.continue_as_new({"i": state["i"] + 1, "limit": state["limit"]})
        return None
    return {"done": state["i"] + 1}


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext):
    # Takes a different branch on replay, as code reading the wall clock would: the devhost must detect it.
    name = "sleep_ms" if context.is_replaying else "square"
    yield context.call_activity(name, 1 if name == "square" else {"ms": 1})
    yield context.call_activity("square", 2)
    return "unreachable when detected"


@app.orchestration_trigger(context_name="context")
def slow_steps(context: df.DurableOrchestrationContext):
    """Activities that append to a file and sleep: for the crash-recovery test."""
    spec = context.get_input()
    results = yield context.task_all(
        [context.call_activity("sleep_ms", {"ms": spec["ms"], "value": i}) for i in range(spec["n"])]
    )
    yield context.call_activity("append_line", spec["path"])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def uses_entity(context: df.DurableOrchestrationContext):
    entity = df.EntityId("Counter", "c1")
    yield context.call_entity(entity, "add", 1)
    return "no"


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["name"], None, payload)
    return client.create_check_status_response(req, instance_id)


@app.route(route="startwait/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start_wait(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json() if req.get_body() else None)
    return await client.wait_for_completion_or_create_check_status_response(req, instance_id, 20000, 50)


@app.route(route="echo/{id:int}/{*rest}", methods=["GET", "PUT"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(
            {
                "method": req.method,
                "route": dict(req.route_params),
                "query": dict(req.params),
                "header": req.headers.get("x-test"),
                "body": req.get_body().decode(),
            }
        ),
        status_code=201 if req.method == "PUT" else 200,
        mimetype="application/json",
        headers={"x-echo": "yes"},
    )


@app.route(route="trace", methods=["GET"])
def trace(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"traceparent": context.trace_context.trace_parent,
                                         "tracestate": context.trace_context.trace_state}), mimetype="application/json")


@app.route(route="teapot", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def teapot(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("short and stout", status_code=418)


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("handler bug")


@app.queue_trigger(arg_name="msg", queue_name="devhost-jobs", connection="AzureWebJobsStorage")
@app.durable_client_input(client_name="client")
async def queue_start(msg: func.QueueMessage, client) -> None:
    payload = json.loads(msg.get_body())  # raises on a malformed message: the message is retried, then poisoned
    await client.start_new("fan_out", payload.get("id"), payload)


@app.route(route="enqueue", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="devhost-jobs", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse(status_code=202)


@app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    """Appends a line per tick when DEVHOST_TEST_TICK_FILE is set (the timer-trigger test)."""
    import os

    path = os.environ.get("DEVHOST_TEST_TICK_FILE")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{timer.past_due}\n")


# ---- MCP triggers: served by the devhost at /runtime/webhooks/mcp like the MCP extension ----------------------------
@app.mcp_tool()
@app.mcp_tool_property(arg_name="text", description="The text to send back.")
def echo_text(text: str) -> str:
    """Returns the text it was given."""
    return text


@app.mcp_tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    return str(a + b)


@app.mcp_tool()
async def slow(ms: int) -> str:
    """Sleeps for ms milliseconds, then answers."""
    await asyncio.sleep(ms / 1000.0)
    return f"slept {ms}"


@app.mcp_tool()
def fails(reason: str) -> str:
    """Always raises."""
    raise RuntimeError(f"tool failure: {reason}")


@app.mcp_tool_trigger(
    arg_name="context",
    tool_name="whoami",
    description="The trigger payload the host sent: the bearer token, the session id and the arguments.",
    tool_properties=json.dumps([{"propertyName": "note", "propertyType": "string", "description": "anything",
                                 "isRequired": False, "isArray": False}]),
)
def whoami(context: str) -> str:
    payload = json.loads(context)
    headers = {k.lower(): v for k, v in payload["transport"]["properties"]["headers"].items()}
    return json.dumps({"authorization": headers.get("authorization"), "sessionid": payload.get("sessionid"),
                       "arguments": payload["arguments"], "name": payload["name"],
                       "transport": payload["transport"]["name"], "has_key_header": "x-functions-key" in headers})


@app.mcp_resource_trigger(arg_name="context", uri="devhost://readme", resource_name="readme",
                          description="A fixed text resource.", mime_type="text/plain")
def readme(context: str) -> str:
    return "devhost test app: " + json.loads(context)["uri"]


@app.mcp_prompt_trigger(arg_name="context", prompt_name="greet", description="Greets someone.",
                        prompt_arguments=[func.PromptArgument("name", "Who to greet.", required=True)])
def greet(context) -> str:
    return f"Say hello to {context.arguments.get('name', 'nobody')}."

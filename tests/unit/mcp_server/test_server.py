"""The MCP tools over a real runtime (demo catalog, SQLite run index and audit) and an in-memory Durable client: runs
are submitted through the admission path for their caller, waits end on a result, an approval or the deadline,
another caller's run is not found, large outputs are paged."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as Status

from shared.errors import Conflict, Forbidden, InvalidRequest, NotFound, RateLimited, UpstreamUnavailable
from shared.identity.caller import LOCAL_CALLER, Caller, Role
from shared.mcp_server import McpCall, McpServer, McpSettings, present
from shared.runs.admission import Submitted, admit_and_submit
from shared.runs.call_journal import journal_for
from shared.runtime import Runtime, RuntimeSettings, build_runtime


@dataclass
class Instance:
    runtime_status: Status | None = Status.Running
    custom_status: Any = None
    output: Any = None
    input: Any = None
    created_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_updated_time: datetime = field(default_factory=lambda: datetime.now(UTC))


class FakeDurable:
    """Orchestrations in memory: started Running; the test finishes them."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.started: asyncio.Event | None = None

    async def start_new(self, orchestration_function_name: str, instance_id: str | None = None,
                        client_input: Any | None = None) -> str:
        assert instance_id is not None and instance_id not in self.instances
        self.instances[instance_id] = Instance(input=client_input)
        if self.started is not None:
            self.started.set()
        return instance_id

    async def get_status(self, instance_id: str, show_history: bool = False, show_history_output: bool = False,
                         show_input: bool = False) -> Instance:
        return self.instances.get(instance_id) or Instance(runtime_status=None)

    async def terminate(self, instance_id: str, reason: str) -> None:
        self.instances[instance_id].runtime_status = Status.Terminated
        self.instances[instance_id].output = reason

    def finish(self, instance_id: str, output: Any, steps: int = 1) -> None:
        records = [{"step_id": f"c{i + 1}", "tool": "calculate", "status": "succeeded"} for i in range(steps)]
        self.instances[instance_id].runtime_status = Status.Completed
        self.instances[instance_id].output = {"run_id": instance_id, "mode": "code", "status": "completed",
                                              "steps": records, "output": output, "errors": []}


def user(name: str, *roles: Role) -> Caller:
    return Caller(tenant_id="t1", object_id=name, name=name, roles=frozenset(r.value for r in roles), kind="user")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    state: Path = tmp_path_factory.mktemp("mcp-unit")
    return build_runtime(RuntimeSettings.from_env({"WEFT_STATE_DIR": str(state),
                                                   "WEFT_PAYLOAD_DIR": str(state / "payloads")}))


def server(runtime: Runtime, durable: FakeDurable, **settings: Any) -> McpServer:
    return McpServer(runtime, durable, McpSettings(**{"wait_s": 0.3, "poll_interval_s": 0.02, **settings}))


def test_execute_submits_a_code_run_for_its_caller_and_answers_with_a_handle(runtime: Runtime) -> None:
    durable = FakeDurable()
    alice = user("alice", Role.RUNS_SUBMIT)
    answer = asyncio.run(server(runtime, durable).execute(alice, {"code": "result = 1", "tools": ["calculate"]}))
    run_id = answer["run_id"]
    assert answer["status"] == "running" and answer["next"] == f"get_run(run_id={run_id!r}, wait_s=30)"
    assert durable.instances[run_id].input["mode"] == "code"
    assert durable.instances[run_id].input["tools"] == ["calculate"]
    entry = runtime.run_index.get(run_id)
    assert entry is not None and entry.owner == alice.key and entry.via == "mcp"


def test_the_wait_ends_when_the_run_does(runtime: Runtime) -> None:
    durable = FakeDurable()
    mcp = server(runtime, durable, wait_s=10.0)

    async def scenario() -> dict[str, Any]:
        durable.started = asyncio.Event()
        task = asyncio.create_task(mcp.execute(LOCAL_CALLER, {"code": "result = 2"}))
        await asyncio.wait_for(durable.started.wait(), 5)
        durable.finish(next(iter(durable.instances)), {"result": 2, "stdout": ""}, steps=3)
        return await asyncio.wait_for(task, 5)

    answer = asyncio.run(scenario())
    assert answer["status"] == "completed" and answer["output"] == {"result": 2, "stdout": ""}
    assert answer["steps"] == {"total": 3, "failed": []}


def test_another_callers_run_is_not_found_unless_it_reads_all(runtime: Runtime) -> None:
    durable = FakeDurable()
    mcp = server(runtime, durable)
    alice, bob, olga = user("alice", Role.RUNS_SUBMIT), user("bob", Role.RUNS_SUBMIT), user("olga",
                                                                                             Role.RUNS_READ_ALL)
    run_id = asyncio.run(mcp.execute(alice, {"code": "result = 3"}))["run_id"]
    durable.finish(run_id, {"result": 3})
    for call in (mcp.get_run(bob, {"run_id": run_id}), mcp.cancel_run(bob, {"run_id": run_id})):
        with pytest.raises(NotFound) as caught:
            asyncio.run(call)
        assert caught.value.field == "run_id"
    assert asyncio.run(mcp.get_run(olga, {"run_id": run_id}))["output"] == {"result": 3}
    assert asyncio.run(mcp.get_run(alice, {"run_id": run_id}))["status"] == "completed"


def test_cancel_marks_the_run_in_its_call_journal_before_terminating_it(runtime: Runtime) -> None:
    marked_at_terminate: list[bool] = []

    class Recording(FakeDurable):
        async def terminate(self, instance_id: str, reason: str) -> None:
            marked_at_terminate.append(journal_for(runtime.payloads).canceled(instance_id))
            await super().terminate(instance_id, reason)

    durable = Recording()
    mcp = server(runtime, durable)
    alice = user("alice", Role.RUNS_SUBMIT)
    run_id = asyncio.run(mcp.execute(alice, {"code": "result = 5"}))["run_id"]
    journal = journal_for(runtime.payloads)
    assert not journal.canceled(run_id)
    assert asyncio.run(mcp.cancel_run(alice, {"run_id": run_id})) == {"run_id": run_id, "status": "canceling"}
    assert journal.canceled(run_id) and durable.instances[run_id].runtime_status is Status.Terminated
    assert marked_at_terminate == [True]  # the mark was there before the terminate
    with pytest.raises(Conflict):  # finished now
        asyncio.run(mcp.cancel_run(alice, {"run_id": run_id}))


def test_a_run_purged_by_another_instance_is_not_found_although_its_entry_was_cached(runtime: Runtime) -> None:
    durable = FakeDurable()
    mcp = server(runtime, durable, wait_s=0.0)
    alice = user("alice", Role.RUNS_SUBMIT)
    run_id = asyncio.run(mcp.execute(alice, {"code": "result = 4"}))["run_id"]
    assert runtime.run_index.cached(run_id) is not None
    runtime.run_index.inner.remove(run_id)  # type: ignore[attr-defined]  # retention elsewhere: this cache kept it
    del durable.instances[run_id]
    for call in (mcp.get_run(alice, {"run_id": run_id}), mcp.cancel_run(alice, {"run_id": run_id})):
        with pytest.raises(NotFound) as caught:
            asyncio.run(call)
        assert caught.value.field == "run_id"
    assert runtime.run_index.cached(run_id) is None


def test_an_approval_ends_the_wait_and_says_what_awaits_it() -> None:
    view = {"id": "run-9", "status": "running", "stage": "awaiting_approval", "progress": None}
    custom = {"stage": "awaiting_approval", "tools": ["send_email"], "expires_at": "2026-01-01T00:00:00+00:00"}
    body = present(view, custom, 0, 1024)
    assert body["awaiting_approval"]["tools"] == ["send_email"]
    assert body["awaiting_approval"]["expires_at"] == "2026-01-01T00:00:00+00:00"
    assert "/api/runs/run-9/approve" in body["awaiting_approval"]["how"]


def test_large_outputs_are_paged_and_failed_steps_listed() -> None:
    output = {"text": "é" * 3000}
    steps = [{"step_id": "c1", "tool": "a", "status": "succeeded"},
             {"step_id": "c2", "tool": "b", "status": "failed", "error": {"code": "tool_failed", "message": "x"}}]
    view = {"id": "run-1", "status": "completed_with_errors", "result": {"steps": steps, "output": output},
            "errors": [{"code": "step_failed", "message": "c2 failed", "field": None}]}
    pages, offset = [], 0
    while True:
        page = present(view, {}, offset, 1024)["output_page"]
        pages.append(page["text"])
        if page["next_offset"] is None:
            break
        offset = page["next_offset"]
    assert len(pages) == 3 and json.loads("".join(pages)) == output
    first = present(view, {}, 0, 1024)
    assert first["steps"] == {"total": 2, "failed": [{"step_id": "c2", "tool": "b",
                                                       "error": {"code": "tool_failed", "message": "x"}}]}
    assert first["errors"][0]["code"] == "step_failed"


@pytest.mark.parametrize(("tool", "arguments", "field"), [
    ("execute", {}, "code"),
    ("execute", {"code": "result = 1", "extra": 1}, "extra"),
    ("execute", {"code": "result = 1", "tools": "nope_tool"}, "tools"),
    ("run_plan", {"plan": "not json"}, "plan"),
    ("run_plan", {"plan": [1]}, "plan"),
    ("get_run", {"run_id": "run-x", "wait_s": 1000}, "wait_s"),
    ("get_run", {"run_id": "run-x", "offset": -1}, "offset"),
    ("get_run", {"run_id": 5}, "run_id"),
    ("describe_tools", {"names": []}, "names"),
    ("describe_tools", {"names": ["a"] * 21}, "names"),
    ("search_tools", {"query": " "}, "query"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_arguments_are_error_results_naming_the_argument(runtime: Runtime, tool: str,
                                                             arguments: dict[str, Any], field: str) -> None:
    answer = asyncio.run(server(runtime, FakeDurable()).answer(tool, McpCall(tool, arguments, {})))
    assert answer.is_error and answer.body["field"] == field, answer.body


def test_describe_accepts_the_python_names_code_calls(runtime: Runtime) -> None:
    answer = asyncio.run(server(runtime, FakeDurable()).describe_tools(LOCAL_CALLER, {"names": "calculate, nope"}))
    assert [t["name"] for t in answer["tools"]] == ["calculate"] and answer["unknown"] == ["nope"]


def test_a_retry_is_answered_with_its_run_although_admission_would_refuse_it_now(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """``admit_and_submit``, the path of HTTP, queue and MCP submissions (MCP resolves a retry's tool names first)."""
    state: Path = tmp_path_factory.mktemp("retry")
    paths = {"WEFT_STATE_DIR": str(state), "WEFT_PAYLOAD_DIR": str(state / "payloads")}
    before = build_runtime(RuntimeSettings.from_env(paths))
    after = build_runtime(RuntimeSettings.from_env({**paths, "WEFT_DEMO_TOOLS": "false"}))  # calculate is gone
    durable = FakeDurable()
    alice = user("alice", Role.RUNS_SUBMIT)
    body = {"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1+1"}}]}}

    def submit(runtime: Runtime, caller: Caller, request: dict[str, Any], key: str | None) -> tuple[str, bool, str]:
        submitted, mode = asyncio.run(admit_and_submit(dict(request), runtime, caller, durable,
                                                       idempotency_key=key, via="http"))
        return submitted.run_id, submitted.replayed, mode

    run_id, replayed, mode = submit(before, alice, body, "retry-1")
    assert not replayed and mode == "plan"
    assert submit(after, alice, body, "retry-1") == (run_id, True, "plan")  # the client's retry, elsewhere
    assert len(durable.instances) == 1
    changed = {"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "2"}}]}}
    for caller, request, key in ((alice, body, "retry-2"), (alice, body, None), (alice, changed, "retry-1"),
                                 (user("bob", Role.RUNS_SUBMIT), body, "retry-1")):
        with pytest.raises(InvalidRequest):  # a new key, no key, another body, another caller: admitted afresh
            submit(after, caller, request, key)
    with pytest.raises(Forbidden):  # the replay path asks for Runs.Submit as the admission path does
        submit(after, user("alice"), body, "retry-1")


def test_a_cancel_whose_terminate_fails_is_marked_audited_and_answered_503(runtime: Runtime) -> None:
    class Unreachable(FakeDurable):
        async def terminate(self, instance_id: str, reason: str) -> None:
            raise ConnectionError("durable is down")

    durable = Unreachable()
    mcp = server(runtime, durable)
    alice = user("alice", Role.RUNS_SUBMIT)
    run_id = asyncio.run(mcp.execute(alice, {"code": "result = 6"}))["run_id"]
    with pytest.raises(UpstreamUnavailable) as caught:
        asyncio.run(mcp.cancel_run(alice, {"run_id": run_id}))
    assert caught.value.field == "run_id" and "cancel it again" in caught.value.message
    assert journal_for(runtime.payloads).canceled(run_id)
    records = [r for r in runtime.trust.audit.query(run_id=run_id, since=datetime(2000, 1, 1, tzinfo=UTC))
               if r.action == "run.cancel"]
    failed = ("error", "marked canceled; terminate failed (ConnectionError)")
    assert [(r.outcome, r.detail) for r in records] == [failed]


def test_a_cancel_whose_mark_cannot_be_written_stops_nothing_and_is_answered_503(runtime: Runtime) -> None:
    durable = FakeDurable()
    mcp = server(runtime, durable)
    alice = user("alice", Role.RUNS_SUBMIT)
    run_id = asyncio.run(mcp.execute(alice, {"code": "result = 7"}))["run_id"]
    blocked = Path(runtime.settings.payloads.local_dir) / "journal" / run_id
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the run's journal folder goes: the mark cannot be written")
    with pytest.raises(UpstreamUnavailable) as caught:
        asyncio.run(mcp.cancel_run(alice, {"run_id": run_id}))
    assert "nothing was stopped" in caught.value.message and caught.value.field == "run_id"
    assert durable.instances[run_id].runtime_status is Status.Running  # not terminated
    records = [r for r in runtime.trust.audit.query(run_id=run_id, since=datetime(2000, 1, 1, tzinfo=UTC))
               if r.action == "run.cancel"]
    assert [r.outcome for r in records] == ["error"] and records[0].detail.startswith("not marked canceled (")


def test_a_retry_takes_no_concurrent_run_slot(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A retry is answered with its run before admission: with its own run finished and the caller's only slot
    taken by another run, it is neither refused (429) nor given a slot for a run that is over."""
    state: Path = tmp_path_factory.mktemp("retry-slot")
    runtime = build_runtime(RuntimeSettings.from_env({"WEFT_STATE_DIR": str(state),
                                                      "WEFT_PAYLOAD_DIR": str(state / "payloads"),
                                                      "WEFT_QUOTA_MAX_CONCURRENT_RUNS": "1"}))
    quotas = runtime.trust.quotas
    assert quotas is not None
    durable = FakeDurable()
    alice = user("alice", Role.RUNS_SUBMIT)
    body = {"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1+1"}}]},
            "idempotency_key": "slot-1"}

    def submit(request: dict[str, Any]) -> Submitted:
        return asyncio.run(admit_and_submit(dict(request), runtime, alice, durable, idempotency_key=None,
                                            via="http"))[0]

    first = submit(body)
    durable.finish(first.run_id, 2)
    other = submit({**body, "idempotency_key": "slot-2"})  # frees the finished run's slot, takes the only one
    assert quotas.running(alice.key) == [other.run_id]
    assert submit(body) == Submitted(first.run_id, replayed=True)
    assert quotas.running(alice.key) == [other.run_id]
    with pytest.raises(RateLimited):  # a new run is still refused
        submit({**body, "idempotency_key": "slot-3"})

"""The ``run`` orchestrator: one entry for every mode; plan mode starts each step as soon as its inputs are ready.

A long plan goes on in ``continue_as_new`` generations of a bounded number of calls (``WEFT_PLAN_CHECKPOINT_CALLS``)
so every replay stays short; the run id, the status shown and the result are the same as for one generation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState

from orchestrations.code_mode import run_code_mode
from orchestrations.durable import retry_options
from orchestrations.fan_out import Flight
from orchestrations.task_mode import run_task_mode
from shared.errors import ApprovalDenied, ApprovalTimeout, RunTimedOut
from shared.models import ErrorInfo, RunRequest, RunResult, ToolResult, ToolSpec
from shared.runs.approval import approve, pending_approvals
from shared.runs.contracts import (
    STEP_RECORDS_RETRY,
    ApprovalDecision,
    ArchivedStepRecords,
    FinishedRun,
    PlanAdvance,
    PlanFinish,
    PlanProgress,
    PlanProgressRefs,
    PlanWindow,
    PreparedPlan,
    StepRecordsArchive,
)
from shared.runs.custom_status import AWAITING_SHOWN, CustomStatus, PendingApproval
from shared.runs.names import APPROVAL_EVENT, CHECKPOINT_KEY, PREPARED_KEY, Activity, Stage
from shared.runs.plan import PlanGraph, check_plan
from shared.runs.plan_fold import fold
from shared.runs.plan_run import PlanRun
from shared.runs.step_calls import StepCall, StepOutcome
from shared.telemetry import telemetry_from_env

bp = df.Blueprint()



@bp.orchestration_trigger(context_name="context")
def run(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any] | None]:
    """Input: a :class:`RunRequest` (validated by the trigger), with a plan run's :class:`PreparedPlan` under
    ``plan_prepared`` when a trigger started it, or its checkpoint under ``plan_checkpoint`` in a continued
    generation. Output: a :class:`RunResult`."""
    otel = telemetry_from_env().orchestration(context)  # configures this process's telemetry on first use
    parsed = _parsed_input(context)
    request, carried = parsed.request, parsed.carried
    started = dt.datetime.fromisoformat(carried["started"]) if carried else context.current_utc_datetime
    result: RunResult | FinishedRun | None
    if request.mode == "plan":
        result = yield from run_plan(context, parsed)
        if result is None:  # continued as new
            return None
    elif request.mode == "code":
        result = yield from run_code_mode(context, request)
    else:
        result = yield from run_task_mode(context, request)
    finished = result if isinstance(result, FinishedRun) else FinishedRun.of(result)
    if context.parent_instance_id is None:  # sub-runs of a task are counted in their task's run
        otel.run_finished(
            request.mode, finished.status.value, started_at=started, finished_at=context.current_utc_datetime)
    context.set_custom_status(CustomStatus(
        stage=Stage.DONE, status=finished.status.value, done=finished.done, total=finished.total,
        failed=finished.failed, skipped=finished.skipped, elapsed_ms=finished.elapsed_ms).dump())
    return finished.result


def run_plan(context: df.DurableOrchestrationContext, parsed: _Input,
             ) -> Generator[Any, Any, RunResult | FinishedRun | None]:
    """Run ``request.plan``: every step is dispatched as soon as its own dependencies have finished.

    Kept from level-by-level execution: ``options.max_parallel`` (calls in flight), ``fail_fast``, skipping what
    depends on a failed step, per-call approvals (a call awaiting one holds back nothing else; a refusal stops the
    run once the calls in flight have finished), ``options.timeout_s`` (calls in flight at the deadline are
    abandoned as ``timed_out``) and sub-orchestrations for wide fan-outs. The custom status shows each step as it
    finishes. Once a generation has made ``checkpoint_calls`` calls it starts no more, lets the calls in flight
    finish and continues as new with its state and the request as received, or only the next window of a long plan
    (:func:`_go_on`); None is returned then.
    """
    request, carried = parsed.request, parsed.carried
    assert request.plan is not None
    if carried is None:
        started = context.current_utc_datetime
        generation = 0
        if parsed.prepared_at_start is not None:  # the trigger prepared it (runs it starts itself)
            prepared = parsed.prepared_at_start
        else:  # a task's sub-run, or a run started before triggers prepared plans
            context.set_custom_status(CustomStatus(stage=Stage.VALIDATING, mode="plan").dump())
            prepared = PreparedPlan.model_validate((yield context.call_activity(
                Activity.PREPARE_PLAN, request.plan.model_dump(mode="json"))))
        state = None
    else:
        started = dt.datetime.fromisoformat(carried["started"])
        generation = int(carried["generation"])
        prepared = parsed.prepared()
        state = carried["state"]
    window: dict[str, str] | None = carried.get("window") if carried else None
    if window is None:
        graph = _run_graph(parsed, prepared.specs, (context.instance_id, started.isoformat()))
    else:  # each generation's window is another plan
        graph = parsed.graph(prepared.specs)
    progress = PlanRun(context.instance_id, request.plan, prepared.specs, request.options, started,
                       graph=graph, state=state)
    if graph is None:
        return progress.result(context.current_utc_datetime)
    timeout_s = request.options.timeout_s
    deadline = started + dt.timedelta(seconds=timeout_s) if timeout_s is not None else None
    timer = context.create_timer(deadline) if deadline is not None else None
    flight = Flight(context, prepared.max_fan_out, f"{context.instance_id}:steps{generation}")
    gate = _Approvals(context, prepared.specs, prepared.approval_timeout_s)
    limit = request.options.max_parallel
    stop: ErrorInfo | None = None
    expired = folded = False
    while True:
        now = context.current_utc_datetime
        progress.record(flight.settle(), now)
        refused = gate.settle(now)
        if refused:
            progress.record(refused, now)
            stop = stop or refused[0].result.error or ErrorInfo.of(ApprovalDenied, "not approved")
            gate.drop()
        if timer is not None and timer.state == TaskState.SUCCEEDED:
            progress.record(flight.abandon(deadline) + gate.abandon(deadline), now)
            progress.expire(now)
            timer = None
            expired = True
            break
        if stop is None:
            _dispatch(progress, flight, gate, limit, prepared.checkpoint_calls, now)
        if flight.count == 0 and not gate.busy:
            if stop is None and (progress.has_ready or progress.outside_pending):  # go on afresh
                if timer is not None:
                    timer.cancel()
                    timer = None
                refs = yield from _go_on(context, parsed, progress, prepared, started, generation, window, now)
                if refs is None:
                    return None
                window, folded = refs, True  # skipping what could not run finished the plan
            break
        context.set_custom_status(progress.status_dump(now, **gate.status()))
        yield flight.wait(timer, *gate.tasks())
    if timer is not None:
        timer.cancel()
    gate.close()
    if window is not None:
        last = PlanFinish(
            run_id=context.instance_id, started=started.isoformat(), now=context.current_utc_datetime.isoformat(),
            options=request.options, specs=prepared.specs, plan_ref=window["plan"], progress_ref=window["progress"],
            part=None if folded else progress.checkpoint(), awaiting=progress.started_records(), stop=stop,
            expired=expired)
        if prepared.finish_plan:  # folded where the whole plan and the progress are stored: no work here in their size
            return FinishedRun.model_validate((yield context.call_activity_with_retry(
                Activity.FINISH_PLAN, retry_options(STEP_RECORDS_RETRY), last.dump())))
        # A run prepared by an earlier version: its history may hold this call (drop it as docs/operations.md says)
        stored = PlanProgress.model_validate((yield context.call_activity_with_retry(
            Activity.LOAD_PLAN_PROGRESS, retry_options(STEP_RECORDS_RETRY), PlanProgressRefs(
                run_id=context.instance_id, plan_ref=window["plan"], progress_ref=window["progress"]).dump())))
        progress = fold(last, stored.plan, stored.state)
    if progress.archives:  # read back once what earlier generations finished: the result lists every step
        progress.restore_archived((yield context.call_activity_with_retry(
            Activity.LOAD_STEP_RECORDS, retry_options(STEP_RECORDS_RETRY), ArchivedStepRecords(
                run_id=context.instance_id, refs=progress.archives).dump())))
    now = context.current_utc_datetime
    return progress.stopped(stop, now) if stop is not None else progress.result(now)


def _go_on(context: df.DurableOrchestrationContext, parsed: _Input, progress: PlanRun, prepared: PreparedPlan,
           started: dt.datetime, generation: int, window: dict[str, str] | None, now: dt.datetime,
           ) -> Generator[Any, Any, dict[str, str] | None]:
    """Continue as new with the whole plan and the state, or, for a plan longer than ``prepared.window_steps``, with
    the next window (:mod:`shared.runs.plan_window`); None then. The references of the stored plan and progress when
    choosing the next window skipped every step left."""
    request = parsed.request
    assert request.plan is not None
    raw = parsed.raw or request.model_dump(mode="json")
    carried = {"started": started.isoformat(), "generation": generation + 1, "prepared": prepared.dump()}
    if window is None and not 0 < prepared.window_steps < len(request.plan.steps):
        archive = yield context.call_activity_with_retry(
            Activity.ARCHIVE_STEP_RECORDS, retry_options(STEP_RECORDS_RETRY), StepRecordsArchive(
                run_id=context.instance_id, records=progress.unarchived_records()).dump())
        context.continue_as_new({**raw, CHECKPOINT_KEY: {**carried, "state": progress.checkpoint(archive)}})
        return None
    advanced = PlanWindow.model_validate((yield context.call_activity_with_retry(
        Activity.ADVANCE_PLAN, retry_options(STEP_RECORDS_RETRY), PlanAdvance(
            run_id=context.instance_id, started=started.isoformat(), now=now.isoformat(), options=request.options,
            specs=prepared.specs, window_steps=prepared.window_steps, plan=None if window else request.plan,
            plan_ref=window["plan"] if window else None, progress_ref=window["progress"] if window else None,
            part=progress.checkpoint()).dump())))
    refs = {"plan": advanced.plan_ref, "progress": advanced.progress_ref}
    if advanced.steps is None:
        return refs
    context.continue_as_new({**raw, "plan": {**raw["plan"], "steps": advanced.steps},
                             CHECKPOINT_KEY: {**carried, "state": advanced.state, "window": refs}})
    return None


def _dispatch(progress: PlanRun, flight: Flight, gate: _Approvals, limit: int | None, checkpoint_calls: int,
              now: dt.datetime) -> None:
    """Start what may start: approved calls first, then ready steps, within ``limit`` calls in flight and the
    generation's ``checkpoint_calls``."""
    room = None if limit is None else max(0, limit - flight.count)
    calls = gate.take_approved(room)
    if room is not None:
        room -= len(calls)
    while progress.has_ready and (room is None or room > 0) and progress.calls_made < checkpoint_calls:
        runnable = gate.hold(progress.take_ready(now, room), now)  # all that is ready: a wide batch goes out whole
        calls += runnable
        if room is not None:
            room -= len(runnable)
    if calls:
        progress.mark_started(calls, now)
        flight.start(calls)


class _Approvals:
    """Calls of ``requires_approval`` tools waiting for a human (``approval`` events, ``POST .../approve``), each
    with its own timeout, while the rest of the plan runs on. One event may decide some (``call_ids``) or all."""

    def __init__(self, context: df.DurableOrchestrationContext, specs: dict[str, ToolSpec], timeout_s: int) -> None:
        self.context = context
        self.specs = specs
        self.timeout_s = timeout_s
        self.waiting: dict[str, tuple[StepCall, PendingApproval, dt.datetime]] = {}
        self.approved: list[StepCall] = []
        self.event: TaskBase | None = None
        self.timers: dict[dt.datetime, TaskBase] = {}

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.approved)

    def hold(self, calls: list[StepCall], now: dt.datetime) -> list[StepCall]:
        """The calls that may run now; the others wait for their approval."""
        pending = {p.call_id: p for p in pending_approvals(calls, self.specs)}
        if not pending:
            return calls
        expires = now + dt.timedelta(seconds=self.timeout_s)
        for call in calls:
            if call.call.step_id in pending:
                self.waiting[call.call.step_id] = (call, pending[call.call.step_id], expires)
        if expires not in self.timers:
            self.timers[expires] = self.context.create_timer(expires)
        return [call for call in calls if call.call.step_id not in pending]

    def take_approved(self, room: int | None) -> list[StepCall]:
        taken = self.approved if room is None else self.approved[:room]
        self.approved = self.approved[len(taken):]
        return taken

    def tasks(self) -> list[TaskBase]:
        """What to wait for besides the calls: the next decision and the timeouts."""
        if not self.waiting:
            return []
        if self.event is None:
            self.event = self.context.wait_for_external_event(APPROVAL_EVENT)
        return [self.event, *self.timers.values()]

    def settle(self, now: dt.datetime) -> list[StepOutcome]:
        """Apply the decision that arrived and the timeouts that passed; the refused calls' outcomes."""
        refused: dict[str, ErrorInfo] = {}
        if self.event is not None and self.event.state != TaskState.RUNNING:
            result = self.event.result
            self.event = None
            decision = ApprovalDecision.model_validate(result) if isinstance(result, dict) else ApprovalDecision()
            for call_id in [call_id for call_id, (_, pending, _) in self.waiting.items() if decision.decides(pending)]:
                call, pending, _ = self.waiting.pop(call_id)
                if decision.approved:
                    approval = approve(pending, decision, now.isoformat())
                    self.approved.append(call.model_copy(update={"approval": approval}))
                else:
                    reason = decision.reason or "no reason given"
                    refused[call_id] = ErrorInfo.of(
                        ApprovalDenied, f"this call of {pending.tool} was denied: {reason}", field="approval")
        for expires, timer in list(self.timers.items()):
            expired = [call_id for call_id, (_, _, at) in self.waiting.items() if at == expires]
            if timer.state == TaskState.RUNNING and expired:
                continue
            del self.timers[expires]
            if timer.state == TaskState.RUNNING:
                timer.cancel()
            for call_id in expired:
                _, pending, _ = self.waiting.pop(call_id)
                refused[call_id] = ErrorInfo.of(
                    ApprovalTimeout, f"nobody approved this call of {pending.tool} within {self.timeout_s} s",
                    field="approval")
        return [StepOutcome(step_id=call_id, result=ToolResult(ok=False, error=error), attempts=0)
                for call_id, error in refused.items()]

    def status(self) -> dict[str, Any]:
        """The custom status fields of the calls awaiting approval (none when nothing waits)."""
        if not self.waiting:
            return {}
        awaiting = [pending for _, pending, _ in self.waiting.values()]
        return {"stage": Stage.AWAITING_APPROVAL.value, "tools": sorted({p.tool for p in awaiting}),
                "awaiting": [p.dump() for p in awaiting[:AWAITING_SHOWN]],
                **({"awaiting_more": len(awaiting) - AWAITING_SHOWN} if len(awaiting) > AWAITING_SHOWN else {}),
                "expires_at": min(at for _, _, at in self.waiting.values()).isoformat()}

    def drop(self) -> None:
        """The run stops: calls approved but not started are not started, those still awaiting are not asked for
        any more (the run's result skips them)."""
        self.approved = []
        self.close()

    def abandon(self, deadline: dt.datetime | None) -> list[StepOutcome]:
        """The run's deadline passed: the calls awaiting approval, or approved and not started, never run."""
        error = ErrorInfo.of(RunTimedOut, "not run: the run's deadline (options.timeout_s) passed at "
                             f"{deadline.isoformat() if deadline else 'its deadline'} before it could start")
        calls = [call for call, _, _ in self.waiting.values()] + self.approved
        self.waiting, self.approved = {}, []
        return [StepOutcome(step_id=call.call.step_id, result=ToolResult(ok=False, error=error), attempts=0)
                for call in calls]

    def close(self) -> None:
        for timer in self.timers.values():
            if timer.state == TaskState.RUNNING:
                timer.cancel()
        self.timers = {}
        self.waiting = {}


# ------------------------------------------------------------------------------------------------- parse cache
# Validating a large request and building its graph are pure functions of the input, yet every replay of every
# episode would redo them (O(steps) each time, most of a long chain's cost): one process keeps the latest few.

_CACHE: OrderedDict[str, _Input] = OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()
# A run's plan is the same in every continue-as-new generation, though each generation's input text differs: its
# graph is kept by run (instance id and start time, which a reused instance id does not share) and tool names.
_GRAPHS: OrderedDict[tuple[str, ...], PlanGraph | None] = OrderedDict()
_LATEST: OrderedDict[str, str] = OrderedDict()  # instance id -> its latest input text in _CACHE


def _run_graph(parsed: _Input, specs: dict[str, ToolSpec], run: tuple[str, str]) -> PlanGraph | None:
    key = (*run, *sorted(specs))
    with _LOCK:
        if key in _GRAPHS:
            _GRAPHS.move_to_end(key)
            return _GRAPHS[key]
    graph = parsed.graph(specs)
    with _LOCK:
        _GRAPHS[key] = graph
        while len(_GRAPHS) > _CACHE_SIZE:
            _GRAPHS.popitem(last=False)
    return graph


class _Input:
    """An orchestration input, parsed: the request as received, validated, the plan prepared by the trigger, and a
    plan run's carried state."""

    def __init__(self, data: Any) -> None:
        self.carried: dict[str, Any] | None = None
        self.prepared_at_start: PreparedPlan | None = None
        if isinstance(data, dict) and CHECKPOINT_KEY in data:
            data = dict(data)
            self.carried = data.pop(CHECKPOINT_KEY)
        if isinstance(data, dict) and PREPARED_KEY in data:
            data = dict(data)
            self.prepared_at_start = PreparedPlan.model_validate(data.pop(PREPARED_KEY))
        self.raw: dict[str, Any] | None = data if isinstance(data, dict) else None
        self.request = RunRequest.model_validate(data)
        self._prepared: PreparedPlan | None = None
        self._graphs: dict[tuple[str, ...], PlanGraph | None] = {}

    def prepared(self) -> PreparedPlan:
        """The carried :class:`PreparedPlan` (continued runs only)."""
        if self._prepared is None:
            assert self.carried is not None
            self._prepared = PreparedPlan.model_validate(self.carried["prepared"])
        return self._prepared

    def graph(self, specs: dict[str, ToolSpec]) -> PlanGraph | None:
        """The plan's graph, None when it has problems (:class:`PlanRun` reports them then). Unknown tools are all
        the specs change, so their names are the key."""
        assert self.request.plan is not None
        key = tuple(sorted(specs))
        if key not in self._graphs:
            graph = check_plan(self.request.plan, specs, check_arguments=False)[1]
            index = self.carried["state"].get("index") if self.carried is not None else None
            if graph is not None and index:  # a window of a longer plan: its steps' places in the whole plan
                graph = dataclasses.replace(graph, index=index)
            self._graphs[key] = graph
        return self._graphs[key]


def _parsed_input(context: df.DurableOrchestrationContext) -> _Input:
    """The input, parsed once per process for as long as it is among the latest few (keyed by its JSON text)."""
    text = getattr(context, "_input", None)
    if not isinstance(text, str):
        return _Input(context.get_input())
    with _LOCK:
        parsed = _CACHE.get(text)
        if parsed is not None:
            _CACHE.move_to_end(text)
            return parsed
    parsed = _Input(context.get_input())
    with _LOCK:
        _CACHE[text] = parsed
        earlier = _LATEST.get(context.instance_id)
        if earlier is not None and earlier != text:  # a later generation: the earlier input never comes back
            _CACHE.pop(earlier, None)
        _LATEST[context.instance_id] = text
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        while len(_LATEST) > _CACHE_SIZE:
            _LATEST.popitem(last=False)
    return parsed

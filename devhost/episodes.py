"""One orchestration episode: replay the history through the SDK's handle, act on its actions, commit.

Task ids follow the SDK's numbering: every yielded task takes the next sequence number except external-event waits;
host-side retries take one number for the retry timer and one for the rescheduled task. Events that allocate numbers
go first in an episode's batch so the host and the SDK agree (see ``_split_allocating``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devhost.history import (
    TERMINAL,
    ActionType,
    EventType,
    InstanceStatus,
    action_name,
    custom_status_too_large,
    event,
    flatten_actions,
    format_time,
    nondeterminism,
    parse_time,
    utcnow,
)
from devhost.store import InboxRow, InstanceRow, RetryRow, Store, WorkItem

__all__ = ["TERMINAL", "Completion", "EpisodeRunner", "InstanceStatus", "OrchestratorNotFound"]

log = logging.getLogger(__name__)

_OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"
_UNSUPPORTED = {
    ActionType.CALL_ENTITY: "durable entities (call_entity)",
    ActionType.SIGNAL_ENTITY: "durable entities (signal_entity)",
    ActionType.CALL_HTTP: "durable HTTP calls (call_http)",
}
NEVER = 1e18


class OrchestratorNotFound(LookupError):
    """``start_new`` named an orchestrator the app does not define."""


@dataclass
class Completion:
    """The outcome of one activity run, reported by a worker."""

    item: WorkItem
    result_json: str | None = None
    failure: tuple[str, str] | None = None


@dataclass
class _Episode:
    """What one episode decided, written to the store in one transaction."""

    new_events: list[dict[str, Any]] = field(default_factory=list)
    work: list[tuple[str, int, int, str, str | None]] = field(default_factory=list)
    timers: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)
    children: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    retries_put: list[RetryRow] = field(default_factory=list)
    retries_deleted: list[int] = field(default_factory=list)
    canceled_timers: list[int] = field(default_factory=list)
    dumped: list[str] = field(default_factory=list)
    """The JSON of the first ``new_events`` (those handed to the orchestrator), written once."""


class EpisodeRunner:
    """The episode half of the engine (mixed into :class:`devhost.engine.Engine`, which owns the loop)."""

    store: Store
    orchestrators: dict[str, Callable[[str], str]]
    lease_s: float
    episodes: int
    _history: dict[str, list[str]]
    _wake: threading.Event
    _clock: Callable[[], float]

    def _hand_out(self, items: list[WorkItem]) -> None:
        raise NotImplementedError

    def _episode(self, instance_id: str, now: float) -> None:
        inst = self.store.get_instance(instance_id)
        rows = self.store.take_inbox(instance_id, now)
        if inst is None or inst.status in TERMINAL:
            with self.store.transaction() as conn:
                self.store.delete_inbox(conn, [r.id for r in rows])
            return
        consumed = [r.id for r in rows]
        rows = [r for r in rows if r.generation is None or r.generation == inst.generation]
        control = [r for r in rows if r.event["EventType"] in _CONTROL_EVENTS]
        for row in control:
            kind = row.event["EventType"]
            if kind == EventType.EXECUTION_TERMINATED:
                self._finish(inst, InstanceStatus.TERMINATED, json.dumps(row.event.get("Input") or ""), consumed)
                return
            inst.status = InstanceStatus.SUSPENDED if kind == EventType.EXECUTION_SUSPENDED else InstanceStatus.RUNNING
        rows = [r for r in rows if r.event["EventType"] not in _CONTROL_EVENTS]
        if inst.status == InstanceStatus.SUSPENDED:
            with self.store.transaction() as conn:
                self.store.delete_inbox(conn, [r.id for r in control])
                conn.executemany("UPDATE inbox SET visible_at=? WHERE id=?", [(NEVER, r.id) for r in rows])
                inst.updated = now
                self.store.save_instance(conn, inst)
            return
        if control:
            with self.store.transaction() as conn:
                conn.execute(
                    "UPDATE inbox SET visible_at=? WHERE instance_id=? AND visible_at>=?", (now, instance_id, NEVER)
                )
        if not rows:
            with self.store.transaction() as conn:
                self.store.delete_inbox(conn, consumed)
                inst.updated = now
                self.store.save_instance(conn, inst)
            return
        self._replay(inst, rows, consumed, now)

    def _replay(self, inst: InstanceRow, rows: list[InboxRow], consumed: list[int], now: float) -> None:
        stamp = format_time(utcnow())
        ep = _Episode()
        ep.new_events.append(event(EventType.ORCHESTRATOR_STARTED, stamp))
        retries = self.store.retries_waiting(inst.id, inst.generation)
        for ev in self._split_allocating(rows, retries):
            ep.new_events.append(ev)
            self._on_event(inst, ev, retries, ep, now, stamp)

        history = self._history.get(inst.id)
        if history is None:
            history = self.store.load_history(inst.id)
        new_json = ep.dumped = [json.dumps(e) for e in ep.new_events]
        context = (
            '{"history":['
            + ",".join(history + new_json)
            + '],"instanceId":'
            + json.dumps(inst.id)
            + ',"isReplaying":false,"parentInstanceId":'
            + json.dumps(inst.parent_id)
            + ',"input":'
            + json.dumps(inst.input)
            + ',"upperSchemaVersion":2}'
        )
        state, error = self._invoke(inst.name, context)
        self.episodes += 1
        status = InstanceStatus.RUNNING
        output: str | None = None
        continue_input: tuple[bool, str | None] = (False, None)
        if state is not None:
            flat = flatten_actions(state.get("actions") or [])
            problem = nondeterminism(inst.actions, flat)
            if problem is None:
                problem, continue_input = self._schedule(inst, flat, ep, now, stamp)
            if problem is not None:
                error = problem
            if "customStatus" in state:
                custom = json.dumps(state["customStatus"])
                if custom_status_too_large(state["customStatus"], custom):
                    error = error or (f"The custom status is {len(custom)} characters as JSON: more than Durable's "
                                      "16 KB of UTF-16 text, so the orchestration fails (as on Azure).")
                else:
                    inst.custom_status = custom
            if error is None and state.get("isDone"):
                status = InstanceStatus.COMPLETED
                output = json.dumps(state.get("output"))
        if error is not None:
            status, output = InstanceStatus.FAILED, json.dumps(error)
        ep.new_events.append(event(EventType.ORCHESTRATOR_COMPLETED, stamp))
        self._commit(inst, history, ep, consumed, status, output, continue_input, now)

    def _split_allocating(self, rows: list[InboxRow], retries: dict[int, RetryRow]) -> list[dict[str, Any]]:
        """Events that make the SDK allocate sequence numbers (retry bookkeeping) go first, in arrival order."""
        first: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        for row in rows:
            ev = row.event
            kind = ev["EventType"]
            retry = None
            if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
                retry = retries.get(ev.get("TaskScheduledId", -1))
                allocating = retry is not None and retry.phase == "task"
            elif kind == EventType.TIMER_FIRED:
                retry = retries.get(ev.get("TimerId", -1))
                allocating = retry is not None and retry.phase == "timer" and retry.attempt < retry.max_attempts
            else:
                allocating = False
            (first if allocating else rest).append(ev)
        return first + rest

    def _on_event(
        self, inst: InstanceRow, ev: dict[str, Any], retries: dict[int, RetryRow], ep: _Episode, now: float, stamp: str
    ) -> None:
        """Host-side retry bookkeeping for one incoming event (mirrors DTFx)."""
        kind = ev["EventType"]
        if kind in (EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED):
            if ev.get("TaskScheduledId") in retries:
                ep.retries_deleted.append(ev["TaskScheduledId"])
            return
        if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
            retry = retries.get(ev.get("TaskScheduledId", -1))
            if retry is None or retry.phase != "task":
                return
            timer_id = inst.next_seq
            inst.next_seq += 1
            last = retry.attempt >= retry.max_attempts
            fire_at = now if last else now + retry.interval_ms / 1000.0
            fire_stamp = stamp if last else _stamp_at(fire_at)
            ep.new_events.append(event(EventType.TIMER_CREATED, stamp, timer_id, FireAt=fire_stamp))
            ep.timers.append(
                (timer_id, fire_at, event(EventType.TIMER_FIRED, stamp, TimerId=timer_id, FireAt=fire_stamp))
            )
            ep.retries_deleted.append(retry.waiting_on)
            moved = RetryRow(
                timer_id,
                "timer",
                retry.call_kind,
                retry.name,
                retry.input,
                retry.attempt,
                retry.max_attempts,
                retry.interval_ms,
            )
            ep.retries_put.append(moved)
            retries.pop(retry.waiting_on, None)
            retries[timer_id] = moved
            return
        if kind == EventType.TIMER_FIRED:
            retry = retries.get(ev.get("TimerId", -1))
            if retry is None or retry.phase != "timer":
                return
            ep.retries_deleted.append(retry.waiting_on)
            retries.pop(retry.waiting_on, None)
            if retry.attempt >= retry.max_attempts:
                return
            task_id = inst.next_seq
            inst.next_seq += 1
            self._schedule_call(inst, retry.call_kind, task_id, retry.name, retry.input, None, ep, stamp)
            again = RetryRow(
                task_id,
                "task",
                retry.call_kind,
                retry.name,
                retry.input,
                retry.attempt + 1,
                retry.max_attempts,
                retry.interval_ms,
            )
            ep.retries_put.append(again)
            retries[task_id] = again

    def _schedule_call(
        self,
        inst: InstanceRow,
        call_kind: str,
        task_id: int,
        name: str,
        input_json: str | None,
        child_id: str | None,
        ep: _Episode,
        stamp: str,
    ) -> None:
        if call_kind == "activity":
            ep.new_events.append(event(EventType.TASK_SCHEDULED, stamp, task_id, Name=name, Input=input_json))
            ep.work.append((inst.id, inst.generation, task_id, name, input_json))
        else:
            child = child_id or f"{inst.id}:{task_id}"
            ep.new_events.append(
                event(
                    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
                    stamp,
                    task_id,
                    Name=name,
                    InstanceId=child,
                    Input=input_json,
                )
            )
            ep.children.append((child, name, input_json, task_id))

    def _schedule(
        self, inst: InstanceRow, flat: list[dict[str, Any]], ep: _Episode, now: float, stamp: str
    ) -> tuple[str | None, tuple[bool, str | None]]:
        """Act on the actions the SDK added this episode; returns (problem, (continue_as_new, new_input))."""
        for i, action in enumerate(flat[: len(inst.actions)]):
            stored = inst.actions[i]
            if action.get("actionType") == ActionType.CREATE_TIMER and action.get("isCanceled") and not stored[3]:
                stored[3] = True
                ep.canceled_timers.append(stored[2])
        continue_as_new: tuple[bool, str | None] = (False, None)
        for action in flat[len(inst.actions) :]:
            kind = action.get("actionType")
            if kind in _UNSUPPORTED:
                return f"The devhost does not support {_UNSUPPORTED[kind]}.", continue_as_new
            seq = inst.next_seq  # the sequence number this action takes (waits for external events take none)
            task_id: int | None = None
            if kind != ActionType.WAIT_FOR_EXTERNAL_EVENT:
                task_id = seq
                inst.next_seq += 1
            name = action_name(action)
            if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
                self._schedule_call(inst, "activity", seq, name, action.get("input"), None, ep, stamp)
            elif kind in (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
                if name not in self.orchestrators:
                    return f"Sub-orchestrator {name!r} is not defined by the app.", continue_as_new
                self._schedule_call(
                    inst, "suborch", seq, name, action.get("input"), action.get("instanceId"), ep, stamp
                )
            elif kind == ActionType.CREATE_TIMER:
                fire_at = parse_time(action["fireAt"])
                ep.new_events.append(event(EventType.TIMER_CREATED, stamp, seq, FireAt=action["fireAt"]))
                if not action.get("isCanceled"):
                    ep.timers.append(
                        (
                            seq,
                            fire_at.timestamp(),
                            event(EventType.TIMER_FIRED, stamp, TimerId=seq, FireAt=action["fireAt"]),
                        )
                    )
            elif kind == ActionType.CONTINUE_AS_NEW:
                continue_as_new = (True, action.get("input"))
            if kind in (ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
                options = action.get("retryOptions") or {}
                ep.retries_put.append(
                    RetryRow(
                        seq,
                        "task",
                        "activity" if kind == ActionType.CALL_ACTIVITY_WITH_RETRY else "suborch",
                        name,
                        action.get("input"),
                        1,
                        int(options.get("maxNumberOfAttempts", 1)),
                        int(options.get("firstRetryIntervalInMilliseconds", 0)),
                    )
                )
            inst.actions.append([kind, name, task_id, bool(action.get("isCanceled"))])
        return None, continue_as_new

    def _invoke(self, name: str, context: str) -> tuple[dict[str, Any] | None, str | None]:
        handle = self.orchestrators.get(name)
        if handle is None:
            return None, f"Orchestrator {name!r} is not defined by the app."
        try:
            return json.loads(handle(context)), None
        except Exception as exc:
            text = str(exc)
            if _OUT_OF_PROC_MARKER in text:
                message, _, state_json = text.partition(_OUT_OF_PROC_MARKER)
                try:
                    state = json.loads(state_json)
                except json.JSONDecodeError:
                    state = None
                return state, (state or {}).get("error") or message
            log.exception("orchestrator %s raised outside the SDK", name)
            return None, f"{type(exc).__name__}: {exc}"

    def _commit(
        self,
        inst: InstanceRow,
        history: list[str],
        ep: _Episode,
        consumed: list[int],
        status: InstanceStatus,
        output: str | None,
        continue_input: tuple[bool, str | None],
        now: float,
    ) -> None:
        new_json = ep.dumped + [json.dumps(e) for e in ep.new_events[len(ep.dumped):]]
        dispatched: list[WorkItem] = []
        with self.store.transaction() as conn:
            self.store.delete_inbox(conn, consumed)
            if continue_input[0] and status != InstanceStatus.FAILED:
                self._continue_as_new(inst, continue_input[1], now, conn)
                return
            if status in TERMINAL:
                self._finish(inst, status, output, [], conn=conn)
                return
            self.store.append_history(conn, inst.id, len(history), new_json)
            history.extend(new_json)
            self._history[inst.id] = history
            for timer_id in ep.canceled_timers:
                self.store.cancel_timer(conn, inst.id, timer_id)
            for timer_id, fire_at, fired in ep.timers:
                self.store.add_inbox(
                    inst.id, fired, generation=inst.generation, visible_at=fire_at, timer_id=timer_id, conn=conn
                )
            for waiting_on in ep.retries_deleted:
                self.store.delete_retry(conn, inst.id, inst.generation, waiting_on)
            for retry in ep.retries_put:
                self.store.put_retry(conn, inst.id, inst.generation, retry)
            for child_id, name, input_json, task_id in ep.children:
                started = event(
                    EventType.EXECUTION_STARTED, format_time(utcnow()), Name=name, Input=input_json, Version=""
                )
                created = self.store.create_instance(
                    child_id, name, input_json, started, now, parent=(inst.id, task_id, inst.generation)
                )
                if not created:
                    failed = event(
                        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                        format_time(utcnow()),
                        TaskScheduledId=task_id,
                        Reason="instance id in use",
                        Details=f"a live instance with id {child_id!r} already exists",
                    )
                    self.store.add_inbox(inst.id, failed, generation=inst.generation, visible_at=now, conn=conn)
            dispatched = self.store.add_work_items(conn, ep.work, now + self.lease_s)
            inst.status = status
            inst.updated = now
            self.store.save_instance(conn, inst)
        self._hand_out(dispatched)

    def _continue_as_new(self, inst: InstanceRow, new_input: str | None, now: float, conn: Any) -> None:
        inst.generation += 1
        inst.next_seq = 0
        inst.actions = []
        inst.input = new_input
        inst.status = InstanceStatus.RUNNING
        inst.updated = now
        self._history.pop(inst.id, None)
        self.store.reset_history(conn, inst.id)
        self.store.clear_pending(conn, inst.id, keep_events_for=inst.generation)
        started = event(
            EventType.EXECUTION_STARTED,
            format_time(utcnow()),
            Name=inst.name,
            Input=new_input,
            Version=inst.version or "",
        )
        self.store.add_inbox(inst.id, started, generation=inst.generation, visible_at=now, conn=conn)
        self.store.save_instance(conn, inst, new_input=True)

    def _finish(
        self, inst: InstanceRow, status: InstanceStatus, output: str | None, consumed: list[int], *, conn: Any = None
    ) -> None:
        """Record a terminal state, drop pending work and tell the parent orchestration, if any."""
        if conn is None:
            with self.store.transaction() as tx:
                self._finish(inst, status, output, consumed, conn=tx)
            return
        self.store.delete_inbox(conn, consumed)
        self.store.clear_pending(conn, inst.id)
        self._history.pop(inst.id, None)
        inst.status = status
        inst.output = output
        inst.updated = self._clock()
        self.store.save_instance(conn, inst)
        if inst.parent_id is None:
            return
        stamp = format_time(utcnow())
        if status == InstanceStatus.COMPLETED:
            ev = event(
                EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                stamp,
                TaskScheduledId=inst.parent_task_id,
                Result=output,
            )
        else:
            message = json.loads(output) if output else status.value
            ev = event(
                EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                stamp,
                TaskScheduledId=inst.parent_task_id,
                Reason=f"Sub-orchestration {inst.name!r} ({inst.id}) {status.value.lower()}: {message}",
                Details=str(message),
            )
        self.store.add_inbox(inst.parent_id, ev, generation=inst.parent_generation, visible_at=self._clock(), conn=conn)
        self._wake.set()


_CONTROL_EVENTS = {EventType.EXECUTION_TERMINATED, EventType.EXECUTION_SUSPENDED, EventType.EXECUTION_RESUMED}


def _stamp_at(epoch: float) -> str:
    return format_time(dt.datetime.fromtimestamp(epoch, dt.UTC))

"""The orchestration engine: a local stand-in for the Durable Task framework behind Durable Functions.

Each *episode* takes an instance's queued events, replays the full history through the real
``azure-functions-durable`` orchestrator handle, and acts on the actions it returns: it schedules activities, timers
and sub-orchestrations, runs host-side retries, and records the outcome — all in one SQLite transaction.

This module owns the loop (completions, ready instances, timers, coalescing), recovery after a restart and the
public API; :mod:`devhost.episodes` runs one episode.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from devhost.episodes import NEVER, Completion, EpisodeRunner, OrchestratorNotFound
from devhost.history import TERMINAL, EventType, InstanceStatus, event, format_time, utcnow
from devhost.store import InstanceRow, Store, WorkItem, new_instance_id

__all__ = ["TERMINAL", "Completion", "Engine", "InstanceStatus", "OrchestratorNotFound"]

log = logging.getLogger(__name__)


class Engine(EpisodeRunner):
    """Runs orchestration episodes on one thread; activities are handed to ``dispatch`` after each commit.

    ``orchestrators`` maps names to the SDK handles (``handle(context_json) -> state_json``). ``coalesce_s`` is how
    long the engine waits for more activity completions before replaying, so a wide fan-out is replayed a few
    times rather than once per completion.
    """

    def __init__(
        self,
        store: Store,
        orchestrators: Mapping[str, Callable[[str], str]],
        dispatch: Callable[[list[WorkItem]], None],
        *,
        coalesce_s: float = 0.005,
        coalesce_max_s: float = 0.05,
        lease_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.orchestrators = dict(orchestrators)
        self._dispatch = dispatch
        self.coalesce_s = coalesce_s
        self.coalesce_max_s = coalesce_max_s
        self.lease_s = lease_s
        self._clock = clock
        self._completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._history: dict[str, list[str]] = {}
        self._in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()
        self._idle = threading.Condition()
        self._finished = threading.Condition()
        self._busy = False
        self._leases_checked = float("-inf")
        self.episodes = 0

    # ---- public API (any thread) -----------------------------------------------------------------------------
    def start_new(
        self, name: str, instance_id: str | None = None, input_json: str | None = None, *, version: str | None = None
    ) -> str:
        """Create an instance; ``input_json`` is the serialized input. Returns the instance id."""
        if name not in self.orchestrators:
            raise OrchestratorNotFound(name)
        instance_id = instance_id or new_instance_id()
        now = self._clock()
        started = event(
            EventType.EXECUTION_STARTED, format_time(utcnow()), Name=name, Input=input_json, Version=version or ""
        )
        if not self.store.create_instance(instance_id, name, input_json, started, now, version=version):
            raise FileExistsError(f"an instance with id {instance_id!r} is already running")
        self._wake.set()
        return instance_id

    def raise_event(self, instance_id: str, name: str, data_json: str | None) -> bool:
        """Queue an external event; False when the instance does not exist or has finished."""
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            return False
        self._control(instance_id, event(EventType.EVENT_RAISED, format_time(utcnow()), Name=name, Input=data_json))
        return True

    def terminate(self, instance_id: str, reason: str | None) -> bool:
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            return False
        self._control(instance_id, event(EventType.EXECUTION_TERMINATED, format_time(utcnow()), Input=reason))
        return True

    def suspend(self, instance_id: str, reason: str | None) -> bool:
        return self._lifecycle(instance_id, EventType.EXECUTION_SUSPENDED, reason)

    def resume(self, instance_id: str, reason: str | None) -> bool:
        return self._lifecycle(instance_id, EventType.EXECUTION_RESUMED, reason)

    def complete(self, completion: Completion) -> None:
        """Called by workers when an activity finishes (or fails)."""
        self._completions.put(completion)
        self._wake.set()

    def start(self) -> None:
        """Recover work left by a previous process, then run the engine loop on its own thread."""
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="devhost-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued, running or due within ``timeout``; False if still busy then."""
        deadline = time.monotonic() + timeout
        horizon = self._clock() + timeout
        with self._idle:
            while time.monotonic() < deadline:
                if self._is_idle(horizon):
                    return True
                self._idle.wait(timeout=0.01)
        return self._is_idle(horizon)

    # ---- engine thread ---------------------------------------------------------------------------------------
    def wait_for(self, instance_id: str, timeout: float) -> InstanceRow | None:
        """Block until the instance is in a terminal state; returns it (or its latest state on timeout)."""
        deadline = time.monotonic() + timeout
        with self._finished:
            while True:
                inst = self.store.get_instance(instance_id)
                remaining = deadline - time.monotonic()
                if inst is None or inst.status in TERMINAL or remaining <= 0:
                    return inst
                self._finished.wait(min(remaining, 0.5))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._busy = True
            try:
                self._drain_completions()
                now = self._clock()
                ready = self.store.ready_instances(now)
                for instance_id in ready:
                    try:
                        self._episode(instance_id, now)
                    except Exception:
                        log.exception("devhost engine error in instance %s", instance_id)
                        self._fail_hard(instance_id, "devhost engine error; see the devhost log")
                checked = time.monotonic()
                if checked - self._leases_checked >= min(1.0, self.lease_s / 10):  # not per wake-up: a write per item
                    self._leases_checked = checked
                    self._redispatch_expired()
            finally:
                self._busy = False
            with self._idle:
                self._idle.notify_all()
            if ready:
                with self._finished:
                    self._finished.notify_all()
                continue
            nxt = self.store.next_visible_at()
            timeout = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self._clock()))
            if self._wake.wait(timeout):
                self._wake.clear()
                self._coalesce()

    def _coalesce(self) -> None:
        """Wait briefly while completions keep arriving, so one replay covers many of them. Only a burst is waited
        for (more than one completion already queued): a lone completion, the next link of a chain, is replayed at
        once, since waiting would add ``coalesce_s`` to every hop; completions that arrive during that replay are
        batched into the next one anyway."""
        if self.coalesce_s <= 0 or self._completions.qsize() <= 1:
            return
        deadline = time.monotonic() + self.coalesce_max_s
        seen = self._completions.qsize()
        while time.monotonic() < deadline:
            with self._in_flight_lock:
                running = len(self._in_flight)
            if running == 0:
                return
            time.sleep(self.coalesce_s)
            size = self._completions.qsize()
            if size == seen:
                return
            seen = size

    def _is_idle(self, horizon: float) -> bool:
        if self._busy or not self._completions.empty():
            return False
        with self._in_flight_lock:
            if self._in_flight:
                return False
        nxt = self.store.next_visible_at()
        return nxt is None or nxt > horizon

    def _drain_completions(self) -> None:
        batch: list[Completion] = []
        while True:
            try:
                batch.append(self._completions.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        stamp = format_time(utcnow())
        rows = []
        for c in batch:
            item = c.item
            if c.failure is None:
                ev = event(EventType.TASK_COMPLETED, stamp, TaskScheduledId=item.task_id, Result=c.result_json)
            else:
                reason, details = c.failure
                ev = event(EventType.TASK_FAILED, stamp, TaskScheduledId=item.task_id, Reason=reason, Details=details)
            rows.append((item.id, ev, item.instance_id, item.generation))
        self.store.complete_work(rows, self._clock())
        with self._in_flight_lock:
            for c in batch:
                self._in_flight.discard(c.item.id)

    def _hand_out(self, items: list[WorkItem]) -> None:
        if not items:
            return
        with self._in_flight_lock:
            self._in_flight.update(i.id for i in items)
        self._dispatch(items)

    def _recover(self) -> None:
        """After a restart every unfinished work item is re-run: its worker died with the old process."""
        items = self.store.claim_expired_work(NEVER, self._clock() + self.lease_s, set())
        if items:
            log.info("devhost: re-running %d activity work items left by a previous process", len(items))
        self._hand_out(items)

    def _redispatch_expired(self) -> None:
        with self._in_flight_lock:
            running = set(self._in_flight)
        now = self._clock()
        items = self.store.claim_expired_work(now, now + self.lease_s, running)
        self._hand_out(items)
        if running:
            self.store.renew_leases(sorted(running), now + self.lease_s)

    def _control(self, instance_id: str, ev: dict[str, Any]) -> None:
        self.store.add_inbox(instance_id, ev, visible_at=self._clock())
        self._wake.set()

    def _lifecycle(self, instance_id: str, kind: EventType, reason: str | None) -> bool:
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            return False
        self._control(instance_id, event(kind, format_time(utcnow()), Reason=reason))
        return True

    def _fail_hard(self, instance_id: str, message: str) -> None:
        inst = self.store.get_instance(instance_id)
        if inst is not None and inst.status not in TERMINAL:
            self._finish(inst, InstanceStatus.FAILED, json.dumps(message), [])

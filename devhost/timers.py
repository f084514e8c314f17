"""Timer triggers: six-field NCRONTAB schedules (seconds first), fired on the server loop."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.index import FunctionEntry, FunctionIndex

__all__ = ["TimerScheduler", "next_fire"]

log = logging.getLogger(__name__)


def next_fire(schedule: str, after: dt.datetime) -> dt.datetime:
    """The next time a six-field NCRONTAB ``{second} {minute} {hour} {day} {month} {day-of-week}`` fires."""
    fields = schedule.split()
    if len(fields) != 6:
        raise ValueError(f"timer schedule {schedule!r} must have six fields (seconds first), as NCRONTAB does")
    return croniter(schedule, after, second_at_beginning=True).get_next(dt.datetime)


class TimerScheduler:
    """Fires each timer-triggered function on its schedule (and at start when ``run_on_startup``)."""

    def __init__(
        self,
        index: FunctionIndex,
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
        invoke: Callable[[FunctionEntry, Any], Coroutine[Any, Any, Any]],
    ) -> None:
        self.index = index
        self._run_on_loop = run_on_loop
        self._invoke = invoke
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        if not self.index.timers:
            return False
        for entry in self.index.timers:
            next_fire(entry.trigger.schedule, dt.datetime.now(dt.UTC))
        self._thread = threading.Thread(target=self._loop, name="devhost-timers", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _fire(self, entry: FunctionEntry, past_due: bool) -> None:
        try:
            self._run_on_loop(self._invoke(entry, TimerRequest(past_due=past_due))).result()
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", entry.name)

    def _loop(self) -> None:
        now = dt.datetime.now(dt.UTC)
        due = {e.name: next_fire(e.trigger.schedule, now) for e in self.index.timers}
        for entry in self.index.timers:
            if getattr(entry.trigger, "run_on_startup", False):
                self._fire(entry, past_due=False)
        while not self._stop.is_set():
            now = dt.datetime.now(dt.UTC)
            for entry in self.index.timers:
                if due[entry.name] <= now:
                    self._fire(entry, past_due=(now - due[entry.name]).total_seconds() > 1)
                    due[entry.name] = next_fire(entry.trigger.schedule, now)
            wait = min((d - dt.datetime.now(dt.UTC)).total_seconds() for d in due.values())
            self._stop.wait(max(0.01, min(wait, 1.0)))

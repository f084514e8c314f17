"""History events, actions, runtime statuses and the custom status in the JSON shapes the azure-functions-durable
executor and client read and write."""

from __future__ import annotations

import datetime as dt
import json
from enum import IntEnum, StrEnum
from typing import Any

__all__ = [
    "CUSTOM_STATUS_MAX_KB",
    "TERMINAL",
    "ActionType",
    "EventType",
    "InstanceStatus",
    "action_name",
    "custom_status_too_large",
    "event",
    "flatten_actions",
    "format_time",
    "nondeterminism",
    "parse_time",
    "utcnow",
]


class EventType(IntEnum):
    """``HistoryEventType`` values of the Durable Task framework."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


class ActionType(IntEnum):
    """``ActionType`` values the SDK emits in ``OrchestratorState.actions``."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, the format the SDK writes and parses."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def event(event_type: EventType, timestamp: str, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    """One history event; fields use the framework's PascalCase names (``Name``, ``Input``, ``TaskScheduledId``…)."""
    return {"EventType": int(event_type), "EventId": event_id, "IsPlayed": False, "Timestamp": timestamp, **fields}


def flatten_actions(groups: list[Any]) -> list[dict[str, Any]]:
    """Flatten the SDK's cumulative action groups, expanding WhenAll/WhenAny depth-first in list order."""
    flat: list[dict[str, Any]] = []

    def walk(action: dict[str, Any]) -> None:
        if action.get("actionType") in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
            for child in action.get("compoundActions") or []:
                walk(child)
        else:
            flat.append(action)

    for group in groups:
        for action in group if isinstance(group, list) else [group]:
            walk(action)
    return flat


CUSTOM_STATUS_MAX_KB = 16
"""Durable's limit on a custom status: 16 KB of UTF-16 text (the extension fails an out-of-process orchestration
that sets more: azure-functions-durable-extension#3113)."""


def custom_status_too_large(value: Any, text: str) -> bool:
    """Whether Durable refuses ``value`` (``text``: its ``json.dumps``) as a custom status. The extension measures its
    compact JSON (non-ASCII characters as they are) in UTF-16 and refuses it when the whole kilobytes exceed the
    limit, so up to 17,407 bytes pass. ``text`` has at least as many characters as that JSON has UTF-16 units (its
    spaces, its escapes of six characters), so a short one passes without encoding ``value`` again."""
    if len(text) * 2 < (CUSTOM_STATUS_MAX_KB + 1) * 1024:
        return False
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(compact.encode("utf-16-le")) // 1024 > CUSTOM_STATUS_MAX_KB


class InstanceStatus(StrEnum):
    """An instance's ``runtimeStatus``."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATED = "Terminated"
    SUSPENDED = "Suspended"


TERMINAL = {InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.TERMINATED}


def action_name(action: dict[str, Any]) -> str:
    """The function or event an action names (empty for a timer)."""
    return action.get("functionName") or action.get("externalEventName") or ""


def nondeterminism(stored: list[Any], flat: list[dict[str, Any]]) -> str | None:
    """Why a replay's actions (``flat``) contradict those recorded when first run (``stored``: type and name first),
    as the Durable Task framework reports a non-deterministic orchestrator; None when they agree."""
    for i, (before, action) in enumerate(zip(stored, flat, strict=False)):
        if before[0] != action.get("actionType") or before[1] != action_name(action):
            return (
                f"Non-deterministic orchestrator detected: action #{i} was {_describe(before[0], before[1])} "
                f"when first run but is {_describe(action.get('actionType'), action_name(action))} on replay. "
                "Orchestrators must make the same calls in the same order on every replay."
            )
    if len(flat) < len(stored):
        return (
            f"Non-deterministic orchestrator detected: it scheduled {len(stored)} actions when first run "
            f"but only {len(flat)} on replay."
        )
    return None


def _describe(kind: int | None, name: str) -> str:
    try:
        label = ActionType(kind).name.lower() if kind is not None else "nothing"
    except ValueError:
        label = f"action type {kind}"
    return f"{label} {name!r}" if name else label

"""Runs from the ``runs`` queue (Azurite): one run per message, redelivery-safe; malformed → ``runs-poison``."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from tests.integration.runs.conftest import steps_by_id, wait_run
from tests.support import Azurite, DevhostProcess

pytestmark = pytest.mark.azurite


def queue(azurite: Azurite, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, name,
                                                message_encode_policy=TextBase64EncodePolicy(),
                                                message_decode_policy=TextBase64DecodePolicy())
    with contextlib.suppress(ResourceExistsError):  # the devhost may have created it
        client.create_queue()
    return client


def until(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError("condition not met")


def test_queued_request_runs_once_even_when_delivered_twice(azurite: Azurite, weft: DevhostProcess) -> None:
    runs = queue(azurite, "runs")
    message = json.dumps({"mode": "plan", "idempotency_key": "queued-7",
                          "plan": {"steps": [{"id": "w", "tool": "note_put",
                                              "args": {"key": "from-queue", "value": {"n": 7}}}]}})
    runs.send_message(message)
    view = wait_run(weft, "run-queued-7")
    assert view["status"] == "completed"
    runs.send_message(message)  # a redelivery of the same request
    until(lambda: runs.get_queue_properties().approximate_message_count == 0)
    again = wait_run(weft, "run-queued-7")
    assert again["created_at"] == view["created_at"], "the second delivery must not start a new run"
    assert steps_by_id(again)["w"]["result"]["applied"] is True


def test_malformed_message_goes_to_poison_without_retries(azurite: Azurite, weft: DevhostProcess) -> None:
    runs = queue(azurite, "runs")
    poison = queue(azurite, "runs-poison")
    bad = json.dumps({"mode": "plan", "plan": {"steps": [
        {"id": "x", "tool": "no_such_tool", "args": {}},
        {"id": "y", "tool": "calculate", "args": {"expression": "secret-4471 +", "unknown": "secret-4472"}},
    ]}})
    runs.send_message(bad)
    messages = until(lambda: list(poison.peek_messages(max_messages=10)))
    assert bad in [m.content for m in messages]
    log = weft.log()
    assert "rejected (plan_invalid, field plan.steps[0].tool)" in log
    assert "secret-447" not in log and "no_such_tool" not in log, "the rejection names the field, not the values"
    assert "MaxDequeueCount" not in log, "rejected at once, not after retries"

"""Weft's own function_app.py on the devhost: HTTP start, bad input, queue start (Azurite)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from tests.support import ROOT, Azurite, DevhostProcess, devhost_env, free_port, http


@pytest.fixture(scope="module")
def app_host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    db = tmp_path_factory.mktemp("app") / "state.sqlite"
    env = devhost_env({"AzureWebJobsStorage": azurite.connection_string})
    proc = DevhostProcess(ROOT, db, free_port(), env).start()
    yield proc
    proc.stop()


def wait_done(url: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http("GET", url)
        if status in (200, 400) and body:
            return body
        time.sleep(0.05)
    raise TimeoutError(url)


def test_http_start_runs_the_fan_out(app_host: DevhostProcess) -> None:
    status, _, body = http("POST", app_host.base_url + "/api/jobs/fan_out", {"items": ["a", "bb"]})
    assert status == 202
    final = wait_done(body["statusQueryGetUri"])
    assert final["runtimeStatus"] == "Completed"
    assert [r["length"] for r in final["output"]["results"]] == [1, 2]


@pytest.mark.parametrize("payload", [pytest.param(b"not json", id="not-json"),
                                     pytest.param(b'{"items": 3}', id="items-not-a-list")])
def test_bad_input_is_a_400_naming_the_field(app_host: DevhostProcess, payload: bytes) -> None:
    status, _, body = http("POST", app_host.base_url + "/api/jobs/fan_out", payload)
    assert status == 400
    assert body["field"] == "items" and body["code"] == "invalid_request"


@pytest.mark.azurite
def test_queue_message_starts_the_fan_out(azurite: Azurite, app_host: DevhostProcess) -> None:
    jobs = QueueClient.from_connection_string(azurite.connection_string, "jobs",
                                              message_encode_policy=TextBase64EncodePolicy())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            jobs.get_queue_properties()
            break
        except Exception:
            time.sleep(0.1)
    jobs.send_message(json.dumps({"id": "queued-job-1", "items": ["q"]}))
    final = wait_done(app_host.base_url + "/runtime/webhooks/durabletask/instances/queued-job-1")
    assert final["output"]["results"][0]["upper"] == "Q"

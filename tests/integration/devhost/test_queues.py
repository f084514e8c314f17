"""Queue triggers through Azurite: a message starts an orchestration; a bad one ends in the poison queue."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from tests.integration.devhost.conftest import TEST_APP
from tests.support import Azurite, DevhostProcess, devhost_env, free_port, http, wait_until

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def queued_devhost(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    db = tmp_path_factory.mktemp("queues") / "state.sqlite"
    env = devhost_env({"AzureWebJobsStorage": azurite.connection_string})
    proc = DevhostProcess(TEST_APP, db, free_port(), env).start()
    yield proc
    proc.stop()


def queue(azurite: Azurite, name: str) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, name,
                                              message_encode_policy=TextBase64EncodePolicy(),
                                              message_decode_policy=TextBase64DecodePolicy())


def exists(client: QueueClient) -> bool:
    """Whether the queue is there yet (the devhost creates it when its poller starts, shortly after it listens)."""
    try:
        return client.get_queue_properties() is not None
    except ResourceNotFoundError:
        return False


def test_queue_message_starts_an_orchestration(azurite: Azurite, queued_devhost: DevhostProcess) -> None:
    jobs = queue(azurite, "devhost-jobs")
    wait_until(lambda: exists(jobs), what="the devhost-jobs queue")
    jobs.send_message(json.dumps({"id": "from-queue-1", "n": 12}))
    url = queued_devhost.base_url + "/runtime/webhooks/durabletask/instances/from-queue-1"

    def completed() -> dict | None:
        status, _, body = http("GET", url)
        return body if status == 200 else None

    assert wait_until(completed)["output"] == sum(i * i for i in range(12))
    assert wait_until(lambda: jobs.get_queue_properties().approximate_message_count == 0 or None)


def test_malformed_message_ends_in_the_poison_queue(azurite: Azurite, queued_devhost: DevhostProcess) -> None:
    jobs = queue(azurite, "devhost-jobs")
    poison = queue(azurite, "devhost-jobs-poison")
    jobs.send_message("this is not json")
    messages = wait_until(lambda: list(poison.peek_messages(max_messages=5)) or None)
    assert [m.content for m in messages] == ["this is not json"]
    assert "MaxDequeueCount" in queued_devhost.log()


def test_queue_output_binding_feeds_the_queue_trigger(queued_devhost: DevhostProcess) -> None:
    status, _, _ = http("POST", queued_devhost.base_url + "/api/enqueue", {"id": "via-output", "n": 4})
    assert status == 202
    url = queued_devhost.base_url + "/runtime/webhooks/durabletask/instances/via-output"

    def completed() -> dict | None:
        code, _, body = http("GET", url)
        return body if code == 200 else None

    assert wait_until(completed)["output"] == 0 + 1 + 4 + 9

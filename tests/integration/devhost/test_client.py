"""The real DurableOrchestrationClient, unchanged, against a devhost process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions.models.utils import http_utils

from devhost.durable_api import client_binding
from tests.support import DevhostProcess, reset_durable_http_session


@pytest.fixture
def client(devhost: DevhostProcess) -> Iterator[df.DurableOrchestrationClient]:
    reset_durable_http_session()  # another test's session belongs to its own, closed, loop
    yield df.DurableOrchestrationClient(client_binding(devhost.base_url, "devhosttests"))
    # The SDK keeps one aiohttp session per process, bound to the loop that created it.
    if http_utils._client_session is not None:
        asyncio.run(http_utils._close_session())
    http_utils._client_session = None


async def until_done(client: df.DurableOrchestrationClient, instance_id: str) -> df.DurableOrchestrationStatus:
    for _ in range(400):
        status = await client.get_status(instance_id)
        if status.runtime_status in (df.OrchestrationRuntimeStatus.Completed, df.OrchestrationRuntimeStatus.Failed,
                                     df.OrchestrationRuntimeStatus.Terminated):
            return status
        await asyncio.sleep(0.05)
    raise TimeoutError(instance_id)


def test_start_status_and_output(client: df.DurableOrchestrationClient) -> None:
    async def scenario() -> df.DurableOrchestrationStatus:
        instance_id = await client.start_new("fan_out", None, {"n": 30})
        return await until_done(client, instance_id)

    status = asyncio.run(scenario())
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.output == sum(i * i for i in range(30))
    assert status.input_ == {"n": 30}


def test_raise_event_terminate_and_query(client: df.DurableOrchestrationClient) -> None:
    async def scenario() -> tuple:
        done = await client.start_new("two_events", "client-events")
        await client.raise_event(done, "First", {"a": 1})
        await client.raise_event(done, "Second", [2])
        finished = await until_done(client, done)
        stopped = await client.start_new("two_events")
        await client.terminate(stopped, "no longer needed")
        terminated = await until_done(client, stopped)
        completed = await client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Completed])
        purged = await client.purge_instance_history(done)
        return finished, terminated, completed, purged

    finished, terminated, completed, purged = asyncio.run(scenario())
    assert finished.output == [{"a": 1}, [2]]
    assert terminated.runtime_status == df.OrchestrationRuntimeStatus.Terminated
    assert "client-events" in {s.instance_id for s in completed}
    assert purged.instances_deleted == 1


def test_wait_for_completion_or_check_status(client: df.DurableOrchestrationClient) -> None:
    request = func.HttpRequest("POST", "http://127.0.0.1/api/x", body=b"")

    async def scenario() -> tuple[func.HttpResponse, func.HttpResponse]:
        quick = await client.start_new("sequence")
        done = await client.wait_for_completion_or_create_check_status_response(request, quick, 10000, 50)
        slow = await client.start_new("two_events")
        pending = await client.wait_for_completion_or_create_check_status_response(request, slow, 200, 50)
        await client.terminate(slow, "cleanup")
        return done, pending

    done, pending = asyncio.run(scenario())
    assert done.status_code == 200 and json.loads(done.get_body()) == [4, 16, 9]
    assert pending.status_code == 202
    assert "statusQueryGetUri" in json.loads(pending.get_body())


def test_unknown_orchestrator_raises(client: df.DurableOrchestrationClient) -> None:
    with pytest.raises(Exception, match="doesn't exist"):
        asyncio.run(client.start_new("not_defined"))

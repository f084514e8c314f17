"""The app's Durable client calls to the devhost's rpc URLs are answered in-process with the same answers as HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import azure.durable_functions as df
import pytest
from aiohttp import web

import devhost.host as host_module
from devhost import local_rpc
from devhost.durable_api import RPC_PREFIX, client_binding
from devhost.host import DevHost
from tests.support import reset_durable_http_session

from .conftest import make_host


@pytest.fixture
def served() -> Iterator[tuple[DevHost, list[str]]]:
    """A devhost serving HTTP on a free port, with the paths of the rpc requests that reached its HTTP server."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(RPC_PREFIX + "/"):
            seen.append(f"{request.method} {request.path}")
        return await handler(request)

    host = make_host(port=0)
    host.options.serve_http = True
    build = host_module.build_web_app
    host_module.build_web_app = lambda *a, **k: build(*a, **k, extra_middlewares=[record])  # type: ignore[assignment]
    try:
        host.start()
    finally:
        host_module.build_web_app = build  # type: ignore[assignment]
    yield host, seen
    host.stop()


def _client(host: DevHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(client_binding(host.base_url, host.index.task_hub))


async def _calls(host: DevHost) -> dict[str, Any]:
    client = _client(host)
    instance_id = await client.start_new("sequence", None, 3)
    await asyncio.to_thread(host.wait_for, instance_id, 30)
    status = await client.get_status(instance_id, show_input=True)
    missing = await client.get_status("no-such-instance")
    try:
        await client.start_new("no_such_orchestrator", None, None)
        unknown = "accepted"
    except Exception as exc:  # the SDK raises on a 400 with the host's message
        unknown = type(exc).__name__
    try:
        await client.raise_event(instance_id, "go", {"ok": True})
        gone = "accepted"
    except Exception as exc:
        gone = type(exc).__name__
    return {
        "status": (status.runtime_status.value, status.output, status.input_, status.name),
        "created_is_aware": status.created_time is not None and status.created_time.tzinfo is not None,
        "missing": missing.runtime_status,
        "unknown": unknown,
        "gone": gone,
    }


def test_client_calls_skip_the_socket_and_answer_as_http_does(served: tuple[DevHost, list[str]]) -> None:
    host, seen = served
    reset_durable_http_session()
    local = asyncio.run(_calls(host))
    assert seen == [], "the rpc calls went over HTTP"
    local_rpc.unregister(host.base_url)  # the same calls over the real HTTP endpoint
    reset_durable_http_session()
    over_http = asyncio.run(_calls(host))
    assert any(line.startswith("POST /durabletask/orchestrators/") for line in seen)
    assert local == over_http
    assert local["status"][0] == "Completed" and local["created_is_aware"]
    assert local["missing"] is None


def test_the_shortcut_can_be_switched_off() -> None:
    assert local_rpc.enabled({}) and not local_rpc.enabled({"DEVHOST_LOCAL_RPC": "0"})

"""Weft's MCP server on a devhost, driven by the Python ``mcp`` SDK client and the TypeScript SDK client."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.integration.runs.conftest import weft_env
from tests.support import ROOT, DevhostProcess, free_port, staged_node_script

MCP_PATH = "/runtime/webhooks/mcp"
TS_CLIENT = Path(__file__).with_name("weft_ts_client.mjs")
WAIT_S = "4"
"""WEFT_MCP_WAIT_S of the test host: long enough for quick runs, short enough that a slow one hands back a run id."""


def endpoint(host: DevhostProcess) -> str:
    return host.base_url + MCP_PATH


async def _session(url: str, steps: Callable[[ClientSession], Awaitable[Any]], headers: dict[str, str] | None) -> Any:
    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=90) as client,
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        return await steps(session)


def mcp_session(url: str, steps: Callable[[ClientSession], Awaitable[Any]],
                headers: dict[str, str] | None = None) -> Any:
    """Run ``steps(session)`` in one initialized MCP session with the Python SDK client."""
    return asyncio.run(_session(url, steps, headers))


def answer(result: Any) -> dict[str, Any]:
    """The JSON body of a Weft tool result (one text block)."""
    assert len(result.content) == 1, result
    return json.loads(result.content[0].text)


def mcp_env(state: Path, **extra: str) -> dict[str, str]:
    return weft_env(None, state, **{"WEFT_MCP_WAIT_S": WAIT_S, "WEFT_MCP_POLL_INTERVAL_S": "0.1", **extra})


@pytest.fixture(scope="module")
def weft_mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    """Weft's app on a devhost (identity off: the local caller), SQLite state."""
    state = tmp_path_factory.mktemp("weft-mcp")
    host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), mcp_env(state)).start()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def ts_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript SDK client script, staged beside the installed SDK."""
    return staged_node_script(TS_CLIENT, tmp_path_factory.mktemp("ts-client"))


def run_ts(script: Path, url: str, steps: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    """Run the TypeScript client's ``steps``; its printed JSON report."""
    args = ["node", str(script), url, json.dumps(steps)] + ([token] if token else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.stdout, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])

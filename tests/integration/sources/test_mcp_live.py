"""A real MCP server (the SDK's MCPServer) over stdio and streamable HTTP: discovered, specs checked, tools called
through the executor, pooled sessions measured and recovered, auth and secrets wired, loopback refused by default."""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor, ToolSettings
from shared.models import ToolCall, ToolResult
from shared.sources import SourceSettings, load_sources
from shared.sources.cache import DiscoveryCache, FileCacheStore
from shared.sources.mcp import McpClient, McpServerParams, McpSettings
from shared.sources.ssrf import DestinationNotAllowed, NetworkPolicy, SsrfGuard
from tests.fakes.mcp_server import SCRIPT, McpHttpServer, start_http_server, stdio_source_config
from tests.fakes.openapi_server import PetsApi
from tests.integration.sources.conftest import MemorySecrets

PRIVATE_OK = NetworkPolicy(allow_private_network=True)
NAMES = ["add", "create_note", "delete_note", "echo_env", "fail", "get_note", "list_notes", "mixed", "sleep"]


@pytest.fixture(params=["stdio", "http"])
def source(request: pytest.FixtureRequest, mcp_http: McpHttpServer) -> dict[str, Any]:
    """The notes server's source entry, once per transport."""
    return stdio_source_config() if request.param == "stdio" else mcp_http.source_config()


def load(tmp_path: Path, *entries: dict[str, Any], network: NetworkPolicy = PRIVATE_OK, secrets: Any = None,
         cache: DiscoveryCache | None = None, **settings: Any) -> tuple[Catalog, list[Any]]:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": list(entries)}))
    catalog = Catalog()
    source_settings = SourceSettings(sources_file=str(path), network=network, **settings)
    return catalog, load_sources(catalog, source_settings, secrets=secrets, cache=cache)


def call(tool: str, step: str = "s", **args: Any) -> ToolCall:
    return ToolCall(run_id="run-mcp", step_id=step, tool=tool, args=args)


def test_tools_are_discovered_with_specs_from_annotations(tmp_path: Path, source: dict[str, Any]) -> None:
    catalog, [report] = load(tmp_path, source)
    assert (report.type, report.error, report.origin, report.tool_count) == ("mcp", None, "fresh", len(NAMES))
    assert sorted(report.tools) == [f"notes.{name}" for name in NAMES]
    specs = {spec.name.removeprefix("notes."): spec for spec in catalog.specs()}
    effects = {name: (spec.side_effects, spec.idempotent) for name, spec in specs.items()}
    assert effects["add"] == (False, True)  # readOnlyHint
    assert effects["create_note"] == (True, True)  # idempotentHint
    assert effects["delete_note"] == (True, False)  # destructiveHint
    assert effects["fail"] == (True, False)  # no annotations: the MCP defaults
    add = specs["add"]
    assert (add.source, add.description) == ("mcp", "Add two integers.")
    assert add.parameters["required"] == ["a", "b"]
    assert {name: prop["type"] for name, prop in add.parameters["properties"].items()} == {"a": "integer",
                                                                                       "b": "integer"}


def test_tools_are_called_through_the_executor(tmp_path: Path, source: dict[str, Any]) -> None:
    catalog, _ = load(tmp_path, source)
    executor = ToolExecutor(catalog)
    note_id = f"note-{time.monotonic_ns()}"

    async def scenario() -> dict[str, ToolResult]:
        names = ["add", "get", "list", "create", "mixed", "fail", "missing", "bad"]
        calls = [
            call("notes.add", a=2, b=3), call("notes.get_note", note_id="n1"), call("notes.list_notes"),
            call("notes.create_note", note_id=note_id, title="t", body="b"), call("notes.mixed"),
            call("notes.fail", reason="no thanks"), call("notes.get_note", note_id="absent"),
            call("notes.add", a="two", b=3),
        ]
        return dict(zip(names, await asyncio.gather(*(executor.execute(c) for c in calls)), strict=True))

    results = asyncio.run(scenario())
    assert results["add"].value == {"result": 5}  # structuredContent, as the server declared it
    assert results["get"].value == {"id": "n1", "title": "first", "body": "hello"}
    assert {"id": "n1", "title": "first", "body": "hello"} in results["list"].value  # JSON text, parsed
    assert results["create"].value == {"id": note_id, "title": "t", "body": "b"}
    assert results["mixed"].value == ["caption", {"type": "image", "mime_type": "image/png", "data": "aGk="}]
    fail = results["fail"]
    assert (fail.ok, fail.error.code, fail.error.retryable) == (False, "tool_failed", False)  # side effects: final
    assert "refused: no thanks" in fail.error.message
    missing = results["missing"]
    assert (missing.error.code, missing.error.retryable) == ("tool_failed", True)  # read-only: worth retrying
    assert results["bad"].error.code == "tool_arguments_invalid"


def test_latency_of_pooled_and_per_call_sessions(
    tmp_path: Path, source: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    pooled_catalog, _ = load(tmp_path, source)
    single_catalog, _ = load(tmp_path, source, mcp=McpSettings(pool=False))

    async def timed(executor: ToolExecutor, count: int) -> list[float]:
        times = []
        for i in range(count):
            start = time.perf_counter()
            result = await executor.execute(call("notes.add", a=i, b=1))
            times.append((time.perf_counter() - start) * 1000)
            assert result.value == {"result": i + 1}
        return times

    pooled = asyncio.run(timed(ToolExecutor(pooled_catalog), 31))
    single = asyncio.run(timed(ToolExecutor(single_catalog), 3))
    first, rest = pooled[0], pooled[1:]
    p95 = statistics.quantiles(rest, n=20)[-1]
    with capsys.disabled():
        print(f"\nMCP {source['transport']}: first call (opens the pooled session) {first:.1f} ms; pooled calls "
              f"median {statistics.median(rest):.1f} ms, p95 {p95:.1f} ms; session per call median "
              f"{statistics.median(single):.1f} ms")
    assert statistics.median(rest) < 100
    assert statistics.median(rest) < statistics.median(single)


def test_a_timed_out_call_leaves_the_pooled_session_usable(tmp_path: Path, source: dict[str, Any]) -> None:
    catalog, _ = load(tmp_path, source)
    patient, hasty = ToolExecutor(catalog), ToolExecutor(catalog, settings=ToolSettings(timeout_s=0.3))

    async def scenario() -> tuple[ToolResult, ToolResult]:
        # Opening the pooled session counts against the first call's timeout (about a second over stdio), so the
        # patient executor opens it; both executors share the catalog's transports, hence the session.
        assert (await patient.execute(call("notes.add", a=0, b=0))).ok
        slow = await hasty.execute(call("notes.sleep", seconds=2))
        return slow, await hasty.execute(call("notes.add", a=1, b=1))

    slow, after = asyncio.run(scenario())
    assert (slow.error.code, slow.error.retryable) == ("tool_timeout", True)
    assert after.value == {"result": 2}


def stdio_server_pids() -> list[int]:
    """Our own children running the test server over stdio."""
    return [
        child.pid for child in psutil.Process().children(recursive=True)
        if str(SCRIPT) in " ".join(child.cmdline()) and "stdio" in child.cmdline()
    ]


def test_a_lost_stdio_server_is_replaced_on_the_next_call(tmp_path: Path) -> None:
    catalog, _ = load(tmp_path, stdio_source_config())
    executor = ToolExecutor(catalog)

    def kill_server() -> None:
        pids = stdio_server_pids()
        assert len(pids) == 1
        process = psutil.Process(pids[0])
        process.kill()
        process.wait(timeout=10)

    async def scenario() -> list[ToolResult]:
        results = [await executor.execute(call("notes.add", a=1, b=1))]
        kill_server()
        results.append(await executor.execute(call("notes.add", a=2, b=2)))  # read-only: repeated on a new session
        kill_server()
        results.append(await executor.execute(call("notes.delete_note", note_id="x")))  # not safe to repeat
        results.append(await executor.execute(call("notes.delete_note", note_id="x", step="again")))
        return results

    first, replaced, lost, next_one = asyncio.run(scenario())
    assert (first.value, replaced.value) == ({"result": 2}, {"result": 4})
    assert (lost.ok, lost.error.code, lost.error.retryable) == (False, "upstream_unavailable", False)
    assert next_one.value == {"result": "deleted x"}
    assert stdio_server_pids() == []  # the loop's end closed the pooled session and its process


def test_each_event_loop_gets_its_own_pooled_session(tmp_path: Path, source: dict[str, Any]) -> None:
    catalog, _ = load(tmp_path, source)
    executor = ToolExecutor(catalog)

    async def batch(offset: int) -> list[Any]:
        results = await asyncio.gather(*(executor.execute(call("notes.add", a=offset, b=i)) for i in range(5)))
        return [result.value["result"] for result in results]

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda offset: asyncio.run(batch(offset)), (0, 10, 20)))
    assert outcomes == [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [20, 21, 22, 23, 24]]


def test_secret_env_reaches_the_stdio_server(tmp_path: Path) -> None:
    entry = stdio_source_config(secret_env={"NOTES_TOKEN": "notes-token"})
    catalog, [report] = load(tmp_path, entry, secrets=MemorySecrets({"notes-token": "tok-42"}))
    result = asyncio.run(ToolExecutor(catalog).execute(call("notes.echo_env", name="NOTES_TOKEN")))
    assert result.value == {"result": "tok-42"}
    assert "tok-42" not in report.model_dump_json()


def test_the_http_auth_header_comes_from_a_named_secret(tmp_path: Path, pets_api: PetsApi) -> None:
    entry = {"type": "mcp", "transport": "http", "url": f"{pets_api.url}/mcp", "auth": {"secret": "mcp-token"}}
    _, [report] = load(tmp_path, entry, secrets=MemorySecrets({"mcp-token": "tok-9"}))
    assert report.tool_count == 0 and report.error  # the pets API is no MCP server
    assert pets_api.requests[0].headers["authorization"] == "Bearer tok-9"
    assert "tok-9" not in report.error


def test_an_http_server_on_loopback_is_refused_by_default(tmp_path: Path, mcp_http: McpHttpServer) -> None:
    _, [report] = load(tmp_path, mcp_http.source_config(), network=NetworkPolicy())
    assert report.tool_count == 0
    assert "127.0.0.1 is a loopback address" in report.error
    client = McpClient(McpServerParams(transport="http", url=mcp_http.url), guard=SsrfGuard())
    with pytest.raises(DestinationNotAllowed):
        asyncio.run(client.list_tools())


def test_a_stopped_server_falls_back_to_its_stale_discovery(tmp_path: Path) -> None:
    now = [1_000.0]
    cache = DiscoveryCache(FileCacheStore(tmp_path / "cache"), ttl_s=60, clock=lambda: now[0])
    server = start_http_server()
    try:
        catalog, [fresh] = load(tmp_path, server.source_config(), cache=cache)
        assert asyncio.run(ToolExecutor(catalog).execute(call("notes.add", a=1, b=2))).value == {"result": 3}
        _, [cached] = load(tmp_path, server.source_config(), cache=cache)
    finally:
        server.stop()
    now[0] += 120
    catalog, [stale] = load(tmp_path, server.source_config(), cache=cache, discovery_timeout_s=10)
    assert [r.origin for r in (fresh, cached, stale)] == ["fresh", "cache", "stale"]
    assert stale.tool_count == len(NAMES) and "could not be reached" in stale.error
    down = asyncio.run(ToolExecutor(catalog).execute(call("notes.add", a=1, b=2)))
    assert (down.error.code, down.error.retryable) == ("upstream_unavailable", True)

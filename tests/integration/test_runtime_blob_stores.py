"""With Blob Storage configured (Azurite), instances share what the composition root keeps: the discovery cache of
tool sources outlives an instance, and every instance sees the same circuit of a tool."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.catalog.breaker import BlobBreakerStore, BreakerState
from shared.models import ToolCall
from shared.runtime import Runtime, RuntimeSettings, build_runtime
from shared.sources.cache import BlobCacheStore
from tests.fakes.openapi_server import pets_sources_file
from tests.support import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture
def containers(azurite: Azurite) -> Iterator[dict[str, str]]:
    """Fresh container names for the source registry (and discovery cache) and the breaker; deleted afterwards."""
    from azure.storage.blob import BlobServiceClient

    names = {"WEFT_SOURCE_REGISTRY_CONTAINER": f"sources-{uuid.uuid4().hex[:12]}",
             "WEFT_BREAKER_CONTAINER": f"breakers-{uuid.uuid4().hex[:12]}"}
    yield names
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for name in names.values():
        with contextlib.suppress(ResourceNotFoundError):
            service.delete_container(name)


def instance(state: Path, azurite: Azurite, containers: dict[str, str], **extra: str) -> Runtime:
    """One app instance: its own (empty) state folder, the shared storage account."""
    env = {"WEFT_STATE_DIR": str(state), "WEFT_PAYLOAD_CONNECTION_STRING": azurite.connection_string, **containers,
           **extra}
    return build_runtime(RuntimeSettings.from_env(env))


def container(azurite: Azurite, name: str) -> Any:
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_connection_string(azurite.connection_string, name)


# ------------------------------------------------------------------------------------------------ discovery cache


def test_the_discovery_cache_outlives_the_instance(tmp_path: Path, azurite: Azurite,
                                                   containers: dict[str, str]) -> None:
    path, sid = pets_sources_file(tmp_path)
    sources = {"WEFT_TOOL_SOURCES": str(path), "WEFT_DEMO_TOOLS": "false"}
    first = instance(tmp_path / "a", azurite, containers, **sources)
    assert [(r.tool_count, r.origin) for r in first.source_reports] == [(12, "fresh")]
    assert isinstance(first.discovery_cache.store, BlobCacheStore)
    stored = [b.name for b in container(azurite, containers["WEFT_SOURCE_REGISTRY_CONTAINER"]).list_blobs()]
    assert f"discovery/{sid}.json" in stored
    assert not (tmp_path / "a" / "discovery").exists()

    (tmp_path / "pets.yaml").unlink()  # the source is down from now on
    cold = instance(tmp_path / "b", azurite, containers, **sources)  # a new instance: nothing on its disk
    assert [(r.tool_count, r.origin) for r in cold.source_reports] == [(12, "cache")]
    assert "pets.getPet" in cold.catalog

    expired = instance(tmp_path / "c", azurite, containers, WEFT_DISCOVERY_TTL_S="0", **sources)
    report = expired.source_reports[0]
    assert (report.tool_count, report.origin) == (12, "stale") and report.error


# ------------------------------------------------------------------------------------------------ circuit breaker


def call(runtime: Runtime, step: str) -> tuple[bool, str | None]:
    result = asyncio.run(runtime.executor.execute(
        ToolCall(run_id="run-breaker", step_id=step, tool="fail_always", args={"retryable": True})))
    return result.ok, result.error.code if result.error else None


def test_instances_share_the_circuit(tmp_path: Path, azurite: Azurite, containers: dict[str, str]) -> None:
    thresholds = {"WEFT_BREAKER_FAILURE_THRESHOLD": "2", "WEFT_BREAKER_COOLDOWN_S": "600"}
    a = instance(tmp_path / "a", azurite, containers, **thresholds)
    b = instance(tmp_path / "b", azurite, containers, **thresholds)
    assert a.executor.breaker is not None and isinstance(a.executor.breaker.store, BlobBreakerStore)
    assert [call(a, f"s{i}") for i in range(2)] == [(False, "tool_failed")] * 2  # the second failure opens it
    assert call(b, "elsewhere") == (False, "circuit_open"), "instance B never called the tool, yet meets the circuit"
    assert b.executor.breaker is not None and b.executor.breaker.state("fail_always").state == BreakerState.OPEN
    blobs = [blob.name for blob in container(azurite, containers["WEFT_BREAKER_CONTAINER"]).list_blobs()]
    assert blobs == ["breaker/fail_always.json"]
    assert not (tmp_path / "a" / "breakers.sqlite").exists() and not (tmp_path / "b" / "breakers.sqlite").exists()

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.catalog.breaker import BlobBreakerStore, BreakerStore, SqliteBreakerStore
from tests.support import ROOT, Azurite, DevhostProcess, devhost_env, free_port, http, wait_until


def weft_env(azurite: Azurite | None, state: Path, **extra: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": azurite.connection_string if azurite else "",
        "WEFT_STATE_DIR": str(state),
        "WEFT_PAYLOAD_DIR": str(state / "payloads"),
        "WEFT_BREAKER_FAILURE_THRESHOLD": "3",
        "WEFT_BREAKER_COOLDOWN_S": "2",
    }
    if azurite is not None:
        env["WEFT_PAYLOAD_CONNECTION_STRING"] = azurite.connection_string
        env["WEFT_SEARCH_CACHE_CONTAINER"] = "embedding-cache"
        # Circuits, the run index, quotas and the audit trail are shared through storage: one container or table
        # per state folder keeps test modules apart (two hosts of one module share a state folder's name on purpose).
        tag = hashlib.sha256(str(state).encode()).hexdigest()[:16]
        env["WEFT_BREAKER_CONTAINER"] = "breakers-" + tag
        env["WEFT_RUNS_TABLE"] = "runs" + tag
        env["WEFT_QUOTA_TABLE"] = "quotas" + tag
        env["WEFT_AUDIT_CONTAINER"] = "audit-" + tag
    env.update(extra)
    return devhost_env(env)


@pytest.fixture(scope="module")
def weft(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    """Weft's function_app.py on a devhost process, with Azurite for queues and large payloads."""
    state = tmp_path_factory.mktemp("weft")
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), weft_env(azurite, state)).start()
    proc.state_dir = state  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def breaker_store(host: DevhostProcess) -> BreakerStore:
    """Where the host keeps its circuits: the blob container with Azurite, else the state folder's SQLite file."""
    if host.env.get("WEFT_PAYLOAD_CONNECTION_STRING"):
        from azure.storage.blob import ContainerClient

        return BlobBreakerStore(ContainerClient.from_connection_string(
            host.env["WEFT_PAYLOAD_CONNECTION_STRING"], host.env["WEFT_BREAKER_CONTAINER"]))
    return SqliteBreakerStore(Path(host.env["WEFT_STATE_DIR"]) / "breakers.sqlite")


def submit(host: DevhostProcess, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, _, reply = http("POST", host.base_url + "/api/runs", body, headers=headers)
    assert status in (200, 202), reply
    return reply


def wait_run(host: DevhostProcess, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, view = http("GET", f"{host.base_url}/api/runs/{run_id}")
        if status == 200:
            return view
        assert status in (202, 404), view
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s")


def deny_after_waiting(host: DevhostProcess, steps: list[dict[str, Any]], awaiting: int, denied: list[str]
                       ) -> dict[str, Any]:
    """Run a plan until ``awaiting`` calls await approval, deny the calls ``denied`` and return the finished run."""
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]

    def all_awaiting() -> bool:
        current = http("GET", f"{host.base_url}/api/runs/{run_id}")[2]
        return len((current.get("awaiting_approval") or {}).get("calls") or []) == awaiting

    wait_until(all_awaiting, 60, f"{awaiting} calls awaiting approval")
    denial = {"approved": False, "reason": "no", "call_ids": denied}
    assert http("POST", f"{host.base_url}/api/runs/{run_id}/approve", denial)[0] == 202
    return wait_run(host, run_id)


def ends_after_restart(killed: DevhostProcess, env: dict[str, str], run_ids: list[str],
                       timeout: float = 90.0) -> list[dict[str, Any]]:
    """Start a devhost on ``killed``'s state (after a ``kill -9``) and wait for every run to end: their views."""
    second = DevhostProcess(ROOT, killed.db, free_port(), env).start()
    try:
        return [wait_run(second, run_id, timeout=timeout) for run_id in run_ids]
    finally:
        second.stop()


def run_plan(host: DevhostProcess, steps: list[dict[str, Any]], **request: Any) -> dict[str, Any]:
    reply = submit(host, {"mode": "plan", "plan": {"steps": steps}, **request})
    return wait_run(host, reply["id"])


def steps_by_id(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step_id"]: s for s in view["result"]["steps"]}

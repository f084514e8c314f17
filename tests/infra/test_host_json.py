"""host.json: what Flex Consumption needs from the Durable settings, read the way the devhost reads them, and the
per-instance memory arithmetic docs/operations.md states (kept in step with host.json, the sandbox and the Bicep)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from devhost.index import FunctionIndex
from shared.sandbox import Capacity, Limits

ROOT = Path(__file__).resolve().parents[2]
HOST = json.loads((ROOT / "host.json").read_text())
DURABLE = HOST["extensions"]["durableTask"]


def timespan(text: str) -> timedelta:
    hours, minutes, seconds = (float(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_durable_queue_polling_is_ten_seconds_or_less() -> None:
    # Durable Functions 2.x reads it from storageProvider; at the top of durableTask it would be ignored (30 s).
    assert "maxQueuePollingInterval" not in DURABLE
    interval = timespan(DURABLE["storageProvider"]["maxQueuePollingInterval"])
    assert timedelta(0) < interval <= timedelta(seconds=10)


def test_the_devhost_reads_the_durable_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKHUB_NAME", "weftcheck")
    index = FunctionIndex(app_dir=ROOT, host_config=HOST)
    assert index.task_hub == "weftcheck"
    assert index.durable_setting("maxConcurrentActivityFunctions", None) == 16
    assert index.durable_setting("maxConcurrentOrchestratorFunctions", None) == 8
    assert index.route_prefix == "api"


def test_operations_doc_states_the_memory_arithmetic_of_the_current_defaults() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    section = doc.split("### host.json on Flex Consumption", 1)[1].split("\n## ", 1)[0].replace("\n  ", " ")
    activities = DURABLE["maxConcurrentActivityFunctions"]
    sandbox = Limits().memory_bytes
    capacity = Capacity()
    cap = capacity.max_concurrent_runs
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    instance_mb = int(re.search(r"param instanceMemoryMB int = (\d+)", bicep)[1])
    assert f"`maxConcurrentActivityFunctions` ({activities})" in section
    assert f"`WEFT_SANDBOX_MEMORY_BYTES` ({sandbox // 2**20} MiB)" in section
    assert f"would need {activities * sandbox / 2**30:g} GiB" in section
    assert f"`instanceMemoryMB`: {instance_mb:,} by default" in section
    assert activities * sandbox > instance_mb * 2**20, "16 uncapped runs fit now: the cap's explanation can go"
    assert f"`WEFT_SANDBOX_MAX_CONCURRENT_RUNS` ({cap})" in section
    assert f"{cap} \N{MULTIPLICATION SIGN} {sandbox // 2**20} MiB = {cap * sandbox / 2**30:g} GiB" in section
    headroom = instance_mb * 2**20 - cap * sandbox
    assert f"leaves {headroom // 2**20} MiB of the default instance" in section
    assert headroom >= 512 * 2**20, "the cap leaves the host, the Python worker and the search model too little"
    assert cap < activities, "a cap at or above maxConcurrentActivityFunctions caps nothing"
    assert f"`WEFT_SANDBOX_QUEUE_WAIT_SECONDS` ({capacity.queue_wait_seconds:g} s" in section
    assert f"`WEFT_SANDBOX_RETRY_ATTEMPTS` ({capacity.retry_attempts})" in section
    assert f"`WEFT_SANDBOX_RETRY_INTERVAL_MS` ({capacity.retry_interval_ms:,} ms)" in section

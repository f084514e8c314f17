"""The composition root: where it keeps shared state when no Blob Storage is configured (everything under
WEFT_STATE_DIR, so a read-only working directory never matters) and how settings that bound one another combine."""

from __future__ import annotations

import datetime as dt
import importlib
import time
from pathlib import Path

import pytest

from shared.catalog.breaker import BlobBreakerStore, CircuitBreaker, SqliteBreakerStore
from shared.runtime import RuntimeSettings, _breaker_store, build_runtime
from shared.sources.cache import FileCacheStore
from shared.sources.config import SourceSettings
from tests.fakes.openapi_server import pets_sources_file


def test_the_discovery_cache_defaults_to_the_state_dir(tmp_path: Path) -> None:
    path, sid = pets_sources_file(tmp_path)
    state = tmp_path / "state"
    runtime = build_runtime(RuntimeSettings(demo_tools=False, state_dir=str(state),
                                            sources=SourceSettings(sources_file=str(path))))
    assert [(r.alias, r.tool_count, r.origin) for r in runtime.source_reports] == [("pets", 12, "fresh")]
    assert (state / "discovery" / f"{sid}.json").is_file()
    store = runtime.discovery_cache.store
    assert isinstance(store, FileCacheStore) and store.folder == state / "discovery"


def test_weft_discovery_cache_dir_wins_over_the_state_dir(tmp_path: Path) -> None:
    path, sid = pets_sources_file(tmp_path)
    settings = RuntimeSettings.from_env({"WEFT_STATE_DIR": str(tmp_path / "state"), "WEFT_DEMO_TOOLS": "false",
                                         "WEFT_TOOL_SOURCES": str(path),
                                         "WEFT_DISCOVERY_CACHE_DIR": str(tmp_path / "elsewhere")})
    build_runtime(settings)
    assert (tmp_path / "elsewhere" / f"{sid}.json").is_file()
    assert not (tmp_path / "state" / "discovery").exists()


def test_a_restarted_instance_reuses_the_discovery(tmp_path: Path) -> None:
    path, _ = pets_sources_file(tmp_path)
    settings = RuntimeSettings(demo_tools=False, state_dir=str(tmp_path / "state"),
                               sources=SourceSettings(sources_file=str(path)))
    build_runtime(settings)
    (tmp_path / "pets.yaml").unlink()  # the source is gone: only the cache can answer
    again = build_runtime(settings)
    assert [(r.tool_count, r.origin) for r in again.source_reports] == [(12, "cache")]


def test_an_unreachable_breaker_store_lets_calls_through_quickly(tmp_path: Path) -> None:
    dead = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")  # nothing listens on the discard port
    store = _breaker_store(RuntimeSettings.from_env({"WEFT_PAYLOAD_CONNECTION_STRING": dead}))
    assert isinstance(store, BlobBreakerStore)
    started = time.monotonic()
    assert CircuitBreaker(store).allow("calculate"), "the breaker fails open"
    assert time.monotonic() - started < 10, "bounded retries, not the storage SDK's minute"


def test_without_blob_storage_the_breaker_is_a_file_in_the_state_dir(tmp_path: Path) -> None:
    runtime = build_runtime(RuntimeSettings(state_dir=str(tmp_path / "state")))
    store = runtime.executor.breaker.store if runtime.executor.breaker else None
    assert isinstance(store, SqliteBreakerStore) and Path(store.path) == tmp_path / "state" / "breakers.sqlite"


@pytest.mark.parametrize(
    ("env", "inline"),
    [
        pytest.param({}, 16384, id="defaults"),
        pytest.param({"WEFT_TOOL_MAX_RESULT_BYTES": "1000"}, 1000, id="tool-limit-lowers-it"),
        pytest.param({"WEFT_TOOL_MAX_RESULT_BYTES": "1000000"}, 16384, id="tool-limit-cannot-raise-it"),
        pytest.param({"WEFT_PAYLOAD_INLINE_MAX_BYTES": "1000000"}, 262144, id="payload-threshold-cannot-either"),
    ],
)
def test_the_inline_result_limit_is_the_smaller_of_two_settings(tmp_path: Path, env: dict[str, str],
                                                                inline: int) -> None:
    settings = RuntimeSettings.from_env({"WEFT_STATE_DIR": str(tmp_path), "WEFT_DEMO_TOOLS": "false", **env})
    assert settings.inline_result_bytes == inline
    assert build_runtime(settings).executor.settings.max_result_bytes == inline


def test_async_callers_build_the_runtime_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import threading

    from shared import runtime as runtime_module

    monkeypatch.setenv("WEFT_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEFT_DEMO_TOOLS", "false")
    monkeypatch.setenv("AzureWebJobsStorage", "")
    runtime_module.reset_runtime(None)
    built_on: list[str] = []
    real_build = runtime_module.build_runtime

    def recording_build(*args: object, **kwargs: object) -> runtime_module.Runtime:
        built_on.append(threading.current_thread().name)
        return real_build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_module, "build_runtime", recording_build)

    async def main() -> tuple[runtime_module.Runtime, runtime_module.Runtime, str]:
        first = await runtime_module.get_runtime_async()
        return first, await runtime_module.get_runtime_async(), threading.current_thread().name

    try:
        first, second, loop_thread = asyncio.run(main())
        assert first is second is runtime_module.get_runtime()
        assert len(built_on) == 1 and built_on[0] != loop_thread
    finally:
        runtime_module.reset_runtime(None)


def test_long_polling_reads_the_status_on_a_configured_backoff() -> None:
    assert RuntimeSettings.from_env({}).run_wait_poll_s == (0.05, 1.0)
    env = {"WEFT_RUN_WAIT_POLL_FIRST_MS": "20", "WEFT_RUN_WAIT_POLL_MAX_MS": "500"}
    assert RuntimeSettings.from_env(env).run_wait_poll_s == (0.02, 0.5)
    with pytest.raises(ValueError, match="WEFT_RUN_WAIT_POLL_MAX_MS"):
        RuntimeSettings.from_env({"WEFT_RUN_WAIT_POLL_FIRST_MS": "2000", "WEFT_RUN_WAIT_POLL_MAX_MS": "1000"})
    with pytest.raises(ValueError):
        RuntimeSettings.from_env({"WEFT_RUN_WAIT_POLL_FIRST_MS": "0"})


_STRICT_PROBE = "import os, function_app; print(os.environ.get('AZURE_FUNCTIONS_DURABLE_STRICT_TYPING'))"


@pytest.mark.parametrize(("configured", "seen"), [(None, "1"), ("0", "0")])
def test_the_app_turns_on_strict_durable_typing_unless_configured(configured: str | None, seen: str) -> None:
    import subprocess
    import sys

    from tests.support import ROOT, devhost_env

    env = devhost_env({"AzureWebJobsStorage": "", "WEFT_SEARCH_LOAD_MODEL_WITH_APP": "false"})
    env.pop("AZURE_FUNCTIONS_DURABLE_STRICT_TYPING", None)
    if configured is not None:
        env["AZURE_FUNCTIONS_DURABLE_STRICT_TYPING"] = configured
    done = subprocess.run([sys.executable, "-c", _STRICT_PROBE], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == seen


_TIMESTAMPS = [
    "2026-12-07T20:17:37.5419400Z",  # the host's 7-digit fractions
    "2026-12-07T20:17:37.541940Z",
    "2026-12-07T20:17:37Z",
    "2026-12-07T20:17:37.5+01:00",
    "2026-12-07T20:17:37",
    "0001-01-01T00:00:00Z",
    "Mon, 07 Dec 2026 20:17:37 GMT",  # not ISO 8601: the SDK's own parser
    "December 7, 2026 8:17 PM",
]


@pytest.mark.parametrize("text", _TIMESTAMPS)
def test_durable_timestamps_parse_to_what_the_sdks_parser_gives(text: str) -> None:
    from dateutil.parser import parse

    from orchestrations.durable import parse_timestamp

    assert parse_timestamp(text) == parse(text)
    assert parse_timestamp(text).utcoffset() == parse(text).utcoffset()


def test_the_app_speeds_up_the_sdks_replays() -> None:
    """Importing the app swaps the SDK's dateutil parser (~40 µs a timestamp, on every replay's every event) for
    parse_timestamp (a history event and a status read come out with the same instants), and the replay executor
    builds its namedtuple class once."""
    from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
    from azure.durable_functions.models.history.HistoryEvent import HistoryEvent

    import function_app  # noqa: F401  (what the Functions host imports)
    from orchestrations.durable import parse_timestamp

    event = HistoryEvent(EventType=12, EventId=-1, IsPlayed=False, Timestamp=_TIMESTAMPS[0])
    assert event.timestamp == dt.datetime(2026, 12, 7, 20, 17, 37, 541940, tzinfo=dt.UTC)
    status = DurableOrchestrationStatus.from_json({"createdTime": _TIMESTAMPS[1], "lastUpdatedTime": _TIMESTAMPS[2]})
    assert (status.created_time, status.last_updated_time) == (parse_timestamp(_TIMESTAMPS[1]),
                                                              parse_timestamp(_TIMESTAMPS[2]))
    for module in ("azure.durable_functions.models.history.HistoryEvent",
                   "azure.durable_functions.models.DurableOrchestrationStatus"):
        assert vars(importlib.import_module(module))["dt_parse"] is parse_timestamp
    executor = importlib.import_module("azure.durable_functions.models.TaskOrchestrationExecutor")
    assert executor.namedtuple("P", "a b") is executor.namedtuple("P", "a b")  # one class, not one per replay

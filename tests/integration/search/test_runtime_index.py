"""The runtime builds the search index at start on a background thread; a restart with the same catalog memory-maps
the index saved beside the embedding cache; a build in progress holds up nothing but searches."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from shared.runtime import Runtime, RuntimeSettings, build_runtime


def _settings(tmp_path: Path, **env: str) -> RuntimeSettings:
    return RuntimeSettings.from_env({"WEFT_STATE_DIR": str(tmp_path / "state"),
                                     "WEFT_SEARCH_CACHE_DIR": str(tmp_path / "search-cache"), **env})


def _wait_loaded(runtime: Runtime, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not runtime.search_index_loaded:
        assert time.monotonic() < deadline, "the search index was not built in the background"
        time.sleep(0.05)


def test_the_index_is_built_at_start_and_reloaded_from_disk_on_restart(tmp_path: Path) -> None:
    first = build_runtime(_settings(tmp_path))
    _wait_loaded(first)  # nobody asked for it: the start-up warm-up built it
    index = first.search_index
    assert not index.loaded_from_disk and len(index) == len(first.catalog) > 0
    assert list((tmp_path / "search-cache").glob("index-*"))
    query = "add two numbers"
    expected = [h.name for h in index.search(query, 3)]

    second = build_runtime(_settings(tmp_path))
    _wait_loaded(second)
    assert second.search_index.loaded_from_disk
    assert [h.name for h in second.search_index.search(query, 3)] == expected


def test_without_warm_at_start_the_first_search_builds_it(tmp_path: Path) -> None:
    runtime = build_runtime(_settings(tmp_path, WEFT_SEARCH_WARM_AT_START="false"))
    assert not runtime.search_index_loaded
    assert runtime.search_index.search("add two numbers", 1)
    assert runtime.search_index_loaded


def test_a_build_in_progress_holds_up_only_searches(tmp_path: Path) -> None:
    runtime = build_runtime(_settings(tmp_path, WEFT_SEARCH_WARM_AT_START="false"))
    found: list[int] = []
    with runtime._search_lock:  # as a long build would
        searcher = threading.Thread(target=lambda: found.append(len(runtime.search_index)))
        searcher.start()
        assert runtime.run_index is not None and runtime.trust is not None  # other lazy parts answer meanwhile
        searcher.join(0.2)
        assert searcher.is_alive() and not found  # the search waits for the build
    searcher.join(120)
    assert found == [len(runtime.catalog)]

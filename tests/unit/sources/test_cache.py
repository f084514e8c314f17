"""The discovery cache: JSON entries, TTL with an injected clock, stale-on-error, unreadable entries, stores."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path

import pytest

from shared.errors import UpstreamUnavailable
from shared.models import ToolSpec
from shared.sources.cache import DiscoveredTool, Discovery, DiscoveryCache, FileCacheStore

SOURCE = hashlib.sha256(b"source-a").hexdigest()
OTHER = hashlib.sha256(b"source-b").hexdigest()


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Discoverer:
    """Counts discoveries; answers with ``tools`` or raises ``error``."""

    def __init__(self, *names: str) -> None:
        self.tools = [DiscoveredTool(ToolSpec(name=name, source="mcp"), {"tool": name}) for name in names]
        self.error: Exception | None = None
        self.calls = 0

    async def __call__(self) -> list[DiscoveredTool]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.tools)


def make(tmp_path: Path, ttl: float = 60.0) -> tuple[DiscoveryCache, Clock]:
    clock = Clock()
    return DiscoveryCache(FileCacheStore(tmp_path), ttl_s=ttl, clock=clock), clock


def names(found: Discovery) -> list[str]:
    return [tool.spec.name for tool in found.tools]


def test_miss_then_hit_then_refresh_after_the_ttl(tmp_path: Path) -> None:
    cache, clock = make(tmp_path)
    discover = Discoverer("a", "b")
    first = asyncio.run(cache.get_or_discover(SOURCE, discover))
    assert (first.origin, names(first.discovery), discover.calls) == ("fresh", ["a", "b"], 1)
    clock.now += 59
    second = asyncio.run(cache.get_or_discover(SOURCE, discover))
    assert (second.origin, discover.calls) == ("cache", 1)
    assert second.discovery == first.discovery
    clock.now += 2
    discover.tools = discover.tools[:1]
    third = asyncio.run(cache.get_or_discover(SOURCE, discover))
    assert (third.origin, names(third.discovery), discover.calls) == ("fresh", ["a"], 2)
    assert third.discovery.version != first.discovery.version


def test_refresh_skips_a_fresh_entry(tmp_path: Path) -> None:
    cache, _ = make(tmp_path)
    discover = Discoverer("a")
    asyncio.run(cache.get_or_discover(SOURCE, discover))
    again = asyncio.run(cache.get_or_discover(SOURCE, discover, refresh=True))
    assert (again.origin, discover.calls) == ("fresh", 2)


def test_a_failed_refresh_falls_back_to_the_stale_entry_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, clock = make(tmp_path)
    discover = Discoverer("a")
    fresh = asyncio.run(cache.get_or_discover(SOURCE, discover)).discovery
    clock.now += 3600
    discover.error = UpstreamUnavailable("server down")
    with caplog.at_level(logging.WARNING, logger="shared.sources.cache"):
        stale = asyncio.run(cache.get_or_discover(SOURCE, discover))
    assert (stale.origin, stale.discovery, stale.error) == ("stale", fresh, "UpstreamUnavailable: server down")
    assert "using the cached discovery from 3600 s ago" in caplog.text
    discover.error = None
    assert asyncio.run(cache.get_or_discover(SOURCE, discover)).origin == "fresh"


def test_a_failed_discovery_without_a_cached_entry_raises(tmp_path: Path) -> None:
    cache, _ = make(tmp_path)
    discover = Discoverer()
    discover.error = UpstreamUnavailable("server down")
    with pytest.raises(UpstreamUnavailable, match="server down"):
        asyncio.run(cache.get_or_discover(SOURCE, discover))


def test_entries_are_json_keyed_by_source_and_versioned_by_content(tmp_path: Path) -> None:
    cache, _ = make(tmp_path)
    asyncio.run(cache.get_or_discover(SOURCE, Discoverer("a")))
    asyncio.run(cache.get_or_discover(OTHER, Discoverer("a")))
    stored = json.loads((tmp_path / f"{SOURCE}.json").read_text())
    assert stored["source_id"] == SOURCE and stored["format"] == 1
    assert stored["tools"][0] == {"spec": ToolSpec(name="a", source="mcp").model_dump(mode="json"),
                                  "binding": {"tool": "a"}}
    assert cache.get(SOURCE).version == cache.get(OTHER).version  # same offer, same version
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([f"{SOURCE}.json", f"{OTHER}.json"])


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"format": 99}', id="foreign-format"),
        pytest.param(b'{"format": 1, "source_id": "x"}', id="missing-fields"),
        pytest.param(None, id="tampered-version"),
        pytest.param(b"\x80\x04\x95pickle", id="pickle-bytes"),
    ],
)
def test_unreadable_entries_are_ignored_and_rediscovered(tmp_path: Path, content: bytes | None) -> None:
    cache, _ = make(tmp_path)
    asyncio.run(cache.get_or_discover(SOURCE, Discoverer("a")))
    path = tmp_path / f"{SOURCE}.json"
    if content is None:
        data = json.loads(path.read_text())
        data["tools"][0]["spec"]["description"] = "changed behind the cache's back"
        content = json.dumps(data).encode()
    path.write_bytes(content)
    assert cache.get(SOURCE) is None
    discover = Discoverer("b")
    assert names(asyncio.run(cache.get_or_discover(SOURCE, discover)).discovery) == ["b"]


def test_an_entry_stored_under_another_key_is_not_served(tmp_path: Path) -> None:
    cache, _ = make(tmp_path)
    asyncio.run(cache.get_or_discover(SOURCE, Discoverer("a")))
    (tmp_path / f"{OTHER}.json").write_bytes((tmp_path / f"{SOURCE}.json").read_bytes())
    assert cache.get(OTHER) is None


def test_entries_from_the_future_are_not_fresh(tmp_path: Path) -> None:
    cache, clock = make(tmp_path)
    discover = Discoverer("a")
    asyncio.run(cache.get_or_discover(SOURCE, discover))
    clock.now -= 10  # the clock went back (another machine wrote the entry)
    assert asyncio.run(cache.get_or_discover(SOURCE, discover)).origin == "fresh"


def test_a_zero_ttl_always_rediscovers(tmp_path: Path) -> None:
    cache, _ = make(tmp_path, ttl=0)
    discover = Discoverer("a")
    asyncio.run(cache.get_or_discover(SOURCE, discover))
    asyncio.run(cache.get_or_discover(SOURCE, discover))
    assert discover.calls == 2


def test_a_failing_store_does_not_fail_discovery(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    cache = DiscoveryCache(FileCacheStore(blocker / "cache"), ttl_s=60)
    found = asyncio.run(cache.get_or_discover(SOURCE, Discoverer("a")))
    assert (found.origin, names(found.discovery)) == ("fresh", ["a"])
    assert "storing the discovery" in caplog.text


@pytest.mark.parametrize("key", [pytest.param("../escape", id="traversal"), pytest.param("ABC", id="not-a-digest")])
def test_store_keys_must_be_digests(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        FileCacheStore(tmp_path).write(key, b"{}")


def test_file_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = FileCacheStore(tmp_path / "nested")
    store.write(SOURCE, b"{}")
    store.write(SOURCE, b'{"a": 1}')
    assert [path.name for path in (tmp_path / "nested").iterdir()] == [f"{SOURCE}.json"]
    assert store.read(SOURCE) == b'{"a": 1}'
    assert store.read(OTHER) is None

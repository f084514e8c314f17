"""The source registry on a local file: conditional writes, idempotent adds, concurrent writers, bad documents."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from shared.errors import NotConfigured, UpstreamUnavailable
from shared.sources.config import AuthConfig, OpenApiSourceConfig, parse_source, source_id
from shared.sources.registry import FileRegistryStore, RegistryConflict, SourceRegistry


def openapi(alias: str, **extra: Any) -> OpenApiSourceConfig:
    config = parse_source({"type": "openapi", "url": f"https://{alias}.example/openapi.json", "alias": alias, **extra})
    assert isinstance(config, OpenApiSourceConfig)
    return config


def no_sleep(_: float) -> None:
    """Conflicts are retried at once: the tests do not wait."""


@pytest.fixture
def store(tmp_path: Path) -> FileRegistryStore:
    return FileRegistryStore(tmp_path / "state" / "source-registry.json")


# ------------------------------------------------------------------------------------------------------- store


def test_a_missing_file_has_no_version_and_no_document(store: FileRegistryStore) -> None:
    assert store.version() is None
    assert store.read() == (None, None)
    assert not store.path.parent.exists(), "reading creates nothing"


def test_writes_are_conditional_on_the_version_read(store: FileRegistryStore) -> None:
    first = store.write(b'{"a": 1}', if_match=None)
    assert store.version() == first and store.read() == (b'{"a": 1}', first)
    with pytest.raises(RegistryConflict):
        store.write(b'{"b": 2}', if_match=None)  # "only if there is none", but there is one
    second = store.write(b'{"a": 2}', if_match=first)
    assert second != first and store.version() == second
    with pytest.raises(RegistryConflict):
        store.write(b'{"a": 3}', if_match=first)  # a stale version
    assert store.read() == (b'{"a": 2}', second)
    leftovers = sorted(p.name for p in store.path.parent.iterdir())
    assert leftovers == ["source-registry.json", "source-registry.json.lock"], "no temporary files are left"


# ---------------------------------------------------------------------------------------------------- registry


def test_add_stores_the_validated_entry_as_json_and_is_idempotent(store: FileRegistryStore) -> None:
    registry = SourceRegistry(store, clock=lambda: 1700.0)
    config = openapi("pets", auth={"secret": "petstore-token"})
    assert registry.add(config) is True
    version = registry.version()
    assert registry.add(config) is False
    assert registry.add(parse_source(config.model_dump(mode="json"))) is False, "the same source, parsed again"
    assert registry.version() == version, "an idempotent add writes nothing"
    document = json.loads(store.path.read_text())
    assert document == {"format": 1, "sources": [{
        "id": source_id(config), "config": config.model_dump(mode="json"), "registered_at": 1700.0,
    }]}
    assert document["sources"][0]["config"]["auth"] == {"secret": "petstore-token", "header": "Authorization",
                                                        "scheme": "Bearer"}, "a secret's name, never its value"
    snapshot = registry.read()
    assert [(s.id, s.config, s.registered_at) for s in snapshot.sources] == [(source_id(config), config, 1700.0)]
    assert snapshot.version == version and snapshot.problems == ()
    assert isinstance(snapshot.sources[0].config.auth, AuthConfig)


def test_an_empty_registry_reads_as_no_sources(store: FileRegistryStore) -> None:
    snapshot = SourceRegistry(store).read()
    assert (snapshot.sources, snapshot.version, snapshot.problems) == ((), None, ())


def test_a_write_that_loses_a_race_reapplies_its_change(store: FileRegistryStore) -> None:
    other = SourceRegistry(FileRegistryStore(store.path))

    class RacedStore(FileRegistryStore):
        """Another instance registers a source between this writer's read and its first write."""

        raced = False

        def write(self, data: bytes, *, if_match: str | None) -> str:
            if not self.raced:
                self.raced = True
                other.add(openapi("theirs"))
            return super().write(data, if_match=if_match)

    mine = SourceRegistry(RacedStore(store.path), sleep=no_sleep)
    assert mine.add(openapi("mine")) is True
    assert [s.config.alias for s in mine.read().sources] == ["theirs", "mine"]


def test_concurrent_registrations_from_many_writers_are_all_kept(store: FileRegistryStore) -> None:
    writers, per_writer = 6, 5
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def register(writer: int) -> None:
        registry = SourceRegistry(FileRegistryStore(store.path), max_attempts=200, sleep=no_sleep)
        barrier.wait()
        try:
            for n in range(per_writer):
                registry.add(openapi(f"w{writer}_{n}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    aliases = sorted(s.config.alias or "" for s in SourceRegistry(store).read().sources)
    assert aliases == sorted(f"w{w}_{n}" for w in range(writers) for n in range(per_writer))


def test_endless_conflicts_give_up_as_upstream_unavailable(store: FileRegistryStore) -> None:
    class AlwaysRaced(FileRegistryStore):
        def write(self, data: bytes, *, if_match: str | None) -> str:
            raise RegistryConflict("another writer, every time")

    registry = SourceRegistry(AlwaysRaced(store.path), max_attempts=3, sleep=no_sleep)
    with pytest.raises(UpstreamUnavailable, match="3 write conflicts"):
        registry.add(openapi("pets"))


@pytest.mark.parametrize(("content", "problem"), [
    pytest.param(b"{not json", "not JSON", id="not-json"),
    pytest.param(b'{"format": 2, "sources": []}', "expected registry format 1, found 2", id="newer-format"),
    pytest.param(b"[]", "found 'list'", id="a-list"),
    pytest.param(b'{"format": 1, "sources": {"a": 1}}', "sources must be a list", id="sources-not-a-list"),
])
def test_an_unusable_document_is_reported_and_never_overwritten(
    store: FileRegistryStore, content: bytes, problem: str
) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(content)
    registry = SourceRegistry(store)
    snapshot = registry.read()
    assert snapshot.sources == () and problem in snapshot.problems[0]
    with pytest.raises(NotConfigured, match=problem):
        registry.add(openapi("pets"))
    assert store.path.read_bytes() == content


def test_entries_that_do_not_validate_are_skipped_and_named(store: FileRegistryStore) -> None:
    good = openapi("good")
    entries = [
        {"id": "x", "config": {"type": "openapi", "alias": "no-location"}, "registered_at": 1},
        {"id": source_id(good), "config": good.model_dump(mode="json"), "registered_at": 2},
        {"id": "y", "config": {"type": "grpc"}, "registered_at": 3},
    ]
    store.write(json.dumps({"format": 1, "sources": entries}).encode(), if_match=None)
    registry = SourceRegistry(store)
    snapshot = registry.read()
    assert [s.config for s in snapshot.sources] == [good]
    assert len(snapshot.problems) == 2 and "sources[0].config" in snapshot.problems[0]
    assert registry.add(openapi("later")) is True
    assert len(json.loads(store.path.read_text())["sources"]) == 4, "entries this app cannot read are kept"

"""The validated-catalog cache: a warm load reads what an earlier load validated, and anything doubtful is validated
again."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.catalog import Catalog, Tool
from shared.catalog.file_cache import CatalogFileCache
from shared.errors import InvalidRequest
from shared.models import ToolSpec, canonical_json

ENTRIES = [
    {"name": "lookup", "description": "Look up.", "parameters": {"type": "object", "properties": {
        "q": {"type": "string", "description": "The query."}}, "required": ["q"]}, "tags": ["search"], "timeout_s": 3},
    {"type": "function", "function": {"name": "wrapped", "description": "W.", "strict": True,
                                      "parameters": {"type": "object", "properties": {}}},
     "side_effects": True, "idempotent": False, "retry": {"max_attempts": 1}},
    {"name": "plain"},
]


def _write(path: Path, entries: object) -> Path:
    path.write_text(json.dumps({"tools": entries}))
    return path


def _entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "catalog-files").glob("catalog-*.jsonl"))


def _rewrite_body(entry: Path, edit: Callable[[bytes], bytes]) -> None:
    """Change a saved entry's body and sign it again, so that only what it says decides."""
    head, _, body = entry.read_bytes().partition(b"\n")
    body = edit(body)
    meta = {**json.loads(head), "sha256": hashlib.sha256(body).hexdigest()}
    entry.write_bytes(json.dumps(meta).encode() + b"\n" + body)


def test_a_second_load_of_the_same_file_reads_the_cache(tmp_path: Path) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    first = Catalog()
    first.load_file(path, cache_dir=cache_dir)
    [entry] = _entries(cache_dir)
    second = Catalog()
    loaded = second.load_file(path, cache_dir=cache_dir)
    assert [t.name for t in loaded] == ["lookup", "wrapped", "plain"]
    assert second.specs() == first.specs() and second.version == first.version
    assert second.get("wrapped").spec.retry.max_attempts == 1 and second.get("lookup").spec.timeout_s == 3.0

    _rewrite_body(entry, lambda body: body.replace(b"Look up.", b"Cached."))
    assert Catalog().load_file(path, cache_dir=cache_dir)[0].spec.description == "Cached."


def test_cached_and_validated_catalogs_agree_on_everything_a_reader_sees(tmp_path: Path) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    validated = Catalog()
    validated.load_file(path)
    Catalog().load_file(path, cache_dir=cache_dir)
    cached = Catalog()
    cached.load_file(path, cache_dir=cache_dir)
    assert cached.version == validated.version == hashlib.sha256(
        canonical_json([s.model_dump(mode="json") for s in validated.specs()]).encode()).hexdigest()
    assert cached.specs() == validated.specs()
    assert [t.spec.model_dump() for t in map(cached.get, cached.names())] == [s.model_dump() for s in validated.specs()]
    assert cached.get("lookup").check_args({}) == validated.get("lookup").check_args({})
    assert cached.get("lookup") == validated.get("lookup")
    assert cached.render_python_stub("lookup") == validated.render_python_stub("lookup")
    assert [dict(e) for e in cached.search_entries()] == [dict(e) for e in validated.search_entries()] == [
        {"name": s.name, "description": s.description, "parameters": s.parameters, "tags": s.tags,
         "source": s.source} for s in validated.specs()]


def test_a_changed_file_is_validated_again_and_a_bad_entry_still_rejected(tmp_path: Path) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    Catalog().load_file(path, cache_dir=cache_dir)
    _write(path, [*ENTRIES, {"name": "x", "colour": 1}])
    with pytest.raises(InvalidRequest) as caught:
        Catalog().load_file(path, cache_dir=cache_dir)
    assert str(path) in caught.value.message and caught.value.field == "tools[3].colour"
    assert len(_entries(cache_dir)) == 1  # nothing saved for the rejected file


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data.replace(b"Look up.", b"Look at."), id="body-changed"),
        pytest.param(lambda data: b"not json\n" + data.partition(b"\n")[2], id="header-garbage"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_damaged_entry_is_ignored_and_rewritten(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    Catalog().load_file(path, cache_dir=cache_dir)
    [entry] = _entries(cache_dir)
    whole = entry.read_bytes()
    entry.write_bytes(damage(whole))
    catalog = Catalog()
    catalog.load_file(path, cache_dir=cache_dir)
    assert catalog.get("lookup").spec.description == "Look up." and len(catalog) == 3
    assert entry.read_bytes() == whole


def test_a_wrong_line_count_is_damage(tmp_path: Path) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    Catalog().load_file(path, cache_dir=cache_dir)
    [entry] = _entries(cache_dir)
    _rewrite_body(entry, lambda body: body.rsplit(b"\n", 2)[0] + b"\n")  # the last tool's line gone
    assert Catalog().load_file(path, cache_dir=cache_dir)[2].name == "plain"


def test_files_with_impl_or_keys_json_cannot_carry_are_not_cached(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    with_impl = _write(tmp_path / "impl.json", [{"name": "add", "impl": "tests.unit.catalog.test_catalog:impl_add"}])
    int_keys = tmp_path / "int_keys.yaml"  # YAML keys may be numbers; JSON would give them back as strings
    int_keys.write_text("- name: coded\n  parameters:\n    type: object\n    properties:\n"
                        "      1: {type: string}\n")
    for path in (with_impl, int_keys, with_impl, int_keys):
        catalog = Catalog()
        catalog.load_file(path, cache_dir=cache_dir)
    assert list(catalog.get("coded").spec.parameters["properties"]) == [1]
    assert _entries(cache_dir) == []


def test_yaml_and_json_of_the_same_bytes_have_different_keys() -> None:
    assert CatalogFileCache.key(b"[]", "json") != CatalogFileCache.key(b"[]", "yaml")
    assert CatalogFileCache.key(b"[]", "json") != CatalogFileCache.key(b"[ ]", "json")


def test_a_cached_load_conflicting_with_a_registered_tool_names_the_file(tmp_path: Path) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    Catalog().load_file(path, cache_dir=cache_dir)
    catalog = Catalog([Tool(ToolSpec(name="plain"))])
    with pytest.raises(InvalidRequest, match="already registered") as caught:
        catalog.load_file(path, cache_dir=cache_dir)
    assert str(path) in caught.value.message and len(catalog) == 1
    assert len(catalog.load_file(path, cache_dir=cache_dir, replace=True)) == 3


def test_entries_unused_for_a_week_or_beyond_the_newest_32_are_pruned(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    files = [_write(tmp_path / f"t{i}.json", [{"name": f"t{i}"}]) for i in range(34)]
    for path in files[:5]:
        Catalog().load_file(path, cache_dir=cache_dir)
    saved = {entry.stat().st_ino for entry in _entries(cache_dir)}
    for path in files[:5]:  # five files loaded in turn again: every one is read back, none validated and saved anew
        Catalog().load_file(path, cache_dir=cache_dir)
    assert len(saved) == 5 and {entry.stat().st_ino for entry in _entries(cache_dir)} == saved
    [old] = [entry for entry in _entries(cache_dir) if entry.read_bytes().count(b'"t0"')]
    os.utime(old, (time.time() - 8 * 86_400,) * 2)
    Catalog().load_file(files[5], cache_dir=cache_dir)
    assert len(_entries(cache_dir)) == 5 and old not in _entries(cache_dir)
    for path in files[6:]:
        Catalog().load_file(path, cache_dir=cache_dir)
    assert len(_entries(cache_dir)) == 32


def test_a_cache_folder_open_to_others_is_neither_read_nor_written(tmp_path: Path) -> None:
    path, cache_dir = _write(tmp_path / "tools.json", ENTRIES), tmp_path / "cache"
    Catalog().load_file(path, cache_dir=cache_dir)
    [entry] = _entries(cache_dir)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    _rewrite_body(entry, lambda body: body.replace(b"Look up.", b"Planted."))
    assert Catalog().load_file(path, cache_dir=cache_dir)[0].spec.description == "Planted."  # read back as is
    (cache_dir / "catalog-files").chmod(0o777)  # now another local user could have written that entry
    assert Catalog().load_file(path, cache_dir=cache_dir)[0].spec.description == "Look up."


def test_an_unwritable_cache_folder_does_not_fail_the_load(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    catalog = Catalog()
    catalog.load_file(_write(tmp_path / "tools.json", ENTRIES), cache_dir=blocker / "cache")
    assert len(catalog) == 3


def test_tools_are_immutable_and_compare_by_content() -> None:
    entry = Tool(ToolSpec(name="a", description="A."))
    with pytest.raises(AttributeError):
        entry.name = "b"  # type: ignore[misc]
    assert entry == Tool(ToolSpec(name="a", description="A.")) != Tool(ToolSpec(name="a"))
    assert hash(entry) == hash(Tool(ToolSpec(name="a", description="A.")))
    assert "description='A.'" in repr(entry)

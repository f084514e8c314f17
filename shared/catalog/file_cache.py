"""Validated catalog files on local disk, so that a warm start does not validate 100k tool specs again.

Validating a catalog file costs about a millisecond per tool (the 2020-12 metaschema check of each parameters schema
dominates): minutes at 100k tools. The outcome is a pure function of the file's bytes and of the code that validates
them, so :meth:`Catalog.load_file <shared.catalog.Catalog.load_file>` saves each validated spec's canonical JSON under
a key made of both, and a later process with the same file and code reads it back without parsing a spec until it is
used. Layout, one file per catalog file in the cache folder::

    catalog-files/catalog-<key>.jsonl
                            line 1: {"format", "key", "count", "sha256"}; line 2: the tool names (a JSON list);
                            then ``count`` lines, each the canonical JSON of the same tool's validated spec

The entries are read back as validated, so their folder must be the user's own and closed to others (else nothing is
read or saved there: a planted entry could turn off a tool's approval). A file is written to a temporary name and
renamed into place, so a reader sees a whole file or none; ``sha256`` (of everything after the first line) catches a
damaged one, which is then ignored (the catalog file is validated again and the entry rewritten). Entries not used
for ``max_age_s`` are deleted, and beyond the ``max_kept`` most recently used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pydantic
import pydantic_core
import yaml

from shared.cache_folders import code_key, private_folder, prune_by_use

__all__ = ["CACHE_FORMAT", "CatalogFileCache"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bump when the layout changes. Changes to the validating code need no bump: its source is part of every key."""

_CODE_FILES = ("catalog/catalog.py", "catalog/tool.py", "catalog/file_cache.py", "catalog/schema.py", "models.py",
               "errors.py")
_code_fingerprint: str | None = None


def _fingerprint() -> str:
    """A hash of the code and library versions that decide whether a spec is valid and what it becomes."""
    global _code_fingerprint
    if _code_fingerprint is None:
        shared = Path(__file__).resolve().parents[1]
        versions = [pydantic.VERSION, pydantic_core.__version__, yaml.__version__, metadata.version("jsonschema")]
        _code_fingerprint = code_key(*(shared / relative for relative in _CODE_FILES),
                                     extra=" ".join([str(CACHE_FORMAT), *_CODE_FILES, *versions]))
    return _code_fingerprint


class CatalogFileCache:
    """Validated catalog files in a local folder (created on first save)."""

    def __init__(self, root: Path | str, *, max_kept: int = 32, max_age_s: float = 7 * 86_400) -> None:
        self.root = Path(root) / "catalog-files"
        self._max_kept = max(1, max_kept)
        self._max_age_s = max_age_s

    @staticmethod
    def key(content: bytes, kind: str) -> str:
        """The entry name for a catalog file's bytes read as ``kind`` (``json`` or ``yaml``) by this code."""
        digest = hashlib.sha256(f"{_fingerprint()}\n{kind}\n".encode())
        digest.update(content)
        return digest.hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.root / f"catalog-{key}.jsonl"

    def load(self, key: str) -> tuple[list[str], list[bytes]] | None:
        """The names of the tools saved under ``key`` and the canonical JSON of their specs, in the same order;
        ``None`` if there is no whole entry."""
        path = self._path(key)
        if not path.is_file() or not private_folder(self.root):
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            lines = data.split(b"\n")
            meta = json.loads(lines[0])
            if (meta.get("format") != CACHE_FORMAT or meta.get("key") != key
                    or meta.get("sha256") != hashlib.sha256(memoryview(data)[len(lines[0]) + 1:]).hexdigest()):
                raise ValueError("header does not match the body")
            names, count = json.loads(lines[1]), int(meta["count"])
            if len(names) != count or len(lines) != count + 3 or lines[-1]:
                raise ValueError("wrong number of tools")
            specs = lines[2:-1]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            logger.warning("catalog cache entry %s unusable (%s); validating the file again", key, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: pruning keeps it
        return names, specs

    def save(self, key: str, tools: Sequence[tuple[str, bytes]]) -> None:
        """Write ``(name, canonical spec JSON)`` pairs under ``key``, then prune old entries; never raises for I/O."""
        names = json.dumps([name for name, _ in tools], separators=(",", ":")).encode("utf-8")
        body = names + b"\n" + b"".join(spec + b"\n" for _, spec in tools)
        meta = {"format": CACHE_FORMAT, "key": key, "count": len(tools), "sha256": hashlib.sha256(body).hexdigest()}
        final = self._path(key)
        tmp = self.root / f".tmp-catalog-{key}-{uuid.uuid4().hex[:8]}"
        if not private_folder(self.root):
            logger.warning("the catalog cache folder %s is not this user's own: nothing saved there", self.root)
            return
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                out.write(json.dumps(meta, separators=(",", ":")).encode("utf-8") + b"\n" + body)
            tmp.replace(final)
        except OSError as exc:
            logger.warning("could not save the catalog cache entry %s: %s", key, type(exc).__name__)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._prune(keep=final)

    def _prune(self, keep: Path) -> None:
        def remove(old: Path) -> None:
            with contextlib.suppress(OSError):
                old.unlink()

        prune_by_use(self.root.glob("catalog-*.jsonl"), keep, self._max_kept, remove, max_age_s=self._max_age_s)

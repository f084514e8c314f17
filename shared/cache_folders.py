"""Local folders of derived files a later process reads back (saved ONNX graphs, validated catalogs, search indexes):
who may write them, and which of their entries to keep."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["code_key", "private_folder", "prune_by_use"]


def code_key(*files: str | Path, extra: str = "") -> str:
    """A key for what the code in ``files`` derives (their bytes, and ``extra``: a format number, library versions):
    a change to any of them names a new entry."""
    digest = hashlib.sha256(extra.encode() + b"\n")
    for file in files:
        digest.update(Path(file).read_bytes() + b"\n")
    return digest.hexdigest()[:16]


def private_folder(folder: Path) -> bool:
    """Create ``folder`` (mode 0700) if it is missing; whether it belongs to this user and is closed to others. What
    another local user could plant in a shared folder would otherwise be read back as trusted."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


def prune_by_use(entries: Iterable[Path], keep: Path, max_kept: int, remove: Callable[[Path], None], *,
                 max_age_s: float | None = None) -> None:
    """``remove`` the entries beyond the ``max_kept`` most recently used (by modification time; ``keep``, just
    written or read, counts as one and stays), and with ``max_age_s`` those unused for that long."""
    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # pruned by another process meanwhile
            return 0.0

    by_use = sorted((path for path in entries if path != keep), key=used, reverse=True)
    oldest_kept = time.time() - max_age_s if max_age_s is not None else None
    for index, old in enumerate(by_use):
        if index >= max_kept - 1 or (oldest_kept is not None and used(old) < oldest_kept):
            remove(old)

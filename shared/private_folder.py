"""A folder only this user may write to: for derived files a later process trusts (saved graphs, validated catalogs)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_folder"]


def private_folder(folder: Path) -> bool:
    """Create ``folder`` (mode 0700) if it is missing; whether it belongs to this user and is closed to others. What
    another local user could plant in a shared folder would otherwise be read back as trusted."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o077

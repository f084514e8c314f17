"""Shared fixtures: real local servers only (Azurite, devhost processes)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import Azurite, start_azurite

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite for the test session (in-memory, its own ports), installed by scripts/azurite.sh if needed."""
    server = start_azurite()
    yield server
    server.stop()

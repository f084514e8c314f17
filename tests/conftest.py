"""Shared fixtures: real local servers (Azurite), and a count of what did-you-mean suggestions compare."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Azurite, start_azurite

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite for the test session (in-memory, its own ports), installed by scripts/azurite.sh if needed."""
    server = start_azurite()
    yield server
    server.stop()


@pytest.fixture
def compared_names(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many names each :func:`difflib.get_close_matches` call (every did-you-mean) compares the word with."""
    compared: list[int] = []
    original = difflib.get_close_matches

    def counting(word: str, possibilities: Any, *args: Any, **kwargs: Any) -> list[str]:
        possibilities = list(possibilities)
        compared.append(len(possibilities))
        return original(word, possibilities, *args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counting)
    return compared

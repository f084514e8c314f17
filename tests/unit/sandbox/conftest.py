from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.sandbox import ProcessSandbox


@pytest.fixture(scope="session")
def sandbox() -> Iterator[ProcessSandbox]:
    """One local process sandbox (one zygote) for the session; every run still gets a fresh worker."""
    executor = ProcessSandbox()
    yield executor
    executor.close()

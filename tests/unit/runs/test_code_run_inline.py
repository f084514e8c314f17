"""Inline code mode (``run_inline``): the code gets whole tool results, however large, or a clear failure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor, ToolSettings
from shared.errors import ResultTooLarge
from shared.models import ToolCall
from shared.payloads import LocalPayloadStore
from shared.runs.code_sandbox import run_inline
from shared.runs.contracts import CodeRunRequest
from shared.sandbox import Limits, ProcessSandbox

CODE = """
rows = await numbers(count=2000)
result = {"count": len(rows), "last": rows[-1]}
"""


class _StoreSink:
    """Stores large results the way the runtime does (a real local payload store)."""

    def __init__(self, store: LocalPayloadStore) -> None:
        self.store = store

    async def put(self, call: ToolCall, payload: bytes) -> str:
        return self.store.put(json.loads(payload), prefix=call.run_id)


def _catalog() -> Catalog:
    catalog = Catalog()

    def numbers(count: int) -> list[int]:
        """The integers from 0 to count - 1."""
        return list(range(count))

    catalog.register(numbers)
    return catalog


@pytest.fixture
def sandbox() -> Iterator[ProcessSandbox]:
    executor = ProcessSandbox()
    yield executor
    executor.close()


def _request() -> CodeRunRequest:
    return CodeRunRequest(run_id="r1", code=CODE, tools={"numbers": "numbers"}, limits=Limits().to_dict())


def test_a_stored_large_result_reaches_the_code_whole(tmp_path: Path, sandbox: ProcessSandbox) -> None:
    store = LocalPayloadStore(tmp_path)
    catalog = _catalog()
    executor = ToolExecutor(catalog, settings=ToolSettings(max_result_bytes=1024), result_sink=_StoreSink(store))
    outcome = asyncio.run(run_inline(_request(), catalog, executor, sandbox, store, preview_bytes=64))
    assert outcome.status == "finished", outcome
    assert outcome.result == {"count": 2000, "last": 1999}
    (step,) = outcome.steps
    assert step.result["blob_ref"].startswith("file:r1/") and step.result["size_bytes"] > 8000
    assert len(step.result["preview"]) == 64
    assert store.get(step.result["blob_ref"]) == list(range(2000))


def test_an_unstored_large_result_fails_the_call_instead_of_truncating(tmp_path: Path,
                                                                       sandbox: ProcessSandbox) -> None:
    catalog = _catalog()
    executor = ToolExecutor(catalog, settings=ToolSettings(max_result_bytes=1024))  # nowhere to store it
    outcome = asyncio.run(run_inline(_request(), catalog, executor, sandbox, LocalPayloadStore(tmp_path)))
    assert outcome.status == "finished" and outcome.result is None
    assert outcome.code_error is not None and "more than can be passed inline" in outcome.code_error.message
    (step,) = outcome.steps
    assert step.status == "failed" and step.error is not None and step.error.code == ResultTooLarge.code

"""A canceled run's mark in the call journal on Blob Storage (Azurite): seen by every instance, written once,
deleted with the run's journal."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.payloads import BlobPayloadStore
from shared.runs.call_journal import CallJournal, Dispatch
from tests.support import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture
def container(azurite: Azurite) -> Iterator[Any]:
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(azurite.connection_string, f"journal-{uuid.uuid4().hex[:12]}")
    yield client
    with contextlib.suppress(Exception):
        client.delete_container()


def test_the_cancel_mark_on_blob_storage(container: Any) -> None:
    journal = CallJournal(BlobPayloadStore(container))
    assert not journal.canceled("run-1")  # no container yet
    assert journal.dispatch("run-1", "call:s1:abc") == Dispatch(1, redelivered=False)
    assert journal.cancel("run-1") is True
    other = CallJournal(BlobPayloadStore(container))  # another instance of the app
    assert other.cancel("run-1") is False
    assert other.canceled("run-1") and other.canceled("run-1:turn2") and not other.canceled("run-10")
    assert other.dispatch("run-1", "call:s2:abc") == Dispatch(1, redelivered=False, canceled=True)
    journal.cancel("run-10")
    assert journal.delete_run("run-1") == 2  # the mark and the first call's marker (a canceled call writes none)
    assert not journal.canceled("run-1") and journal.canceled("run-10")

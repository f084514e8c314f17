"""The devhost store's reads for status queries do not queue behind the engine's write transactions."""

from __future__ import annotations

import threading
from pathlib import Path

from devhost.store import InstanceRow, Store


def test_a_status_read_sees_the_last_commit_while_a_transaction_is_open(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    assert store.create_instance("i1", "orch", '{"n": 1}', {"EventType": 0}, now=1.0)
    seen: list[InstanceRow | None] = []
    with store.transaction() as conn:  # an episode's transaction, holding the store's lock on this thread
        conn.execute("UPDATE instances SET status='Running' WHERE id='i1'")
        reader = threading.Thread(target=lambda: seen.append(store.read_instance("i1")))
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive()  # it did not wait for the lock
    (inst,) = seen
    assert inst is not None and inst.status == "Pending" and inst.input == '{"n": 1}'  # committed state only
    assert store.read_instance("i1").status == "Running"  # type: ignore[union-attr]
    assert store.read_instance("nope") is None


def test_in_memory_a_status_read_is_a_plain_read() -> None:
    store = Store(":memory:")
    assert store.create_instance("i2", "orch", None, {"EventType": 0}, now=1.0)
    assert store.read_instance("i2") == store.get_instance("i2")

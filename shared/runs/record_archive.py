"""Where a long plan's finished step records wait for its final result: the payload store, one value per
``continue_as_new`` generation, under the run's own prefix (so retention deletes them with the run).

Carrying every finished record in the checkpoint made each generation's input, which every replay parses, grow
with the steps already done: a 1,000-step chain's last generations replayed ~0.4 MB per episode.
"""

from __future__ import annotations

from typing import Any

from shared.payloads import PayloadStore, run_object
from shared.runs.contracts import ArchivedStepRecords, StepRecordsArchive

__all__ = ["archive_records", "load_records"]


def archive_records(payloads: PayloadStore, archive: StepRecordsArchive) -> str:
    """Store the records; the reference to read them back (the same records give the same reference)."""
    return payloads.put(archive.records, prefix=archive.run_id)


def load_records(payloads: PayloadStore, archived: ArchivedStepRecords) -> dict[str, dict[str, Any]]:
    """Every record the references hold, by step id. Raises ``ValueError`` for a reference that is not this run's
    or does not hold records."""
    records: dict[str, dict[str, Any]] = {}
    for ref in archived.refs:
        value = run_object(payloads, ref, archived.run_id, "a step-record archive")
        if not all(isinstance(v, dict) for v in value.values()):
            raise ValueError("a step-record archive that holds no records")
        records.update(value)
    return records

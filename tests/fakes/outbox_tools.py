"""A side-effecting tool that needs approval and leaves evidence outside the app: each execution appends a line to
the file named by ``WEFT_TEST_OUTBOX`` (so a test in another process counts executions)."""

from __future__ import annotations

import json
import os


def send_email(to: str, subject: str) -> dict[str, str]:
    """Send an email (the test double appends it to the outbox file)."""
    with open(os.environ["WEFT_TEST_OUTBOX"], "a", encoding="utf-8") as outbox:
        outbox.write(json.dumps({"to": to, "subject": subject}) + "\n")
    return {"status": "sent", "to": to}


def post_slowly(to: str, delay_ms: int) -> dict[str, str]:
    """Post a message (appended to the outbox at once), then take ``delay_ms`` to answer: a crash in between leaves
    the effect done and the call unreported."""
    import time

    with open(os.environ["WEFT_TEST_OUTBOX"], "a", encoding="utf-8") as outbox:
        outbox.write(json.dumps({"to": to, "slow": True}) + "\n")
    time.sleep(delay_ms / 1000.0)
    return {"status": "posted", "to": to}


def big_text(size_bytes: int) -> str:
    """A text of ``size_bytes`` characters (for results stored outside the run's history)."""
    line = "0123456789abcdef" * 4 + "\n"
    return (line * (size_bytes // len(line) + 1))[:size_bytes]

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

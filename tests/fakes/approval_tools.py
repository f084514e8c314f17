"""A side-effecting tool that needs a human's approval, for task-mode approval tests (loaded from a catalog file)."""

from __future__ import annotations

SENT: list[dict[str, str]] = []


def send_email(to: str, subject: str) -> dict[str, str]:
    """Send an email (the test double records it in this process)."""
    SENT.append({"to": to, "subject": subject})
    return {"status": "sent", "to": to}

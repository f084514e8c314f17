"""Small adapters between Weft's models and the Durable SDK, shared by the orchestrators."""

from __future__ import annotations

import azure.durable_functions as df

from shared.models import RetryPolicy

__all__ = ["retry_options"]


def retry_options(policy: RetryPolicy, spent: int = 0) -> df.RetryOptions:
    """Durable's retry of an activity under ``policy``, with ``spent`` of its attempts already used."""
    return df.RetryOptions(policy.first_interval_ms, policy.max_attempts - spent)

"""Small adapters between Weft's models and the Durable SDK, shared by the orchestrators."""

from __future__ import annotations

import os

import azure.durable_functions as df

from shared.models import RetryPolicy

__all__ = ["STRICT_TYPING", "retry_options"]

STRICT_TYPING = "AZURE_FUNCTIONS_DURABLE_STRICT_TYPING"
"""The Durable codec's strict mode, on unless the app settings say otherwise. Every value Weft passes across a
Durable boundary is plain JSON (payload models are dumped first), so nothing needs the loose codec, which runs a
Python ``object_hook`` on every JSON object of every history event a replay parses and looks the setting up in the
environment each time (~10 % of the worker's CPU in ``benchmarks/throughput.py``). A value that is not JSON then
fails loudly where it is sent instead of travelling as a pickled-like envelope."""

os.environ.setdefault(STRICT_TYPING, "1")


def retry_options(policy: RetryPolicy, spent: int = 0) -> df.RetryOptions:
    """Durable's retry of an activity under ``policy``, with ``spent`` of its attempts already used."""
    return df.RetryOptions(policy.first_interval_ms, policy.max_attempts - spent)

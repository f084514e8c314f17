"""Small adapters between Weft's models and the Durable SDK, shared by the orchestrators, and a faster timestamp parser
for the SDK (set when this module is imported, as function_app does)."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import importlib
import os
from typing import Any

import azure.durable_functions as df
from dateutil.parser import parse as dateutil_parse  # the SDK's parser, for what is not ISO 8601

from shared.models import RetryPolicy

__all__ = ["STRICT_TYPING", "parse_timestamp", "retry_options"]

STRICT_TYPING = "AZURE_FUNCTIONS_DURABLE_STRICT_TYPING"
"""The Durable codec's strict mode, on unless the app settings say otherwise. Every value Weft passes across a
Durable boundary is plain JSON (payload models are dumped first), so nothing needs the loose codec, which runs a
Python ``object_hook`` on every JSON object of every history event a replay parses and looks the setting up in the
environment each time (~10 % of the worker's CPU in ``benchmarks/throughput.py``). A value that is not JSON then
fails loudly where it is sent instead of travelling as a pickled-like envelope."""

os.environ.setdefault(STRICT_TYPING, "1")


_SDK_PARSERS = ("azure.durable_functions.models.history.HistoryEvent",
                "azure.durable_functions.models.DurableOrchestrationStatus")
"""The SDK modules that parse timestamps with dateutil's general parser (``dt_parse``, looked up at each call): every
history event's on every replay, a status's two on every status read, ~40 µs each."""


def parse_timestamp(text: str) -> dt.datetime:
    """A Durable timestamp: ISO 8601 as the host writes it (``2026-12-07T20:17:37.5419400Z``) parsed by
    :meth:`datetime.datetime.fromisoformat` (~0.1 µs, the same instant), anything else by the SDK's own parser."""
    try:
        return dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        parsed: dt.datetime = dateutil_parse(text)
        return parsed


def _speed_up_sdk() -> None:
    """Two costs the Durable SDK adds to every orchestrator replay, with the same results: dateutil parsing every
    history event's timestamp (half of a 3-step plan run's replay CPU: 3.3 -> 1.5 ms measured in process), and
    ``TaskOrchestrationExecutor.__init__`` building its ``SetTaskValuePayload`` namedtuple class (an ``exec`` of a
    class body) on every invocation. The modules are imported by name: their packages export classes of the same
    names."""
    for name in _SDK_PARSERS:
        module = vars(importlib.import_module(name))
        if "dt_parse" in module:  # a later SDK may parse otherwise: then it is left alone
            module["dt_parse"] = parse_timestamp
    executor = vars(importlib.import_module("azure.durable_functions.models.TaskOrchestrationExecutor"))
    if executor.get("namedtuple") is collections.namedtuple:
        executor["namedtuple"] = _cached_namedtuple


@functools.lru_cache(maxsize=8)
def _cached_namedtuple(typename: str, field_names: Any, **kwargs: Any) -> Any:
    """``collections.namedtuple``, one class per arguments (hashable ones: the SDK passes a tuple)."""
    return collections.namedtuple(typename, field_names, **kwargs)


_speed_up_sdk()


def retry_options(policy: RetryPolicy, spent: int = 0) -> df.RetryOptions:
    """Durable's retry of an activity under ``policy``, with ``spent`` of its attempts already used."""
    return df.RetryOptions(policy.first_interval_ms, policy.max_attempts - spent)

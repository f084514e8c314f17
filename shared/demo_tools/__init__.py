"""Weft's built-in demo toolset: real, offline tools for demos, tests and benchmarks.

``register_demo_tools(catalog, notes_path=...)`` adds them all (``source="demo"``); the app keeps the notes in
``<WEFT_STATE_DIR>/notes.sqlite``. The descriptions and parameter
docs are what tool search and LLMs see, so they say what each tool does, its units and its limits.

- numbers: ``calculate``, ``summary_statistics``
- conversions: ``convert_units``, ``currency_convert`` (embedded sample rates, dated)
- dates: ``convert_timezone``, ``add_duration``, ``date_difference``
- text: ``text_statistics``, ``word_frequency``, ``regex_extract``, ``hash_text``, ``encode_text``, ``decode_text``
- data: ``json_query``, ``csv_aggregate``, ``sort_list``, ``format_table``, ``random_sample``
- notes (SQLite, idempotent writes): ``note_put``, ``note_get``, ``note_list``
- reliability testing: ``slow``, ``flaky``, ``fail_always``
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from shared.catalog.catalog import Catalog, Tool, python_tool
from shared.demo_tools.calc import calculate, summary_statistics
from shared.demo_tools.convert import convert_units, currency_convert
from shared.demo_tools.data import csv_aggregate, format_table, json_query, random_sample, sort_list
from shared.demo_tools.dates import add_duration, convert_timezone, date_difference
from shared.demo_tools.faults import FaultTools, fail_always, slow
from shared.demo_tools.notes import NoteStore, NoteTools
from shared.demo_tools.text import decode_text, encode_text, hash_text, regex_extract, text_statistics, word_frequency

__all__ = ["DEMO_TAG", "register_demo_tools"]

DEMO_TAG = "demo"
"""Every demo tool carries this tag."""


def register_demo_tools(
    catalog: Catalog, *, notes_path: str | os.PathLike[str], replace: bool = False
) -> list[Tool]:
    """Register every demo tool into ``catalog`` (all or none); notes and flaky counters live in ``notes_path``."""
    store = NoteStore(notes_path)
    notes = NoteTools(store)
    faults = FaultTools(store)
    pure: dict[str, Any] = {"side_effects": False, "idempotent": True}
    table: list[tuple[Callable[..., Any], tuple[str, ...], dict[str, Any]]] = [
        (calculate, ("math",), pure),
        (summary_statistics, ("math", "statistics"), pure),
        (convert_units, ("units", "conversion"), pure),
        (currency_convert, ("money", "conversion"), pure),
        (convert_timezone, ("time", "timezone"), pure),
        (add_duration, ("time", "date"), pure),
        (date_difference, ("time", "date"), pure),
        (text_statistics, ("text",), pure),
        (word_frequency, ("text",), pure),
        (regex_extract, ("text", "regex"), pure),
        (hash_text, ("text", "encoding"), pure),
        (encode_text, ("text", "encoding"), pure),
        (decode_text, ("text", "encoding"), pure),
        (json_query, ("data", "json"), pure),
        (csv_aggregate, ("data", "csv"), pure),
        (sort_list, ("data",), pure),
        (format_table, ("data", "formatting"), pure),
        (random_sample, ("data", "random"), pure),
        (notes.note_put, ("notes", "storage"), {"side_effects": True, "idempotent": True}),
        (notes.note_get, ("notes", "storage"), pure),
        (notes.note_list, ("notes", "storage"), pure),
        (slow, ("testing",), pure),
        (faults.flaky, ("testing",), pure),
        (fail_always, ("testing",), pure),
    ]
    tools = [python_tool(fn, tags=(*tags, DEMO_TAG), source="demo", **options) for fn, tags, options in table]
    return catalog.add_all(tools, replace=replace)

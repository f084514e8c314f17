"""Structured data: a small JSON path language, CSV aggregation, sorting, tables and seeded sampling."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ToolArgumentsInvalid
from shared.python_ast import literal_eval

__all__ = [
    "Aggregation",
    "csv_aggregate",
    "format_table",
    "json_query",
    "parse_json_path",
    "query_json",
    "random_sample",
    "sort_list",
]

MAX_CSV_CHARS = 5_000_000
MAX_ITEMS = 100_000

# ------------------------------------------------------------------------------------------------ JSON path

_PATH_TOKEN = re.compile(
    r"""\.(?P<name>[^.\[\]]+)|\[(?P<index>-?\d+)\]|\[(?P<star>\*)\]|\[(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\]"""
)
_WILDCARD = object()

PathPart = str | int | object


def parse_json_path(path: str) -> list[PathPart]:
    """Parse ``$.a.b[0]['c d'].*[*]`` into keys (``str``), indexes (``int``) and wildcards.

    The leading ``$`` and the first dot are optional: ``a.b[0]`` is the same path.
    """
    text = path.strip()
    text = text[1:] if text.startswith("$") else text
    if text and text[0] not in ".[":
        text = "." + text
    parts: list[PathPart] = []
    position = 0
    while position < len(text):
        match = _PATH_TOKEN.match(text, position)
        if not match:
            raise ToolArgumentsInvalid(
                f"cannot parse path {path!r} at {text[position:]!r}: use .key, [index], ['key'], .* or [*]",
                field="args.path",
            )
        if match.group("name") is not None:
            name = match.group("name")
            parts.append(_WILDCARD if name == "*" else name)
        elif match.group("index") is not None:
            parts.append(int(match.group("index")))
        elif match.group("star") is not None:
            parts.append(_WILDCARD)
        else:
            parts.append(str(literal_eval(match.group("quoted"))))
        position = match.end()
    return parts


def _children(node: Any, part: PathPart) -> Iterator[Any]:
    if part is _WILDCARD:
        if isinstance(node, dict):
            yield from node.values()
        elif isinstance(node, list):
            yield from node
    elif isinstance(part, int) and isinstance(node, list):
        if -len(node) <= part < len(node):
            yield node[part]
    elif isinstance(node, dict):
        key = str(part)
        if key in node:
            yield node[key]


def query_json(data: Any, path: str) -> list[Any]:
    """Every value of ``data`` that ``path`` selects (see :func:`parse_json_path`); missing parts select nothing."""
    nodes = [data]
    for part in parse_json_path(path):
        nodes = [child for node in nodes for child in _children(node, part)]
    return nodes


def json_query(data: Any, path: Annotated[str, Field(max_length=1000)]) -> dict[str, Any]:
    """Select values from JSON data with a path like "$.orders[*].items[0].price".

    Path syntax: .key or ['key with spaces'] for object keys, [0] for list items ([-1] is the last), .* or [*] for
    every child. The leading "$" is optional. Returns every match; missing keys simply match nothing.

    Args:
        data: The JSON value to query; a string holding JSON text is parsed first.
        path: The path to select.
    """
    if isinstance(data, str):
        with contextlib.suppress(json.JSONDecodeError):  # a plain string is a valid (if dull) JSON value to query
            data = json.loads(data)
    matches = query_json(data, path)
    return {"path": path, "count": len(matches), "matches": matches, "first": matches[0] if matches else None}


# ------------------------------------------------------------------------------------------------ CSV


class Aggregation(BaseModel):
    """One aggregate column: an aggregate function over an input column."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    op: Literal["count", "sum", "avg", "min", "max", "count_distinct"]
    """The aggregate function."""
    column: str | None = None
    """Input column (not needed for count)."""
    name: str | None = None
    """Output column name; default "op_column" (or "count")."""


def _number(text: str, column: str, row: int) -> float | None:
    try:
        return float(text.replace(",", "")) if text.strip() else None
    except ValueError:
        raise ToolArgumentsInvalid(
            f"column {column!r} row {row}: {text!r} is not a number", field="args.csv_text"
        ) from None


def csv_aggregate(
    csv_text: Annotated[str, Field(max_length=MAX_CSV_CHARS)],
    group_by: list[str] = [],  # noqa: B006
    aggregations: list[Aggregation] | None = None,
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ",",
) -> dict[str, Any]:
    """Group the rows of CSV text (with a header row) and aggregate columns, like SQL GROUP BY.

    Example: group_by ["region"], aggregations [{"op": "sum", "column": "amount"}, {"op": "count"}]. Empty cells
    are ignored by sum/avg/min/max; numbers may use thousands separators ("1,200.50"). Groups are sorted by key.

    Args:
        csv_text: The CSV document; its first row names the columns.
        group_by: Columns to group by; empty aggregates all rows into one group.
        aggregations: What to compute per group: op is count, sum, avg, min, max or count_distinct; column is the
            input column (not needed for count); name optionally names the output column. Default: a row count.
        delimiter: The field separator, e.g. "," or ";" or a tab.
    """
    aggregations = aggregations or [Aggregation(op="count")]
    reader = csv.DictReader(io.StringIO(csv_text), delimiter=delimiter)
    header = reader.fieldnames or []
    for index, column in enumerate(group_by):
        if column not in header:
            raise ToolArgumentsInvalid(
                f"no column {column!r}; columns: {', '.join(header)}", field=f"args.group_by[{index}]"
            )
    for index, agg in enumerate(aggregations):
        if agg.op != "count" and agg.column not in header:
            raise ToolArgumentsInvalid(
                f"{agg.op} needs a column; columns: {', '.join(header)}", field=f"args.aggregations[{index}].column"
            )
    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    row_count = 0
    for row in reader:
        row_count += 1
        groups.setdefault(tuple(row.get(column) or "" for column in group_by), []).append(row)
    rows = []
    for key in sorted(groups):
        out: dict[str, Any] = dict(zip(group_by, key, strict=True))
        for agg in aggregations:
            out[agg.name or (f"{agg.op}_{agg.column}" if agg.column else agg.op)] = _aggregate(agg, groups[key])
        rows.append(out)
    return {"row_count": row_count, "group_count": len(rows), "rows": rows}


def _aggregate(agg: Aggregation, rows: list[dict[str, str]]) -> Any:
    column = agg.column or ""
    if agg.op == "count":
        return sum(1 for row in rows if not agg.column or (row.get(column) or "").strip())
    cells = [row.get(column) or "" for row in rows]
    if agg.op == "count_distinct":
        return len({cell for cell in cells if cell.strip()})
    numbers = [value for i, cell in enumerate(cells) if (value := _number(cell, column, i + 2)) is not None]
    if not numbers:
        return None
    if agg.op == "sum":
        return round(sum(numbers), 10)
    if agg.op == "avg":
        return round(sum(numbers) / len(numbers), 10)
    return min(numbers) if agg.op == "min" else max(numbers)


# ------------------------------------------------------------------------------------------------ lists


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))


def sort_list(
    items: Annotated[list[Any], Field(max_length=MAX_ITEMS)],
    key: str | None = None,
    descending: bool = False,
    case_sensitive: bool = True,
) -> dict[str, Any]:
    """Sort a list of values, or of objects by a key path, stably. Mixed types order as null < booleans < numbers
    < strings < other values.

    Args:
        items: The values or objects to sort.
        key: For objects, the path of the value to sort by, e.g. "price" or "author.name".
        descending: Largest first.
        case_sensitive: Compare strings exactly; false compares them case-insensitively.
    """

    def pick(item: Any) -> tuple[int, Any]:
        value = item
        if key is not None:
            found = query_json(item, key)
            value = found[0] if found else None
        if isinstance(value, str) and not case_sensitive:
            value = value.casefold()
        return _sort_key(value)

    return {"items": sorted(items, key=pick, reverse=descending), "count": len(items)}


def random_sample(
    items: Annotated[list[Any], Field(max_length=MAX_ITEMS)],
    k: Annotated[int, Field(ge=0, le=MAX_ITEMS)] = 1,
    seed: int = 0,
    with_replacement: bool = False,
) -> dict[str, Any]:
    """Pick k items at random, reproducibly: the same items, k and seed always give the same sample.

    Args:
        items: The population to sample from.
        k: How many items to pick; without replacement at most len(items).
        seed: Seed of the random generator; change it for a different sample.
        with_replacement: Allow the same item to be picked more than once.
    """
    rng = random.Random(seed)
    if with_replacement:
        if not items and k:
            raise ToolArgumentsInvalid("cannot sample from an empty list", field="args.items")
        sample = [items[rng.randrange(len(items))] for _ in range(k)]
    else:
        if k > len(items):
            raise ToolArgumentsInvalid(f"k={k} is more than the {len(items)} items", field="args.k")
        sample = rng.sample(items, k)
    return {"sample": sample, "k": k, "seed": seed}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def format_table(
    rows: Annotated[list[dict[str, Any]], Field(max_length=10_000)],
    columns: list[str] | None = None,
    style: Literal["markdown", "csv", "text"] = "markdown",
) -> dict[str, Any]:
    """Render a list of objects as a table: Markdown, CSV or aligned plain text.

    Args:
        rows: The records, one object per row.
        columns: Columns in order; default: every key, in order of first appearance.
        style: markdown, csv or text.
    """
    names = columns if columns is not None else list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(name)) for name in names] for row in rows]
    if style == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(cells)
        return {"table": buffer.getvalue(), "rows": len(rows), "columns": names}
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    if style == "markdown":

        def line(values: list[str]) -> str:
            escaped = (value.replace("|", "\\|").replace("\n", " ") for value in values)
            return "| " + " | ".join(value.ljust(widths[i]) for i, value in enumerate(escaped)) + " |"

        body = [line(names), "| " + " | ".join("-" * max(width, 3) for width in widths) + " |"]
    else:

        def line(values: list[str]) -> str:
            return "  ".join(value.ljust(widths[i]) for i, value in enumerate(values)).rstrip()

        body = [line(names), "  ".join("-" * width for width in widths)]
    table = "\n".join([*body, *(line(row) for row in cells)]) + "\n"
    return {"table": table, "rows": len(rows), "columns": names}

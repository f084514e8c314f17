"""The demo toolset: every tool is documented, valid and runs; each behaves as its description promises."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import shared.demo_tools as demo_module
from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.demo_tools import DEMO_TAG, register_demo_tools
from shared.demo_tools import text as text_module
from shared.demo_tools.calc import calculate, percentile, summary_statistics
from shared.demo_tools.convert import convert_units, currency_convert
from shared.demo_tools.data import Aggregation, csv_aggregate, format_table, json_query, random_sample, sort_list
from shared.demo_tools.dates import add_duration, business_days_between, convert_timezone, date_difference
from shared.demo_tools.faults import flaky_fails
from shared.demo_tools.notes import Applications, NoteStore
from shared.demo_tools.text import decode_text, encode_text, hash_text, regex_extract, text_statistics, word_frequency
from shared.errors import ToolArgumentsInvalid
from shared.models import ToolCall, ToolResult

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def notes_path(tmp_path: Path) -> Path:
    return tmp_path / "notes.sqlite"


@pytest.fixture
def catalog(notes_path: Path) -> Catalog:
    catalog = Catalog()
    register_demo_tools(catalog, notes_path=notes_path)
    return catalog


@pytest.fixture
def executor(catalog: Catalog) -> ToolExecutor:
    return ToolExecutor(catalog)


def run(executor: ToolExecutor, tool: str, run_id: str = "run-1", step_id: str = "s1", **args: Any) -> ToolResult:
    return asyncio.run(executor.execute(ToolCall(run_id=run_id, step_id=step_id, tool=tool, args=args)))


# An example input for every tool and a check of its output.
EXAMPLES: dict[str, tuple[dict[str, Any], Any]] = {
    "calculate": ({"expression": "2 * (3 + 4) ** 2 / sqrt(16)"}, lambda v: v["result"] == 24.5),
    "summary_statistics": ({"values": [1, 2, 3, 4]}, lambda v: v["mean"] == 2.5 and v["percentiles"]["p50"] == 2.5),
    "convert_units": ({"value": 5, "from_unit": "km", "to_unit": "mi"}, lambda v: v["result"] == 3.10685596119),
    "currency_convert": ({"amount": 100, "from_currency": "USD", "to_currency": "EUR"},
                         lambda v: v["result"] == 91.31 and v["rates_date"] == "2024-01-02"),
    "convert_timezone": ({"datetime_text": "2024-07-01T09:00:00", "from_tz": "Europe/Paris", "to_tz": "Asia/Tokyo"},
                         lambda v: v["result"]["datetime"] == "2024-07-01T16:00:00+09:00"),
    "add_duration": ({"datetime_text": "2024-03-29T17:00:00", "business_days": 1},
                     lambda v: v["result"]["date"] == "2024-04-01"),
    "date_difference": ({"start": "2024-01-01", "end": "2024-01-08"},
                        lambda v: v["calendar_days"] == 7 and v["business_days"] == 5),
    "text_statistics": ({"text": "One two. Three!"}, lambda v: v["words"] == 3 and v["sentences"] == 2),
    "word_frequency": ({"text": "the cat and the hat and the cat"},
                       lambda v: v["words"][0] == {"word": "cat", "count": 2}),
    "regex_extract": ({"pattern": r"\d+", "text": "a1 b22"},
                      lambda v: [m["match"] for m in v["matches"]] == ["1", "22"]),
    "hash_text": ({"text": "abc"}, lambda v: v["hex"] == hashlib.sha256(b"abc").hexdigest()),
    "encode_text": ({"text": "hi there", "scheme": "url"}, lambda v: v["result"] == "hi%20there"),
    "decode_text": ({"text": "aGk=", "scheme": "base64"}, lambda v: v["result"] == "hi"),
    "json_query": ({"data": {"a": [{"b": 1}, {"b": 2}]}, "path": "$.a[*].b"}, lambda v: v["matches"] == [1, 2]),
    "csv_aggregate": ({"csv_text": "k,v\nx,1\ny,2\nx,3\n", "group_by": ["k"],
                       "aggregations": [{"op": "sum", "column": "v"}]},
                      lambda v: v["rows"] == [{"k": "x", "sum_v": 4.0}, {"k": "y", "sum_v": 2.0}]),
    "sort_list": ({"items": [3, 1, 2]}, lambda v: v["items"] == [1, 2, 3]),
    "format_table": ({"rows": [{"a": 1}], "style": "csv"}, lambda v: v["table"] == "a\n1\n"),
    "random_sample": ({"items": [1, 2, 3, 4, 5], "k": 2, "seed": 7}, lambda v: len(v["sample"]) == 2),
    "note_put": ({"key": "k", "value": {"x": 1}}, lambda v: v == {"key": "k", "version": 1, "applied": True}),
    "note_get": ({"key": "missing"}, lambda v: v["found"] is False),
    "note_list": ({}, lambda v: v["keys"] == []),
    "slow": ({"delay_ms": 1}, lambda v: v == {"delay_ms": 1}),
    "flaky": ({"failure_rate": 0}, lambda v: v["attempt"] == 1),
    "fail_always": ({}, None),
}


def test_public_api_is_declared() -> None:
    assert set(demo_module.__all__) == {"DEMO_TAG", "register_demo_tools"}


def test_registration(catalog: Catalog, notes_path: Path) -> None:
    assert len(catalog) >= 15
    assert set(catalog.names()) == set(EXAMPLES)
    for spec in catalog.specs():
        assert spec.source == "demo" and DEMO_TAG in spec.tags and len(spec.tags) >= 2
    put = catalog.get("note_put").spec
    assert put.side_effects and put.idempotent
    assert not catalog.get("note_get").spec.side_effects
    with pytest.raises(ValueError, match="already registered"):
        register_demo_tools(catalog, notes_path=notes_path)
    assert len(register_demo_tools(catalog, notes_path=notes_path, replace=True)) == len(EXAMPLES)


def test_every_schema_is_valid_and_documented(catalog: Catalog) -> None:
    for spec in catalog.specs():
        Draft202012Validator.check_schema(spec.parameters)
        assert len(spec.description) > 30, spec.name
        for name, prop in spec.parameters["properties"].items():
            assert prop.get("description"), f"{spec.name}.{name} has no description"
        assert "idempotency_key" not in spec.parameters["properties"]
        catalog.render_python_stub(spec.name)


@pytest.mark.parametrize("tool", sorted(EXAMPLES))
def test_every_tool_runs_on_its_example(executor: ToolExecutor, tool: str) -> None:
    args, check = EXAMPLES[tool]
    assert executor.catalog.get(tool).check_args(args) == []
    result = run(executor, tool, **args)
    if check is None:
        assert not result.ok and result.error is not None
    else:
        assert result.ok, result.error
        assert check(result.value), result.value


# ----------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("1 + 2 * 3", 7, id="precedence"),
        pytest.param("7 // 2 + 7 % 2", 4, id="floor-mod"),
        pytest.param("-2 ** 2", -4, id="unary-power"),
        pytest.param("round(pi, 3)", 3.142, id="constant-round"),
        pytest.param("max(1, 5, 3) + min(2, 4)", 7, id="min-max"),
        pytest.param("factorial(5) / 2", 60.0, id="factorial"),
        pytest.param("2 ** 100", 2**100, id="big-int"),
        pytest.param("hypot(3, 4)", 5.0, id="hypot"),
    ],
)
def test_calculate(expression: str, expected: float) -> None:
    assert calculate(expression)["result"] == expected


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        pytest.param("__import__('os').system('id')", "is not allowed", id="import"),
        pytest.param("(1).__class__", "is not allowed", id="attribute"),
        pytest.param("x + 1", "is not allowed", id="unknown-name"),
        pytest.param("(lambda: 1)()", "is not allowed", id="lambda"),
        pytest.param("[1, 2]", "is not allowed", id="list"),
        pytest.param("'a' * 3", "is not allowed", id="string"),
        pytest.param("round(x=1)", "is not allowed", id="keywords"),
        pytest.param("9 ** 9 ** 9", "more than 4096 bits", id="huge-power"),
        pytest.param("factorial(10000)", "factorial needs", id="huge-factorial"),
        pytest.param("1 / 0", "division by zero", id="div-zero"),
        pytest.param("(-8) ** 0.5", "complex", id="complex"),
        pytest.param("10.0 ** 400", "cannot evaluate", id="overflow"),
        pytest.param("sqrt(-1)", "cannot evaluate", id="domain"),
        pytest.param("1 +", "not a valid expression", id="syntax"),
        pytest.param("1" * 1001, "longer than 1000", id="too-long"),
    ],
)
def test_calculate_rejects(expression: str, fragment: str) -> None:
    with pytest.raises(ToolArgumentsInvalid) as caught:
        calculate(expression)
    assert fragment in caught.value.message
    assert caught.value.field == "args.expression"


def test_summary_statistics() -> None:
    stats = summary_statistics([2, 4, 4, 4, 5, 5, 7, 9], percentiles=[0, 90, 100])
    assert stats["mean"] == 5.0 and stats["median"] == 4.5 and stats["mode"] == 4
    assert stats["pstdev"] == 2.0 and round(stats["stdev"], 6) == 2.13809
    assert stats["percentiles"] == {"p0": 2.0, "p90": 7.6, "p100": 9.0}
    single = summary_statistics([3.0])
    assert single["stdev"] is None and single["percentiles"]["p25"] == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 25) == 1.75


# ----------------------------------------------------------------------------------------------- conversions


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        pytest.param(100, "C", "F", 212.0, id="boiling"),
        pytest.param(-40, "fahrenheit", "celsius", -40.0, id="aliases"),
        pytest.param(0, "K", "C", -273.15, id="kelvin"),
        pytest.param(1, "mi", "m", 1609.344, id="mile"),
        pytest.param(1, "lb", "g", 453.59237, id="pound"),
        pytest.param(1, "gal", "l", 3.785411784, id="gallon"),
        pytest.param(100, "km/h", "m/s", 27.7777777778, id="speed"),
        pytest.param(1, "GiB", "MB", 1073.741824, id="data-iec-si"),
        pytest.param(8, "bit", "B", 1.0, id="bits"),
        pytest.param(1, "Miles", "KM", 1.609344, id="case-folding"),
    ],
)
def test_convert_units(value: float, source: str, target: str, expected: float) -> None:
    assert convert_units(value, source, target)["result"] == expected


@pytest.mark.parametrize(
    ("source", "target", "field", "fragment"),
    [
        pytest.param("parsec", "m", "args.from_unit", "unknown unit 'parsec'", id="unknown"),
        pytest.param("m", "kgs", "args.to_unit", "did you mean", id="close-match"),
        pytest.param("m", "kg", "args.to_unit", "cannot convert length (m) to mass (kg)", id="dimension"),
        pytest.param("mb", "B", "args.from_unit", "unknown unit 'mb'", id="data-units-are-case-sensitive"),
    ],
)
def test_convert_units_errors(source: str, target: str, field: str, fragment: str) -> None:
    with pytest.raises(ToolArgumentsInvalid) as caught:
        convert_units(1, source, target)
    assert caught.value.field == field and fragment in caught.value.message


def test_below_absolute_zero() -> None:
    with pytest.raises(ToolArgumentsInvalid, match="absolute zero"):
        convert_units(-300, "C", "K")


def test_currency_convert() -> None:
    result = currency_convert(1000, "jpy", "gbp")
    assert result["from_currency"] == "JPY" and result["to_currency"] == "GBP"
    assert result["result"] == round(1000 * 0.7877 / 142.0, 4)
    assert "sample" in result["note"]
    with pytest.raises(ToolArgumentsInvalid) as caught:
        currency_convert(1, "USD", "XXX")
    assert caught.value.field == "args.to_currency"


# ----------------------------------------------------------------------------------------------- dates


def test_convert_timezone_handles_dst_and_offsets() -> None:
    winter = convert_timezone("2024-01-15T12:00:00", "America/New_York", "Europe/London")
    summer = convert_timezone("2024-07-15T12:00:00", "America/New_York", "Europe/London")
    assert winter["result"]["time"] == "07:00:00" and summer["result"]["time"] == "07:00:00"
    assert summer["input"]["zone_abbreviation"] == "BST"
    explicit = convert_timezone("2024-01-15T12:00:00Z", "Asia/Kolkata", "America/Chicago")
    assert explicit["result"]["datetime"] == "2024-01-15T17:30:00+05:30"


def test_add_duration_calendar_vs_elapsed_time_across_dst() -> None:
    start = "2024-03-30T12:00:00"  # the night before Paris moves to summer time
    calendar = add_duration(start, tz="Europe/Paris", days=1)
    elapsed = add_duration(start, tz="Europe/Paris", hours=24)
    assert calendar["result"]["datetime"] == "2024-03-31T12:00:00+02:00"
    assert elapsed["result"]["datetime"] == "2024-03-31T13:00:00+02:00"
    back = add_duration("2024-04-01", business_days=-1)
    assert back["result"]["date"] == "2024-03-29" and back["result"]["weekday"] == "Friday"


def test_date_difference_with_holidays_and_reversed_order() -> None:
    diff = date_difference("2024-12-23", "2025-01-06", holidays=["2024-12-25", "2025-01-01", "2024-12-28"])
    assert diff["calendar_days"] == 14 and diff["business_days"] == 8
    reverse = date_difference("2024-01-08", "2024-01-01")
    assert reverse["calendar_days"] == -7 and reverse["business_days"] == -5 and reverse["hours"] == -168.0


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param("2024-01-06", "2024-01-08", 0, id="weekend"),
        pytest.param("2024-01-05", "2024-01-08", 1, id="friday"),
        pytest.param("2024-01-01", "2024-03-01", 44, id="two-months"),
        pytest.param("2024-01-03", "2024-01-03", 0, id="same-day"),
    ],
)
def test_business_days_between(start: str, end: str, expected: int) -> None:
    from datetime import date, timedelta

    first, last = date.fromisoformat(start), date.fromisoformat(end)
    naive = sum(1 for n in range((last - first).days) if (first + timedelta(days=n)).weekday() < 5)
    assert business_days_between(first, last) == expected == naive


@pytest.mark.parametrize(
    ("call_args", "field"),
    [
        pytest.param({"datetime_text": "2024-01-01", "to_tz": "Mars/Olympus"}, "args.to_tz", id="bad-zone"),
        pytest.param({"datetime_text": "yesterday", "to_tz": "UTC"}, "args.datetime_text", id="bad-datetime"),
        pytest.param({"datetime_text": "2024-01-01", "to_tz": "Europe/Pariss"}, "args.to_tz", id="zone-typo"),
    ],
)
def test_date_errors(call_args: dict[str, Any], field: str) -> None:
    with pytest.raises(ToolArgumentsInvalid) as caught:
        convert_timezone(**call_args)
    assert caught.value.field == field
    if "Pariss" in str(call_args):
        assert "Europe/Paris" in caught.value.message


def test_add_duration_out_of_range() -> None:
    with pytest.raises(ToolArgumentsInvalid, match="outside the years"):
        add_duration("9999-12-31", days=2)
    with pytest.raises(ToolArgumentsInvalid) as caught:
        date_difference("2024-01-01", "2024-02-01", holidays=["soon"])
    assert caught.value.field == "args.holidays[0]"


# ----------------------------------------------------------------------------------------------- text


def test_text_statistics() -> None:
    text = "Hello world. It's a fine day!\n\nSecond paragraph without a stop"
    stats = text_statistics(text, words_per_minute=60)
    assert stats["words"] == 11 and stats["sentences"] == 3 and stats["paragraphs"] == 2
    assert stats["unique_words"] == 10
    assert stats["reading_time_seconds"] == 11.0 and stats["reading_time_minutes"] == 1
    empty = text_statistics("")
    assert empty["words"] == 0 and empty["sentences"] == 0 and empty["reading_time_minutes"] == 0


def test_word_frequency_options() -> None:
    text = "The quick fox. the QUICK dog; a fox, a fox!"
    assert word_frequency(text, top=2)["words"] == [{"word": "fox", "count": 3}, {"word": "quick", "count": 2}]
    with_stopwords = word_frequency(text, top=1, ignore_stopwords=False, min_length=3)
    assert with_stopwords["words"] == [{"word": "fox", "count": 3}]
    assert word_frequency(text, min_length=4)["distinct_words"] == 1


def test_regex_extract_groups_flags_and_limits() -> None:
    found = regex_extract(r"(?P<y>\d{4})-(\d{2})", "from 2024-01 to 2025-12")
    assert found["count"] == 2
    assert found["matches"][0] == {"match": "2024-01", "start": 5, "end": 12, "groups": ["2024", "01"],
                                   "named": {"y": "2024"}}
    assert regex_extract("^b", "a\nb", flags=["multiline"])["count"] == 1
    assert regex_extract("A", "aaa", flags=["ignorecase"], max_matches=2) == {
        "count": 2, "truncated": True, "matches": regex_extract("a", "aa")["matches"],
    }


def test_regex_extract_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_module, "REGEX_TIMEOUT_S", 0.05)
    with pytest.raises(ToolArgumentsInvalid) as caught:
        regex_extract("(unclosed", "x")
    assert caught.value.field == "args.pattern" and "invalid regular expression" in caught.value.message
    started = time.monotonic()
    with pytest.raises(ToolArgumentsInvalid, match="catastrophic backtracking"):
        regex_extract("(a|aa)+$", "a" * 40 + "b")
    assert time.monotonic() - started < 2


def test_regex_limits_are_in_the_schema(catalog: Catalog) -> None:
    problems = catalog.get("regex_extract").check_args({"pattern": "x" * 501, "text": "y" * 200_001})
    assert {p.field() for p in problems} == {"args.pattern", "args.text"}


@pytest.mark.parametrize("scheme", ["base64", "base64url", "hex", "url"])
@pytest.mark.parametrize("text", ["", "hello wörld ✓", "a/b?c=d&e"], ids=["empty", "unicode", "url-chars"])
def test_encode_decode_round_trip(scheme: Any, text: str) -> None:
    assert decode_text(encode_text(text, scheme)["result"], scheme)["result"] == text


def test_decode_errors_and_hashes() -> None:
    with pytest.raises(ToolArgumentsInvalid) as caught:
        decode_text("zz", "hex")
    assert caught.value.field == "args.text"
    with pytest.raises(ToolArgumentsInvalid):
        decode_text("!!!", "base64")
    assert decode_text("aGk", "base64url")["result"] == "hi"  # missing padding is fine
    assert hash_text("abc", "md5")["hex"] == "900150983cd24fb0d6963f7d28e17f72"
    assert hash_text("abc", "sha1")["hex"] == "a9993e364706816aba3e25717850c26c9cd0d89d"


# ----------------------------------------------------------------------------------------------- data


ORDERS = {
    "orders": [
        {"id": 1, "items": [{"sku": "a", "price": 3}, {"sku": "b", "price": 5}], "ship to": {"city": "Oslo"}},
        {"id": 2, "items": [{"sku": "c", "price": 7}], "ship to": {"city": "Lima"}},
    ]
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("$.orders[*].items[*].price", [3, 5, 7], id="wildcards"),
        pytest.param("orders[1].id", [2], id="no-dollar"),
        pytest.param("$.orders[-1].items[0].sku", ["c"], id="negative-index"),
        pytest.param("$.orders[0]['ship to'].city", ["Oslo"], id="quoted-key"),
        pytest.param('$.orders.*["ship to"].city', ["Oslo", "Lima"], id="dot-star-double-quotes"),
        pytest.param("$.orders[5].id", [], id="out-of-range"),
        pytest.param("$.nope", [], id="missing-key"),
        pytest.param("$", [ORDERS], id="root"),
    ],
)
def test_json_query(path: str, expected: list[Any]) -> None:
    assert json_query(ORDERS, path)["matches"] == expected


def test_json_query_parses_json_text_and_rejects_bad_paths() -> None:
    assert json_query('{"a": {"b": [1, 2]}}', "a.b[1]")["first"] == 2
    assert json_query("plain text", "$")["first"] == "plain text"
    with pytest.raises(ToolArgumentsInvalid) as caught:
        json_query({}, "$.a[")
    assert caught.value.field == "args.path"


SALES = "region;product;amount\nEU;x;1,200.50\nUS;x;10\nEU;y;\nEU;x;4\n"


def test_csv_aggregate() -> None:
    result = csv_aggregate(
        SALES,
        group_by=["region", "product"],
        aggregations=[
            Aggregation(op="sum", column="amount"),
            Aggregation(op="avg", column="amount", name="mean"),
            Aggregation(op="count"),
            Aggregation(op="count", column="amount"),
        ],
        delimiter=";",
    )
    assert result["row_count"] == 4 and result["group_count"] == 3
    assert result["rows"] == [
        {"region": "EU", "product": "x", "sum_amount": 1204.5, "mean": 602.25, "count": 2, "count_amount": 2},
        {"region": "EU", "product": "y", "sum_amount": None, "mean": None, "count": 1, "count_amount": 0},
        {"region": "US", "product": "x", "sum_amount": 10.0, "mean": 10.0, "count": 1, "count_amount": 1},
    ]


def test_csv_aggregate_through_the_executor(executor: ToolExecutor) -> None:
    args = {
        "csv_text": SALES,
        "delimiter": ";",
        "group_by": ["region"],
        "aggregations": [
            {"op": "sum", "column": "amount"},
            {"op": "min", "column": "amount"},
            {"op": "max", "column": "amount"},
            {"op": "count_distinct", "column": "product"},
            {"op": "count"},
        ],
    }
    rows = run(executor, "csv_aggregate", **args).value["rows"]
    assert rows == [
        {"region": "EU", "sum_amount": 1204.5, "min_amount": 4.0, "max_amount": 1200.5, "count_distinct_product": 2,
         "count": 3},
        {"region": "US", "sum_amount": 10.0, "min_amount": 10.0, "max_amount": 10.0, "count_distinct_product": 1,
         "count": 1},
    ]
    assert run(executor, "csv_aggregate", csv_text="a\n1\n2\n").value["rows"] == [{"count": 2}]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        pytest.param({"group_by": ["regio"]}, "args.group_by[0]", id="unknown-group"),
        pytest.param({"aggregations": [{"op": "sum", "column": "amt"}]}, "args.aggregations[0].column",
                     id="unknown-column"),
        pytest.param({"aggregations": [{"op": "sum", "column": "product"}]}, "args.csv_text", id="not-numeric"),
    ],
)
def test_csv_aggregate_errors(executor: ToolExecutor, args: dict[str, Any], field: str) -> None:
    result = run(executor, "csv_aggregate", csv_text=SALES, delimiter=";", **args)
    assert result.error is not None and result.error.field == field


def test_sort_list() -> None:
    assert sort_list([3, None, "b", True, 1.5, "A", {"x": 1}])["items"] == [None, True, 1.5, 3, "A", "b", {"x": 1}]
    people = [{"n": "bo", "age": 30}, {"n": "Al", "age": 25}, {"n": "cy"}]
    assert [p["n"] for p in sort_list(people, key="age", descending=True)["items"]] == ["bo", "Al", "cy"]
    assert [p["n"] for p in sort_list(people, key="n", case_sensitive=False)["items"]] == ["Al", "bo", "cy"]


def test_random_sample_is_reproducible() -> None:
    items = list(range(100))
    first = random_sample(items, k=5, seed=42)["sample"]
    assert first == random_sample(items, k=5, seed=42)["sample"]
    assert first != random_sample(items, k=5, seed=43)["sample"]
    assert len(set(first)) == 5
    assert len(random_sample([1], k=4, with_replacement=True)["sample"]) == 4
    with pytest.raises(ToolArgumentsInvalid) as caught:
        random_sample([1, 2], k=3)
    assert caught.value.field == "args.k"


def test_format_table_styles() -> None:
    rows = [{"name": "a|b", "n": 1}, {"name": "c", "extra": [1]}]
    markdown = format_table(rows)["table"]
    assert markdown.splitlines() == [
        "| name | n | extra |",
        "| ---- | --- | ----- |",
        "| a\\|b | 1 |       |",
        "| c    |   | [1]   |",
    ]
    assert format_table(rows, columns=["n"], style="text")["table"] == "n\n-\n1\n\n"
    assert format_table(rows, style="csv")["table"] == "name,n,extra\na|b,1,\nc,,[1]\n"


# ----------------------------------------------------------------------------------------------- notes


def test_note_put_applies_once_per_idempotency_key(executor: ToolExecutor, notes_path: Path) -> None:
    results = [run(executor, "note_put", run_id="r1", step_id="save", key="k", value=i).value for i in range(3)]
    assert results == [
        {"key": "k", "version": 1, "applied": True},
        {"key": "k", "version": 1, "applied": False},
        {"key": "k", "version": 1, "applied": False},
    ]
    store = NoteStore(notes_path)
    assert store.applications("r1:save") == Applications(applied=1, deliveries=3)
    assert run(executor, "note_get", key="k").value == {"key": "k", "found": True, "value": 0, "version": 1}
    assert run(executor, "note_put", run_id="r2", step_id="save", key="k", value=9).value["version"] == 2
    assert store.applications("never") == Applications(0, 0)


def test_note_list_and_direct_writes(notes_path: Path) -> None:
    store = NoteStore(notes_path)
    for key in ("trip/b", "trip/a", "home", "trip/c"):
        store.put(key, key.upper())
    store.put("home", "again")
    assert store.get("home")["version"] == 2  # no idempotency key: every write applies
    assert store.keys("trip/", limit=2) == {"keys": ["trip/a", "trip/b"], "count": 2, "truncated": True}
    assert store.keys()["keys"] == ["home", "trip/a", "trip/b", "trip/c"]
    with pytest.raises(ToolArgumentsInvalid, match="at most"):
        store.put("big", "x" * 70_000)


def _execute_in_child(notes_path: str, call_json: str) -> dict[str, Any]:
    """Runs in a spawned process: a fresh catalog and executor on the same notes file."""
    catalog = Catalog()
    register_demo_tools(catalog, notes_path=notes_path)
    return asyncio.run(ToolExecutor(catalog).execute(ToolCall.model_validate_json(call_json))).model_dump(mode="json")


def test_idempotency_and_flaky_attempts_span_processes(executor: ToolExecutor, notes_path: Path) -> None:
    put = ToolCall(run_id="r1", step_id="save", tool="note_put", args={"key": "k", "value": 1})
    flaky = ToolCall(run_id="r1", step_id="try", tool="flaky", args={"fail_first": 1, "failure_rate": 0})
    first_put = asyncio.run(executor.execute(put))
    first_try = asyncio.run(executor.execute(flaky))
    assert first_put.value["applied"] is True
    assert first_try.error is not None and first_try.error.retryable and "attempt 1" in first_try.error.message
    with SPAWN.Pool(1) as pool:
        again = pool.apply(_execute_in_child, (str(notes_path), put.model_dump_json()))
        retry = pool.apply(_execute_in_child, (str(notes_path), flaky.model_dump_json()))
    assert again["value"] == {"key": "k", "version": 1, "applied": False}
    assert retry["ok"] and retry["value"]["attempt"] == 2
    assert NoteStore(notes_path).applications("r1:save") == Applications(1, 2)


# ----------------------------------------------------------------------------------------------- faults


def test_flaky_sequence_is_a_pure_function_of_seed_key_and_attempt(executor: ToolExecutor) -> None:
    sequence = [flaky_fails(7, "k", n, 0.5) for n in range(1, 40)]
    assert sequence == [flaky_fails(7, "k", n, 0.5) for n in range(1, 40)]
    assert 5 < sum(sequence) < 35
    assert not any(flaky_fails(7, "k", n, 0.0) for n in range(1, 40))
    assert all(flaky_fails(7, "k", n, 1.0) for n in range(1, 40))
    # a seed whose first attempt fails and second succeeds, found deterministically
    seed = next(s for s in range(1000) if flaky_fails(s, "pay", 1, 0.5) and not flaky_fails(s, "pay", 2, 0.5))
    outcomes = [run(executor, "flaky", run_id="r", step_id="p", seed=seed, key="pay") for _ in range(2)]
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[1].value == {"attempt": 2, "key": "pay", "seed": seed}
    other_run = run(executor, "flaky", run_id="r2", step_id="p", seed=seed, key="pay")
    assert not other_run.ok  # a new run starts again at attempt 1


def test_slow_waits_at_least_the_delay(executor: ToolExecutor) -> None:
    started = time.monotonic()
    assert run(executor, "slow", delay_ms=30).value == {"delay_ms": 30}
    assert time.monotonic() - started >= 0.03
    assert executor.catalog.get("slow").check_args({"delay_ms": -1})[0].field() == "args.delay_ms"


def test_fail_always(executor: ToolExecutor) -> None:
    permanent = run(executor, "fail_always", message="nope")
    assert permanent.error is not None
    assert (permanent.error.code, permanent.error.message, permanent.error.retryable) == (
        "tool_failed", "RuntimeError: nope", False,
    )
    transient = run(executor, "fail_always", retryable=True)
    assert transient.error is not None and transient.error.retryable

"""The catalog: schemas from Python functions, catalog files, lookups, versions and LLM renderings."""

from __future__ import annotations

import ast
import asyncio
import enum
import json
import threading
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel

from shared.catalog.catalog import (
    Catalog,
    PythonTransport,
    Tool,
    ToolTransport,
    argument_problems,
    function_schema,
    parse_docstring,
    python_identifier,
    python_tool,
    tool,
)
from shared.errors import InvalidRequest, ToolArgumentsInvalid, ToolNotFound
from shared.models import RetryPolicy, ToolSpec
from shared.suggestions import MAX_CANDIDATES


class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Point(BaseModel):
    x: int
    y: int = 0


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def forecast(
    city: str,
    days: int = 3,
    unit: Unit = Unit.CELSIUS,
    detail: Literal["low", "high"] = "low",
    hourly: bool = False,
    note: Optional[str] = None,  # noqa: UP045 - Optional is one of the spellings under test
    when: str | None = None,
    points: list[Point] | None = None,
    extra: dict[str, float] | None = None,
    idempotency_key: str = "",
) -> dict[str, Any]:
    """Weather forecast for a city.

    Uses the sample service.

    Args:
        city: Name of the city,
            in English.
        days (int): How many days ahead.
        unit: Temperature unit.

    Returns:
        The forecast.
    """
    return {
        "city": city, "days": days, "unit": unit, "detail": detail, "hourly": hourly, "note": note, "when": when,
        "points": points, "extra": extra, "key": idempotency_key,
    }


def impl_positional_only(a: float, /) -> float:
    return a


def impl_undefined_hint(a: NoSuchType) -> float:  # type: ignore[name-defined]  # noqa: F821
    return 1.0


def impl_add(a: float, b: float = 1.0) -> float:
    """Add two numbers.

    Args:
        a: First.
        b: Second.
    """
    return a + b


@tool(name="marked_echo", tags=["util"], side_effects=True, idempotent=False, timeout_s=5)
async def marked(text: str) -> str:
    """Echo the text."""
    return text


# ----------------------------------------------------------------------------------------------- docstrings


@pytest.mark.parametrize(
    ("doc", "description", "params"),
    [
        pytest.param(None, "", {}, id="none"),
        pytest.param("Just a summary.", "Just a summary.", {}, id="summary-only"),
        pytest.param(
            """Summary.

            More text.

            Args:
                a: First
                    continued.
                b (list[int]): Second.
                *rest: Rest.

            Returns:
                Nothing.
            """,
            "Summary.\n\nMore text.",
            {"a": "First continued.", "b": "Second.", "rest": "Rest."},
            id="google",
        ),
        pytest.param(
            """Summary.

            Raises:
                ValueError: never.
            Parameters:
                x: The x.
            """,
            "Summary.",
            {"x": "The x."},
            id="other-section-first",
        ),
    ],
)
def test_parse_docstring(doc: str | None, description: str, params: dict[str, str]) -> None:
    assert parse_docstring(doc) == (description, params)


# ----------------------------------------------------------------------------------------------- schemas


def test_function_schema_covers_the_supported_hints() -> None:
    schema = function_schema(forecast)
    props = schema.parameters["properties"]
    assert schema.description == "Weather forecast for a city.\n\nUses the sample service."
    assert schema.parameters["required"] == ["city"]
    assert schema.parameters["additionalProperties"] is False
    assert props["city"] == {"type": "string", "description": "Name of the city, in English."}
    assert props["days"] == {"type": "integer", "default": 3, "description": "How many days ahead."}
    assert props["unit"]["enum"] == ["c", "f"] and props["unit"]["default"] == "c"
    assert props["detail"]["enum"] == ["low", "high"]
    assert props["hourly"] == {"type": "boolean", "default": False}
    assert props["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert props["when"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    point = props["points"]["anyOf"][0]["items"]
    assert point["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}}
    assert props["extra"]["anyOf"][0] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert "idempotency_key" not in props
    assert "title" not in json.dumps(schema.parameters)
    assert "$defs" not in schema.parameters


def test_function_schema_keeps_recursive_models_and_properties_named_title() -> None:
    def build(title: str, tree: Tree) -> None:
        """Build."""

    parameters = function_schema(build).parameters
    assert parameters["properties"]["title"] == {"type": "string"}
    assert parameters["properties"]["tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert set(parameters["$defs"]) == {"Tree"}
    ToolSpec(name="build", parameters=parameters)  # still a valid schema


def test_function_schema_kwargs_and_rejections() -> None:
    def loose(a: int, **more: Any) -> None:
        """Loose."""

    def positional(a: int, /) -> None:
        """Positional."""

    assert function_schema(loose).parameters["additionalProperties"] is True
    with pytest.raises(TypeError, match="positional-only"):
        function_schema(positional)


def test_parameters_that_shadow_pydantic_names_work() -> None:
    def odd(schema: str, json: int = 1, model_config: bool = False) -> dict[str, Any]:
        """Odd names."""
        return {"schema": schema, "json": json, "model_config": model_config}

    entry = python_tool(odd)
    assert set(entry.spec.parameters["properties"]) == {"schema", "json", "model_config"}
    value = asyncio.run(entry.transport.call({"schema": "s", "json": 2}, idempotency_key="k", timeout_s=None))
    assert value == {"schema": "s", "json": 2, "model_config": False}


# ----------------------------------------------------------------------------------------------- transports


def test_python_transport_converts_arguments_and_passes_the_key() -> None:
    transport = PythonTransport(forecast)
    assert isinstance(transport, ToolTransport)
    value = asyncio.run(
        transport.call(
            {"city": "Oslo", "unit": "f", "points": [{"x": 1}]}, idempotency_key="run:step", timeout_s=None
        )
    )
    assert value["unit"] is Unit.FAHRENHEIT
    assert value["points"] == [Point(x=1, y=0)]
    assert value["key"] == "run:step"
    assert value["days"] == 3


def test_python_transport_runs_async_functions_and_reports_conversion_errors() -> None:
    transport = PythonTransport(marked)
    assert asyncio.run(transport.call({"text": "hi"}, idempotency_key="k", timeout_s=1)) == "hi"
    with pytest.raises(ToolArgumentsInvalid) as caught:
        asyncio.run(PythonTransport(forecast).call({"city": "x", "unit": "kelvin"}, idempotency_key="k", timeout_s=1))
    assert caught.value.field == "args.unit"


# ----------------------------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("args", "opaque", "expected"),
    [
        pytest.param({"city": "Oslo"}, (), [], id="valid"),
        pytest.param({}, (), [(("city",), "missing required argument 'city'")], id="missing"),
        pytest.param({"city": "x", "dayz": 2}, (), [(("dayz",), "unexpected argument 'dayz'; did you mean 'days'?")],
                     id="unexpected-with-hint"),
        pytest.param({"city": 5}, (), [(("city",), "5 is not of type 'string'")], id="wrong-type"),
        pytest.param({"city": "x", "points": [{"x": "a"}]}, (), [(("points", 0, "x"), None)], id="nested-path"),
        pytest.param({"city": {"$ref": "s1"}}, [("city",)], [], id="opaque-value"),
        pytest.param({"city": "x", "points": [{"$ref": "s1"}]}, [("points", 0)], [], id="opaque-in-list"),
        pytest.param({"city": "x", "points": {"$ref": "s1"}, "dayz": 1}, [("points",)],
                     [(("dayz",), None)], id="opaque-does-not-hide-others"),
        pytest.param({"city": "x", "points": [{"y": {"$ref": "s1"}}]}, [("points", 0, "y")],
                     [(("points", 0, "x"), "missing required argument 'x'")], id="shape-errors-above-opaque-kept"),
    ],
)
def test_argument_problems(args: dict[str, Any], opaque: Any, expected: list[tuple[tuple[Any, ...], Any]]) -> None:
    problems = argument_problems(function_schema(forecast).parameters, args, opaque=opaque)
    assert [p.path for p in problems] == [path for path, _ in expected]
    for problem, (_, message) in zip(problems, expected, strict=True):
        if message is not None:
            assert problem.message.startswith(message)
    if problems:
        assert problems[0].field().startswith("args.")


def test_unexpected_argument_on_a_tool_without_parameters() -> None:
    problems = argument_problems({"type": "object", "properties": {}, "additionalProperties": False}, {"x": 1})
    assert problems[0].message == "unexpected argument 'x' (this tool takes no arguments)"


def test_an_unexpected_argument_among_many_parameters_lists_a_few_and_cuts_long_names() -> None:
    """A source's tool may have thousands of parameters, some with long names: the message lists twenty, each cut."""
    names = [f"p{i:04d}" for i in range(1000)] + ["q" * 100_000]
    schema = {"type": "object", "properties": {name: {} for name in names}, "required": ["r" * 100_000],
              "additionalProperties": False}
    problems = argument_problems(schema, {"p0001x": 1, **{name: 1 for name in names}})
    messages = {str(problem.path[0])[:10]: problem.message for problem in problems}
    assert messages["p0001x"].startswith("unexpected argument 'p0001x'; did you mean 'p0001'? (allowed: 'p0000', ")
    assert messages["p0001x"].endswith(", and 981 more)")
    assert len(messages["p0001x"]) < 1000
    assert len(messages["r" * 10]) < 200  # the missing required argument's name is cut too


# ----------------------------------------------------------------------------------------------- the catalog


def test_register_with_options_and_marks() -> None:
    catalog = Catalog()
    entry = catalog.register(forecast, tags=["weather"], timeout_s=2.5, retry=RetryPolicy(max_attempts=5))
    assert entry.name == "forecast" and entry.spec.source == "python"
    assert entry.spec.tags == ["weather"] and entry.spec.timeout_s == 2.5 and entry.spec.retry.max_attempts == 5
    marked_entry = catalog.register(marked)
    assert marked_entry.name == "marked_echo"
    assert marked_entry.spec.side_effects and not marked_entry.spec.idempotent
    assert marked_entry.spec.timeout_s == 5 and marked_entry.spec.tags == ["util"]
    assert catalog.register(marked, name="echo2", tags=["x"]).spec.tags == ["x"]
    assert asyncio.run(marked("direct")) == "direct"  # the mark leaves the function callable


def test_decorator_registers_and_returns_the_function() -> None:
    catalog = Catalog()

    @catalog.tool(description="Overridden.", requires_approval=True)
    def refund(order_id: str) -> str:
        """Refund an order."""
        return order_id

    assert refund("o1") == "o1"
    spec = catalog.get("refund").spec
    assert spec.description == "Overridden." and spec.requires_approval


def test_duplicates_replace_and_remove() -> None:
    catalog = Catalog()
    catalog.register(impl_add, name="add")
    with pytest.raises(ValueError, match="already registered"):
        catalog.register(impl_add, name="add")
    before = catalog.version
    catalog.register(impl_add, name="add", description="Sum.", replace=True)
    assert catalog.get("add").spec.description == "Sum."
    assert catalog.version != before
    catalog.remove("add")
    assert "add" not in catalog and len(catalog) == 0
    with pytest.raises(ToolNotFound):
        catalog.remove("add")


def test_add_all_is_all_or_nothing() -> None:
    catalog = Catalog([Tool(ToolSpec(name="a"))])
    with pytest.raises(ValueError, match="'a'"):
        catalog.add_all([Tool(ToolSpec(name="b")), Tool(ToolSpec(name="a"))])
    assert catalog.names() == ["a"]


def test_get_suggests_close_names() -> None:
    catalog = Catalog([Tool(ToolSpec(name=name)) for name in ("get_weather", "get_time", "send_mail")])
    with pytest.raises(ToolNotFound) as caught:
        catalog.get("get_wether")
    assert caught.value.message == "unknown tool 'get_wether'; did you mean 'get_weather', 'get_time'?"
    with pytest.raises(ToolNotFound, match=r"unknown tool 'zzz'$"):
        catalog.get("zzz")


def test_names_specs_and_version_are_order_independent() -> None:
    first = Catalog([Tool(ToolSpec(name="b")), Tool(ToolSpec(name="a"))])
    second = Catalog([Tool(ToolSpec(name="a")), Tool(ToolSpec(name="b"))])
    assert first.names() == ["a", "b"]
    assert [s.name for s in first.specs()] == ["a", "b"]
    assert first.version == second.version and len(first.version) == 64
    assert Catalog().version != first.version


def test_concurrent_registration_and_reads() -> None:
    catalog = Catalog()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        for i in range(40):
            catalog.add(Tool(ToolSpec(name=f"t{offset}_{i}")))

    def reader() -> None:
        try:
            for _ in range(200):
                names = catalog.names()
                assert names == sorted(names)
                assert len(catalog.version) == 64
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(catalog) == 240


# ----------------------------------------------------------------------------------------------- files


def test_load_json_file_with_all_entry_shapes(tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text(
        json.dumps(
            [
                {"name": "lookup", "description": "Look up.", "parameters": {"type": "object", "properties": {
                    "q": {"type": "string"}}, "required": ["q"]}, "tags": ["search"], "timeout_s": 3},
                {"type": "function", "function": {"name": "wrapped", "description": "W.", "strict": True,
                                                  "parameters": {"type": "object", "properties": {}}},
                 "side_effects": True, "idempotent": False},
                {"name": "add", "impl": "tests.unit.catalog.test_catalog:impl_add", "retry": {"max_attempts": 1}},
            ]
        )
    )
    catalog = Catalog()
    loaded = catalog.load_file(path)
    assert [t.name for t in loaded] == ["lookup", "wrapped", "add"]
    lookup, wrapped, add = loaded
    assert lookup.transport is None and lookup.spec.source == "file" and lookup.spec.timeout_s == 3
    assert wrapped.spec.side_effects and not wrapped.spec.idempotent
    assert add.spec.description == "Add two numbers."
    assert add.spec.parameters["required"] == ["a"]
    assert add.spec.retry.max_attempts == 1
    assert asyncio.run(add.transport.call({"a": 2}, idempotency_key="k", timeout_s=None)) == 3.0


def test_load_yaml_file_with_tools_key_and_marked_impl(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(
        "tools:\n"
        "  - name: echo\n"
        "    impl: tests.unit.catalog.test_catalog:marked\n"
        "  - name: ping\n"
        "    description: Ping a host.\n"
    )
    catalog = Catalog()
    catalog.load_file(path)
    echo = catalog.get("echo").spec
    assert echo.side_effects and echo.tags == ["util"] and echo.description == "Echo the text."
    assert catalog.get("ping").spec.parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("entries", "field", "fragment"),
    [
        pytest.param({"name": "x"}, "tools", "list of tool entries", id="not-a-list"),
        pytest.param(["x"], "tools[0]", "must be an object", id="entry-not-object"),
        pytest.param([{"name": "x", "side_effect": True}], "tools[0].side_effect", "did you mean 'side_effects'",
                     id="unknown-key"),
        pytest.param([{"name": "x", "parameters": {"type": "array"}}], "tools[0].parameters", "type",
                     id="bad-parameters"),
        pytest.param([{"name": "ok"}, {"name": "bad name"}], "tools[1].name", "pattern", id="bad-name"),
        pytest.param([{"name": "x"}, {"name": "x"}], "tools[1].name", "appears twice", id="duplicate"),
        pytest.param([{"name": "x", "impl": "tests.unit.catalog.test_catalog:impl_add"}], "tools[0].impl",
                     "only allowed", id="impl-not-allowed"),
    ],
)
def test_load_entries_errors(entries: Any, field: str, fragment: str) -> None:
    catalog = Catalog()
    with pytest.raises(InvalidRequest) as caught:
        catalog.load_entries(entries)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert len(catalog) == 0


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        pytest.param({"name": "x", "k" * 100_000: 1}, 'tools[0]["' + "k" * 60 + '…"]', "unknown key 'kkk",
                     id="long-key"),
        pytest.param({"name": "x", "side_effect" + "s" * 100_000: 1}, 'tools[0]["side_effect' + "s" * 49 + '…"]',
                     "unknown key 'side_effects", id="long-key-near-a-known-one"),
        pytest.param({"name": "x", 7: 1, "b": 2}, "tools[0].7", "unknown key '7'", id="number-key"),
    ],
)
def test_unknown_key_errors_quote_a_bounded_part_of_the_key(entry: dict[Any, Any], field: str, says: str) -> None:
    """The key is quoted and cut in the message and the field (they held all of it), and not compared when long."""
    with pytest.raises(InvalidRequest) as caught:
        Catalog().load_entries([entry])
    assert says in caught.value.message and len(caught.value.message) < 200
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("impl", "fragment"),
    [
        pytest.param("x" * 100_000, "package.module:function", id="no-colon"),
        pytest.param("tests.unit.catalog.test_catalog:Unit." + "C" * 100_000, "AttributeError 'C", id="no-attribute"),
        pytest.param("tests.unit." + "m" * 100_000 + ":f", "ModuleNotFoundError", id="no-module"),
        pytest.param("." + "r" * 100_000 + ":f", "TypeError", id="relative-module"),  # importlib's TypeError
    ],
)
def test_impl_errors_quote_a_bounded_part_of_the_impl(impl: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Catalog().load_entries([{"name": "x", "impl": impl}], allow_impl=True)
    assert fragment in caught.value.message and len(caught.value.message) < 300


@pytest.mark.parametrize(
    ("impl", "fragment"),
    [
        pytest.param("tests.unit.catalog.test_catalog", "package.module:function", id="no-colon"),
        pytest.param("tests.unit.no_such_module:f", "No module", id="no-module"),
        pytest.param("tests.unit.catalog.test_catalog:missing", "missing", id="no-attribute"),
        pytest.param("tests.unit.catalog.test_catalog:Unit.CELSIUS", "not callable", id="not-callable"),
        pytest.param("tests.unit.catalog.test_catalog:impl_positional_only",
                     "tool function impl_positional_only: positional-only parameter 'a' is not allowed",
                     id="positional-only"),  # the function's own problem, shown whole (it was cut at 60 characters)
        pytest.param("tests.unit.catalog.test_catalog:impl_undefined_hint", "NoSuchType",
                     id="undefined-hint"),  # get_type_hints' NameError escaped as a raw exception
    ],
)
def test_impl_errors(impl: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Catalog().load_entries([{"name": "x", "impl": impl}], allow_impl=True)
    assert caught.value.field == "tools[0].impl"
    assert fragment in caught.value.message


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("tools: [\n")
    with pytest.raises(InvalidRequest, match=r"broken\.yaml"):
        Catalog().load_file(broken)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "x", "colour": 1}]')
    with pytest.raises(InvalidRequest) as caught:
        Catalog().load_file(bad)
    assert str(bad) in caught.value.message and caught.value.field == "tools[0].colour"


def test_load_conflicting_with_existing_tool_is_an_error() -> None:
    catalog = Catalog([Tool(ToolSpec(name="x"))])
    with pytest.raises(InvalidRequest, match="already registered"):
        catalog.load_entries([{"name": "x"}])
    assert catalog.load_entries([{"name": "x", "description": "New."}], replace=True)[0].spec.description == "New."


# ----------------------------------------------------------------------------------------------- stubs


def _stub_signature(stub: str) -> ast.AsyncFunctionDef:
    tree = ast.parse(stub)
    node = tree.body[0]
    assert isinstance(node, ast.AsyncFunctionDef)
    return node


def test_short_stubs_stay_on_one_line() -> None:
    stub = Catalog([python_tool(impl_add, name="add")]).render_python_stub("add")
    assert stub == (
        'async def add(a: float, b: float = 1.0) -> Any:\n    """Add two numbers.\n\n    Args:\n'
        '        a: First.\n        b: Second.\n    """\n'
    )


def test_python_stub_from_a_function() -> None:
    catalog = Catalog()
    catalog.register(forecast)
    stub = catalog.render_python_stub("forecast")
    node = _stub_signature(stub)
    assert node.name == "forecast"
    assert [a.arg for a in node.args.args][:3] == ["city", "days", "unit"]
    assert ast.unparse(node.returns) == "Any"
    assert "    city: str,\n" in stub
    assert "    unit: Literal['c', 'f'] = 'c',\n" in stub
    assert "    note: str | None = None,\n" in stub
    assert "    points: list[dict[str, Any]] | None = None,\n" in stub
    doc = ast.get_docstring(node)
    assert doc.startswith("Weather forecast for a city.")
    assert "city: Name of the city, in English." in doc


def test_python_stub_from_a_file_spec_orders_required_first_and_sanitizes_names() -> None:
    spec = ToolSpec(
        name="mail.send",
        description='Send mail. Say """hi""".',
        parameters={
            "type": "object",
            "properties": {
                "cc": {"type": "array", "items": {"type": "string"}},
                "to": {"type": "string", "description": "Recipient."},
                "class": {"type": ["string", "null"], "default": None},
                "priority": {"type": "integer", "default": 3},
                "body": {},
            },
            "required": ["to", "body"],
        },
    )
    stub = Catalog([Tool(spec)]).render_python_stub("mail.send")
    node = _stub_signature(stub)
    assert node.name == "mail_send"
    assert [a.arg for a in node.args.args] == ["to", "body", "cc", "class_", "priority"]
    assert stub.startswith(
        "async def mail_send(\n    to: str,\n    body: Any,\n    cc: list[str] | None = None,\n"
        "    class_: str | None = None,\n    priority: int = 3,\n) -> Any:\n"
    )
    assert "'''hi'''" in ast.get_docstring(node)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("weather.get", "weather_get", id="dot"),
        pytest.param("class", "class_", id="keyword"),
        pytest.param("a-b", "a_b", id="dash"),
        pytest.param("3d", "_3d", id="digit"),
    ],
)
def test_python_identifier(name: str, expected: str) -> None:
    assert python_identifier(name) == expected


def test_a_yaml_date_in_parameters_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text("- name: report\n  parameters:\n    type: object\n    properties:\n"
                    "      since: {type: string, default: 2024-01-31}\n")
    with pytest.raises(InvalidRequest, match="YAML date") as caught:
        Catalog().load_file(path)
    assert str(path) in caught.value.message


def test_an_unknown_name_among_many_tools_is_compared_with_a_bounded_number_of_them(compared_names: list[int]) -> None:
    """A did-you-mean in a large catalog costs MAX_CANDIDATES comparisons, not one per tool (two seconds at 100k)."""
    catalog = Catalog([Tool(ToolSpec(name=f"tool_{i:05d}_get")) for i in range(3_000)])
    with pytest.raises(ToolNotFound) as caught:
        catalog.get("tool_01234_gte")
    assert "did you mean 'tool_01234_get'" in caught.value.message
    assert compared_names and max(compared_names) <= MAX_CANDIDATES


def test_the_name_index_for_suggestions_is_built_once_per_catalog_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.catalog.catalog as catalog_module

    built: list[int] = []
    real = catalog_module.NameIndex

    def counting(names: Any) -> Any:
        built.append(1)
        return real(names)

    monkeypatch.setattr(catalog_module, "NameIndex", counting)
    catalog = Catalog([Tool(ToolSpec(name=name)) for name in ("get_weather", "get_time", "send_mail")])
    for _ in range(3):
        with pytest.raises(ToolNotFound):
            catalog.get("get_wether")
    assert catalog.close_names("send_mial") == ["send_mail"]
    assert len(built) == 1
    catalog.add(Tool(ToolSpec(name="send_sms")))
    assert catalog.close_names("send_sm")[0] == "send_sms"
    assert len(built) == 2

"""Plan validation, dependencies and $ref resolution: every error names its field; everything is deterministic."""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import pytest

from shared.catalog.catalog import Catalog, Tool
from shared.errors import PlanInvalid
from shared.models import ModelLimits, Plan, ToolSpec
from shared.runs import plan as plan_module
from shared.runs.plan import (
    Ref,
    check_plan,
    is_ref,
    parse_ref,
    referenced_steps,
    resolve_refs,
    resolve_refs_except,
    validate_plan,
)
from shared.suggestions import MAX_CANDIDATES

NUMBER_ARGS = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
SPECS = {
    "add": ToolSpec(name="add", parameters=NUMBER_ARGS),
    "total": ToolSpec(
        name="total",
        parameters={
            "type": "object",
            "properties": {"values": {"type": "array", "items": {"type": "number"}, "minItems": 1}},
            "required": ["values"],
        },
    ),
    "echo": ToolSpec(name="echo", parameters={"type": "object", "properties": {"value": {}}}),
    "get_weather": ToolSpec(
        name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}
    ),
}


def make_plan(*steps: dict[str, Any]) -> Plan:
    return Plan.model_validate({"steps": list(steps)})


def add(step_id: str, a: Any = 1, b: Any = 2, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": "add", "args": {"a": a, "b": b}, **extra}


def ref(text: str) -> dict[str, str]:
    return {"$ref": text}


def test_public_api_is_declared() -> None:
    assert set(plan_module.__all__) == {
        "REF_KEY", "PlanGraph", "PlanProblem", "Ref", "check_plan", "is_ref", "parse_ref", "referenced_steps",
        "resolve_refs", "resolve_refs_except", "validate_plan",
    }


def test_module_is_pure() -> None:
    """The plan module runs inside orchestrators: no clock, randomness, environment or I/O modules."""
    tree = ast.parse(Path(plan_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"time", "datetime", "random", "os", "uuid", "socket", "asyncio", "threading"}


# ----------------------------------------------------------------------------------------------- graphs


DIAMOND = make_plan(
    add("a"),
    add("b", a=ref("a")),
    {"id": "c", "tool": "echo", "args": {"value": ref("a")}},
    {"id": "d", "tool": "total", "args": {"values": [ref("b"), ref("c.value")]}},
    add("e"),
)


def test_the_graph_of_a_diamond_lists_dependencies_and_dependents_in_plan_order() -> None:
    graph = validate_plan(DIAMOND, SPECS)
    assert graph.dependencies == {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ()}
    assert graph.dependents["a"] == ("b", "c")
    assert graph.index["d"] == 3


def test_depends_on_and_refs_merge_and_dedupe() -> None:
    graph = validate_plan(
        make_plan(add("x"), add("y"), add("z", a=ref("x"), depends_on=["y", "x", "y"])), SPECS
    )
    assert graph.dependencies["z"] == ("x", "y")
    assert graph.dependents["x"] == graph.dependents["y"] == ("z",)


def test_steps_may_be_listed_before_their_dependencies() -> None:
    graph = validate_plan(make_plan(add("late", a=ref("early")), add("early")), SPECS)
    assert graph.dependencies == {"late": ("early",), "early": ()}
    assert graph.dependents == {"late": (), "early": ("late",)}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_graph_of_random_dags(seed: int) -> None:
    rng = random.Random(seed)
    count = 60
    steps = []
    parents_of: dict[str, set[str]] = {}
    for i in range(count):
        parents = rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        values: list[Any] = [ref(f"s{p}") for p in parents[:1]] + [1]
        steps.append({"id": f"s{i}", "tool": "total", "args": {"values": values},
                      "depends_on": [f"s{p}" for p in parents[1:]]})
        parents_of[f"s{i}"] = {f"s{p}" for p in parents}
    rng.shuffle(steps)
    plan = Plan.model_validate({"steps": steps})
    graph = validate_plan(plan, SPECS)
    assert {step_id: set(deps) for step_id, deps in graph.dependencies.items()} == parents_of
    for step_id, deps in graph.dependencies.items():
        assert list(deps) == sorted(deps, key=graph.index.__getitem__)
        assert all(step_id in graph.dependents[parent] for parent in deps)
    assert sum(map(len, graph.dependents.values())) == sum(map(len, graph.dependencies.values()))
    assert validate_plan(plan, SPECS) == graph  # deterministic


def test_check_plan_accepts_a_catalog() -> None:
    catalog = Catalog([Tool(spec) for spec in SPECS.values()])
    problems, graph = check_plan(DIAMOND, catalog)
    assert problems == [] and graph is not None


# ----------------------------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    ("steps", "field", "fragment"),
    [
        pytest.param([add("a"), add("b"), add("a")], "plan.steps[2].id", "duplicate step id 'a' (also plan.steps[0])",
                     id="duplicate-id"),
        pytest.param([add("a"), add("b"), {"id": "c", "tool": "get_wether"}], "plan.steps[2].tool",
                     "unknown tool 'get_wether'; did you mean 'get_weather'?", id="unknown-tool"),
        pytest.param([add("a", b="2")], "plan.steps[0].args.b", "add: '2' is not of type 'number'", id="arg-type"),
        pytest.param([{"id": "a", "tool": "add", "args": {"a": 1}}], "plan.steps[0].args.b",
                     "missing required argument 'b'", id="missing-arg"),
        pytest.param([add("a", c=1)], "plan.steps[0]", None, id="extra-step-key-is-a-model-error"),
        pytest.param([{"id": "a", "tool": "add", "args": {"a": 1, "b": 2, "bb": 3}}], "plan.steps[0].args.bb",
                     "unexpected argument 'bb'; did you mean 'b'?", id="unexpected-arg"),
        pytest.param([{"id": "t", "tool": "total", "args": {"values": [1, "x"]}}], "plan.steps[0].args.values[1]",
                     "'x' is not of type 'number'", id="nested-arg-path"),
        pytest.param([add("first"), add("b", depends_on=["frist"])], "plan.steps[1].depends_on[0]",
                     "unknown step 'frist'; did you mean 'first'?", id="unknown-dependency"),
        pytest.param([add("a"), add("b", a=ref("zz.value"))], "plan.steps[1].args.a",
                     "$ref 'zz.value': unknown step 'zz'", id="ref-unknown-step"),
        pytest.param([add("a"), add("b", a=ref("a..x"))], "plan.steps[1].args.a", "is malformed", id="ref-malformed"),
        pytest.param([add("a"), add("b", a={"$ref": 3})], "plan.steps[1].args.a", "must be a string",
                     id="ref-not-string"),
        pytest.param([add("a", a=ref("a"))], "plan.steps[0].args.a", "refers to this step's own result",
                     id="ref-self"),
        pytest.param([add("a", depends_on=["a"])], "plan.steps[0].depends_on[0]", "dependency cycle: a -> a",
                     id="self-dependency"),
        pytest.param([add("a", depends_on=["c"]), add("b", depends_on=["a"]), add("c", depends_on=["b"])],
                     "plan.steps[0].depends_on[0]", "dependency cycle: a -> c -> b -> a", id="cycle"),
        pytest.param([add("x"), add("a", b=ref("b.n")), add("b", a=ref("a"))], "plan.steps[1].args.b",
                     "dependency cycle: a -> b -> a", id="cycle-through-refs"),
    ],
)
def test_problems_name_the_field(steps: list[dict[str, Any]], field: str, fragment: str | None) -> None:
    if fragment is None:  # rejected by the model before plan validation
        with pytest.raises(ValueError, match="Extra inputs"):
            Plan.model_validate({"steps": steps})
        return
    plan = Plan.model_validate({"steps": steps})
    with pytest.raises(PlanInvalid) as caught:
        validate_plan(plan, SPECS)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.code == "plan_invalid"


def test_all_problems_are_reported_in_step_order() -> None:
    plan = make_plan(add("a", b="x"), {"id": "b", "tool": "nope"}, add("a"), add("c", depends_on=["q"]))
    problems, graph = check_plan(plan, SPECS)
    assert graph is None
    assert [p.field for p in problems] == [
        "plan.steps[0].args.b",
        "plan.steps[1].tool",
        "plan.steps[2].id",
        "plan.steps[3].depends_on[0]",
    ]
    with pytest.raises(PlanInvalid) as caught:
        validate_plan(plan, SPECS)
    assert caught.value.message.count("; plan.steps[") == 3


def test_long_problem_lists_are_capped() -> None:
    plan = make_plan(*({"id": f"s{i}", "tool": "missing"} for i in range(15)))
    with pytest.raises(PlanInvalid) as caught:
        validate_plan(plan, SPECS)
    assert caught.value.message.count("unknown tool 'missing'") == 10
    assert caught.value.message.endswith("(and more)")


def unknown_names_plan(steps: int, per_step: int) -> Plan:
    """Each step depends on ``per_step`` steps that do not exist, each one character off an existing id."""
    return make_plan(*({"id": f"s{i:04d}", "tool": "ad", "depends_on": [f"s{i:04d}{j}" for j in range(per_step)],
                        "args": {"a": ref(f"s{i:04d}x.value")}} for i in range(steps)))


def test_only_the_first_unknown_names_get_a_did_you_mean() -> None:
    """Each suggestion compares the name with many others: a small plan naming thousands of unknown steps took
    minutes when every one got its own."""
    problems, graph = check_plan(unknown_names_plan(200, 5), SPECS)
    assert graph is None and len(problems) == 200 * 7
    suggested = [p for p in problems if "did you mean" in p.message]
    assert len(suggested) == 10 and suggested == problems[:10]
    assert problems[10].message == "unknown step 's00013'"
    assert problems[-1].message == "unknown tool 'ad'"


def test_validation_stops_at_the_problems_it_reports() -> None:
    plan = unknown_names_plan(200, 5)
    problems, _ = check_plan(plan, SPECS, max_problems=11)
    assert [p.field for p in problems] == [p.field for p in check_plan(plan, SPECS)[0][:11]]
    with pytest.raises(PlanInvalid) as caught:
        validate_plan(plan, SPECS)
    assert caught.value.field == "plan.steps[0].depends_on[0]"
    assert caught.value.message.count("; plan.steps[") == 9 and caught.value.message.endswith(" (and more)")


def test_problems_then_cycle_up_to_the_limit() -> None:
    plan = make_plan(add("a", b="x", depends_on=["b"]), add("b", depends_on=["a"]))
    assert [p.field for p in check_plan(plan, SPECS, max_problems=1)[0]] == ["plan.steps[0].args.b"]
    assert [p.field for p in check_plan(plan, SPECS, max_problems=2)[0]] == ["plan.steps[0].args.b",
                                                                            "plan.steps[0].depends_on[0]"]


def test_unknown_tools_in_a_large_catalog_get_bounded_suggestions() -> None:
    catalog = Catalog([Tool(ToolSpec(name=f"tool_{i:05d}_get")) for i in range(3000)])
    plan = make_plan(*({"id": f"s{i}", "tool": f"tool_{i:05d}_gte"} for i in range(30)))
    problems, _ = check_plan(plan, catalog)
    assert problems[0].message == "unknown tool 'tool_00000_gte'; did you mean 'tool_00000_get', " \
        "'tool_02000_get', 'tool_01000_get'?"
    assert sum("did you mean" in p.message for p in problems) == 10 and len(problems) == 30


@pytest.mark.parametrize(
    ("args", "valid"),
    [
        pytest.param({"a": ref("s0"), "b": 2}, True, id="ref-for-a-number"),
        pytest.param({"a": ref("s0.x.y[3]"), "b": ref("s0")}, True, id="two-refs"),
        pytest.param({"a": ref("s0")}, False, id="ref-does-not-hide-missing-argument"),
        pytest.param({"a": ref("s0"), "b": 2, "c": ref("s0")}, False, id="ref-in-unexpected-argument"),
    ],
)
def test_refs_skip_value_checks_only(args: dict[str, Any], valid: bool) -> None:
    plan = make_plan(add("s0"), {"id": "s1", "tool": "add", "args": args})
    problems, _ = check_plan(plan, SPECS)
    assert (problems == []) is valid, problems


def test_refs_inside_arrays_keep_array_checks() -> None:
    ok = make_plan(add("s0"), {"id": "t", "tool": "total", "args": {"values": [ref("s0"), 2]}})
    assert check_plan(ok, SPECS)[0] == []
    wrong_type = make_plan(add("s0"), {"id": "t", "tool": "total", "args": {"values": {"x": ref("s0")}}})
    problems, _ = check_plan(wrong_type, SPECS)
    assert [p.field for p in problems] == ["plan.steps[1].args.values"]


def test_limits_are_checked_first() -> None:
    plan = make_plan(add("a"), add("b"), add("c"))
    problems, graph = check_plan(plan, SPECS, ModelLimits(max_steps=2))
    assert graph is None
    assert [p.field for p in problems] == ["plan.steps"]
    with pytest.raises(PlanInvalid) as caught:
        validate_plan(plan, SPECS, ModelLimits(max_args_bytes=5))
    assert caught.value.field == "plan.steps[0].args"


# ----------------------------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("s1", Ref("s1", (), "s1"), id="whole"),
        pytest.param("s1.a.b", Ref("s1", ("a", "b"), "s1.a.b"), id="keys"),
        pytest.param("s1.items[0].name", Ref("s1", ("items", 0, "name"), "s1.items[0].name"), id="bracket-index"),
        pytest.param("fetch-2.0", Ref("fetch-2", ("0",), "fetch-2.0"), id="dot-index"),
        pytest.param("s.key with spaces", Ref("s", ("key with spaces",), "s.key with spaces"), id="spaces"),
    ],
)
def test_parse_ref(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", ".x", "s1.", "s1..x", "s1[x]", "s1[-1]", "1s", "s1[0"])
def test_parse_ref_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_ref(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"$ref": "s1"}, True, id="ref"),
        pytest.param({"$ref": "s1", "note": 1}, False, id="extra-key-is-literal"),
        pytest.param({"ref": "s1"}, False, id="other-key"),
        pytest.param("$ref", False, id="string"),
    ],
)
def test_is_ref(value: Any, expected: bool) -> None:
    assert is_ref(value) is expected


RESULTS = {
    "s1": {"items": [{"name": "a", "tags": ["x", "y"]}, {"name": "b"}], "count": 2, "0": "zero-key", "none": None},
    "s2": [10, 20, 30],
    "s3": 7,
}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param({"x": ref("s3")}, {"x": 7}, id="whole-scalar"),
        pytest.param({"x": ref("s1.count")}, {"x": 2}, id="key"),
        pytest.param({"x": ref("s1.items[1].name")}, {"x": "b"}, id="bracket-index"),
        pytest.param({"x": ref("s1.items.0.tags.1")}, {"x": "y"}, id="dot-index"),
        pytest.param({"x": ref("s1.0")}, {"x": "zero-key"}, id="digit-key-on-dict"),
        pytest.param({"x": ref("s1.none")}, {"x": None}, id="null-value"),
        pytest.param({"x": [ref("s2.2"), {"deep": ref("s2")}], "y": "plain"},
                     {"x": [30, {"deep": [10, 20, 30]}], "y": "plain"}, id="nested"),
        pytest.param({"x": {"$ref": "s1", "keep": True}}, {"x": {"$ref": "s1", "keep": True}}, id="literal-dict"),
    ],
)
def test_resolve_refs(args: dict[str, Any], expected: dict[str, Any]) -> None:
    assert resolve_refs(args, RESULTS) == expected


def test_resolved_values_are_copies() -> None:
    resolved = resolve_refs({"x": ref("s1.items")}, RESULTS)
    resolved["x"][0]["name"] = "changed"
    assert RESULTS["s1"]["items"][0]["name"] == "a"


@pytest.mark.parametrize(
    ("args", "field", "fragment"),
    [
        pytest.param({"x": ref("s9")}, "plan.steps[4].args.x", "step 's9' has no result", id="no-result"),
        pytest.param({"x": ref("s1.itms")}, "plan.steps[4].args.x",
                     "s1 has no key 'itms'; did you mean 'items'? (keys: '0', 'count', 'items', 'none')",
                     id="missing-key"),
        pytest.param({"x": [1, ref("s1.items[5]")]}, "plan.steps[4].args.x[1]",
                     "s1.items has 2 items, so index 5 does not exist", id="index-out-of-range"),
        pytest.param({"x": ref("s3.value")}, "plan.steps[4].args.x", "s3 is a int, so 'value' cannot be looked up",
                     id="into-scalar"),
        pytest.param({"x": ref("s1.none.deeper")}, "plan.steps[4].args.x", "s1.none is a null", id="into-null"),
        pytest.param({"x": ref("s2.first")}, "plan.steps[4].args.x", "s2 is a list, so 'first'", id="key-on-list"),
        pytest.param({"x": {"$ref": "bad..ref"}}, "plan.steps[4].args.x", "malformed", id="malformed"),
        pytest.param({"x": ref("s2.²")}, "plan.steps[4].args.x", "s2 is a list, so '²' cannot be looked up",
                     id="unicode-digit-on-list"),  # str.isdigit() is true for '²', int() is not: it crashed the run
        pytest.param({"x": ref("s2." + "9" * 5000)}, "plan.steps[4].args.x",
                     "s2 has 3 items, so index 99999999… (5000 digits) does not exist", id="index-past-int-parsing"),
        pytest.param({"x": ref("s2[" + "9" * 5000 + "]")}, "plan.steps[4].args.x", "malformed",
                     id="bracket-index-past-int-parsing"),
        pytest.param({"x": ref("s2[٣]")}, "plan.steps[4].args.x", "malformed", id="bracket-non-ascii-digit"),
        pytest.param({"x": ref("s1\n")}, "plan.steps[4].args.x", "malformed", id="trailing-newline"),
    ],
)
def test_resolve_refs_errors_name_the_argument_and_path(args: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(PlanInvalid) as caught:
        resolve_refs(args, RESULTS, field="plan.steps[4].args")
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert len(caught.value.message) < 500


LONG = "k" * 100_000


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


@pytest.mark.parametrize(
    ("text", "results", "says"),
    [
        pytest.param(f"s1.{LONG}.{LONG}.x", {"s1": {LONG: {LONG: 7}}}, "is a int, so 'x'", id="walked-long-keys"),
        pytest.param("s1" + ".a" * 30_000 + ".x", {"s1": nested(30_000, 7)}, ".a.a is a int, so 'x'",
                     id="walked-many-segments"),
        pytest.param(f"s1.{LONG}.x", {"s1": {LONG: [1]}}, "is a list, so 'x'", id="list-under-long-key"),
        pytest.param(f"s1.{LONG}", {"s1": {f"{LONG}{i}": i for i in range(30)}}, "has no key 'kkk", id="long-keys"),
        pytest.param(f"s1.{LONG}.9", {"s1": {LONG: [1]}}, "has 1 items, so index 9", id="index-under-long-key"),
    ],
)
def test_resolve_ref_errors_quote_a_bounded_part_of_the_ref_and_the_result(
        text: str, results: dict[str, Any], says: str) -> None:
    """The reference is the caller's and the keys are a tool's: a message never carries megabytes of either."""
    with pytest.raises(PlanInvalid) as caught:
        resolve_refs({"x": ref(text)}, results)
    assert says in caught.value.message
    assert len(caught.value.message) < 2_000


def test_a_missing_key_among_many_is_compared_with_a_bounded_number_of_them(compared_names: list[int]) -> None:
    """A tool's result may have 100,000 keys: the did-you-mean compares with MAX_CANDIDATES of them, and the message
    lists twenty and counts the rest."""
    result = {f"key_{i:05d}": i for i in range(3_000)}
    with pytest.raises(PlanInvalid) as caught:
        resolve_refs({"x": ref("s1.key_01234x")}, {"s1": result})
    assert "did you mean 'key_01234'?" in caught.value.message
    assert "'key_00019', and 2980 more)" in caught.value.message
    assert compared_names and max(compared_names) <= MAX_CANDIDATES


def test_unknown_dependencies_and_long_cycles_are_named_in_bounded_messages() -> None:
    many = [add(f"s{i}", depends_on=[f"s{(i + 1) % 3_000}"]) for i in range(3_000)]
    problems, _ = check_plan(Plan.model_validate({"steps": many}), SPECS)
    assert problems[0].message.startswith("dependency cycle: s0 -> s1 -> s2 -> ")
    assert "(3000 steps)" in problems[0].message and len(problems[0].message) < 300
    unknown = Plan.model_validate({"steps": [add("a", depends_on=[LONG])]})
    problems, _ = check_plan(unknown, SPECS)
    assert problems[0].message.startswith("unknown step 'kkk") and len(problems[0].message) < 200


def test_graph_resolve_args_uses_the_step_index_as_field() -> None:
    graph = validate_plan(DIAMOND, SPECS)
    assert graph.resolve_args("d", {"b": 5, "c": {"value": 6}}) == {"values": [5, 6]}
    with pytest.raises(PlanInvalid) as caught:
        graph.resolve_args("d", {"b": 5, "c": {}})
    assert caught.value.field == "plan.steps[3].args.values[1]"


def test_references_into_stored_results_are_left_for_the_activity() -> None:
    args = {"a": {"$ref": "s1.x"}, "b": [{"$ref": "s2"}, 3], "c": {"$ref": "bad..ref"}}
    assert referenced_steps(args) == {"s1", "s2"}  # a malformed reference names no step
    resolved = resolve_refs_except({"a": args["a"], "b": args["b"]}, {"s1": {"x": 7}}, {"s2"})
    assert resolved == {"a": 7, "b": [{"$ref": "s2"}, 3]}


def test_max_problems_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_problems"):
        check_plan(Plan.model_validate({"steps": [{"id": "a", "tool": "add", "args": {"a": 1, "b": 2}}]}), SPECS,
                   max_problems=0)


class _SwappedCatalog(Catalog):
    """A catalog whose tool leaves between a membership test and a read (a source sync swapping the snapshot)."""

    def __contains__(self, name: object) -> bool:
        return True


def test_a_tool_leaving_the_catalog_during_a_check_is_a_plan_problem_not_an_escape() -> None:
    catalog = _SwappedCatalog([Tool(ToolSpec(name="add"))])
    plan = Plan.model_validate({"steps": [{"id": "a", "tool": "gone", "args": {}}]})
    problems, graph = check_plan(plan, catalog)
    assert graph is None and [p.field for p in problems] == ["plan.steps[0].tool"]
    assert problems[0].message.startswith("unknown tool 'gone'")

"""What the docs and the portal promise about telemetry is what the code emits: attribute and span names in README.md
and docs/operations.md, the metrics table in shared/telemetry/metrics.py, no attribute name nothing sets, and every
telemetry name the deployed alert rules (``infra/alerts/*.kql``) and the Weft workbook
(``infra/workbooks/weft.workbook.json``) query: span names, attributes, metrics, custom events, the outcome and status
values they compare with, and the log phrases they match."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import shared.telemetry.metrics
from shared.catalog.breaker import BreakerState
from shared.results import RunStatus
from shared.telemetry import Metrics
from shared.telemetry import attributes as attr

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", ROOT / "docs" / "operations.md"]
APP_CODE = [*sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "activities").rglob("*.py")),
            *sorted((ROOT / "orchestrations").rglob("*.py"))]
ALERT_QUERIES = sorted((ROOT / "infra" / "alerts").glob("*.kql"))
WORKBOOK = ROOT / "infra" / "workbooks" / "weft.workbook.json"
ALERTS_BICEP = ROOT / "infra" / "modules" / "alerts.bicep"

SPAN_NAME_PREFIXES = {"weft.run", "weft.stage", "weft.activity", "weft.sandbox", "weft.search"}
"""Span names the docs mention (``weft.run <mode>``...); the ``execute_tool``/``chat`` spans are not dotted."""
POLICY_ONLY = {attr.GEN_AI_SYSTEM_INSTRUCTIONS, attr.GEN_AI_TOOL_CALL_ARGUMENTS, attr.GEN_AI_TOOL_CALL_RESULT}
"""Content keys Weft never sets, named in the content policy so that a caller setting them is filtered too."""
NAME = re.compile(r"(?:weft|gen_ai)\.[a-z0-9_.]*[a-z0-9_]")
DOC_NAME = re.compile(rf"(?<![\w/.-]){NAME.pattern}")
"""A name in prose; ``infra/workbooks/weft.workbook.json`` is a path, not a telemetry name."""
HOST_DIMENSIONS = {"Category", "prop__isReplay", "prop__instanceId", "prop__state", "prop__functionName",
                   "prop__reason"}
"""customDimensions written by the Functions host and the Durable extension's tracking events, not by Weft."""
HOST_VALUES = {"Host.Triggers.DurableTask", "Listening", "ExternalEventRaised", "TimerExpired", "Completed", "Failed",
               "Terminated"}
"""Values of those dimensions the queries compare with (the Durable tracking events' category and states)."""
SPAN_FUNCTIONS = {"open_span": 1, "_span": 0, "start_span": 0, "start_as_current_span": 0}
"""Calls that name a span, and the position of the name argument."""


# ------------------------------------------------------------------------------------------- what the code emits


def attribute_names() -> set[str]:
    return {getattr(attr, name) for name in attr.__all__ if isinstance(getattr(attr, name), str)
            and NAME.fullmatch(getattr(attr, name))}


def all_attribute_keys() -> set[str]:
    """Every attribute key the code sets (``error.type`` too), with the ``_sha256`` digests of hashed content."""
    keys = {getattr(attr, name) for name in attr.__all__ if isinstance(getattr(attr, name), str)}
    return keys | {f"{name}_sha256" for name in attr.HASHED_CONTENT_ATTRIBUTES}


@cache
def metric_names() -> frozenset[str]:
    """Names of the OpenTelemetry instruments :class:`Metrics` records (the ``customMetrics`` names)."""
    reader = InMemoryMetricReader()
    metrics = Metrics(MeterProvider(metric_readers=[reader]), CollectorRegistry())
    metrics.tool_call("t", "ok", 1.0)
    metrics.tool_retry("t")
    metrics.run_finished("plan", "completed", 1.0)
    metrics.llm_tokens("planner", "p", input_tokens=1, output_tokens=1)
    metrics.llm_call("planner", "p", "ok", 1.0)
    metrics.breaker_transition("t", "closed", "open")
    metrics.sandbox_run("inline", "ok", 1.0)
    data = reader.get_metrics_data()
    return frozenset(m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)


@cache
def parsed_code() -> tuple[tuple[Path, ast.Module, str], ...]:
    return tuple((path, ast.parse(text := path.read_text(encoding="utf-8")), text) for path in APP_CODE)


@cache
def span_names() -> tuple[frozenset[str], frozenset[str]]:
    """(exact span names, span name prefixes such as ``"weft.run "``) from every call that names a span."""
    exact, prefixes = set(), set()
    for _, tree, _ in parsed_code():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            position = SPAN_FUNCTIONS.get(func)
            if position is None or len(node.args) <= position:
                continue
            arg = node.args[position]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                exact.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                prefixes.add(arg.values[0].value)
    return frozenset(exact), frozenset(prefixes)


@cache
def custom_event_names() -> frozenset[str]:
    """Custom event names: module-level ``*_EVENT = "<name>"`` constants in the app code."""
    return frozenset(
        node.value.value
        for _, tree, _ in parsed_code() for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        and any(isinstance(t, ast.Name) and t.id.endswith("_EVENT") for t in node.targets)
    )


@cache
def external_event_names() -> frozenset[str]:
    """Events the orchestrators wait for: ``wait_for_external_event("<name>")`` or a module-level constant."""
    constants = {
        target.id: node.value.value
        for _, tree, _ in parsed_code() for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets if isinstance(target, ast.Name)
    }
    found = set()
    for _, tree, _ in parsed_code():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "wait_for_external_event"
                    and node.args):
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
                elif isinstance(arg, ast.Name) and arg.id in constants:
                    found.add(constants[arg.id])
    return frozenset(found)


@cache
def string_literals() -> frozenset[str]:
    return frozenset(node.value for _, tree, _ in parsed_code() for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))


@cache
def error_codes() -> frozenset[str]:
    """Every ``code = "..."`` (class attribute) and ``code="..."`` (keyword) in the app code."""
    found = set()
    for _, tree, _ in parsed_code():
        for node in ast.walk(tree):
            assigned = isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "code" for t in node.targets)
            keyword = isinstance(node, ast.keyword) and node.arg == "code"
            if (assigned or keyword) and isinstance(node.value, ast.Constant):
                found.add(node.value.value)
    return frozenset(v for v in found if isinstance(v, str))


def emitted_names() -> set[str]:
    """Attribute names, the ``_sha256`` digests the content policy records instead of hashed content, the metric
    names and the custom event names."""
    names = attribute_names()
    return names | {f"{name}_sha256" for name in attr.HASHED_CONTENT_ATTRIBUTES} | metric_names() | custom_event_names()


# ---------------------------------------------------------------------------------------------- what KQL uses


@dataclass
class QueryNames:
    """The telemetry names one query uses, by kind, and the ones no code emits."""

    label: str
    used: dict[str, set[str]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def deployed_queries() -> dict[str, str]:
    """``alert:<rule>`` and ``workbook:<item>`` -> KQL, for every alert rule's query file and workbook query."""
    queries = {f"alert:{path.stem}": path.read_text(encoding="utf-8") for path in ALERT_QUERIES}
    workbook = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    for item in workbook["items"]:
        if item["type"] == 3:
            queries[f"workbook:{item['name']}"] = item["content"]["query"]
    return queries


def availability_test_names() -> set[str]:
    return set(re.findall(r"^\s*Name: '([^']+)'", ALERTS_BICEP.read_text(encoding="utf-8"), re.MULTILINE))


def http_function_names() -> set[str]:
    """Names of HTTP-triggered functions (``requests.name`` in classic Application Insights mode)."""
    names = set()
    for path, tree, _ in parsed_code():
        if path.parent.name != "activities":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                    isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "route" for d in node.decorator_list):
                names.add(node.name)
    return names


def span_name_known(name: str, *, prefix: bool) -> bool:
    exact, prefixes = span_names()
    if name in exact or name in prefixes:
        return True
    if prefix:
        return False
    # "weft.stage approval": a prefix the code emits plus a stage name the orchestrators pass as a literal.
    return any(name.startswith(p) and name[len(p):] in string_literals() for p in prefixes)


def analyse(label: str, kql: str) -> QueryNames:
    result = QueryNames(label)

    def use(kind: str, name: str, ok: bool) -> None:
        result.used.setdefault(kind, set()).add(name)
        if not ok:
            result.unknown.append(f"{kind} {name!r}")

    code = re.sub(r"//[^\n]*", "", kql)  # comments may mention anything
    for key in re.findall(r'customDimensions\["([^"]+)"\]', code) + re.findall(r"customDimensions\.(\w+)", code):
        if key in HOST_DIMENSIONS:
            use("host dimension", key, True)
        else:
            use("attribute", key, key in all_attribute_keys())
    for op, value in re.findall(r'\bname\s*(==|startswith)\s*"([^"]+)"', code):
        if value in metric_names():
            use("metric", value, True)
        elif value in custom_event_names():
            use("custom event", value, True)
        elif value in availability_test_names():
            use("availability test", value, True)
        elif value in http_function_names():
            use("function", value, True)
        else:
            use("span", value, span_name_known(value, prefix=op == "startswith"))
    for variable, value in re.findall(r'\b(outcome|status)\s*(?:==|!=)\s*"([^"]+)"', code):
        allowed = {s.value for s in RunStatus} if variable == "status" else {"ok", *error_codes()}
        use(f"{variable} value", value, value in allowed)
    for key, value in re.findall(r'customDimensions\["([^"]+)"\]\)?\s*==\s*"([^"]+)"', code):
        if key in HOST_DIMENSIONS:
            use("host value", value, value in HOST_VALUES)
        elif key == attr.BREAKER_TO:
            use("breaker state", value, value in {s.value for s in BreakerState})
    for phrase in re.findall(r'\bmessage\s+(?:has|startswith|contains)\s+"([^"]+)"', code):
        use("log phrase", phrase, any(phrase in text for _, _, text in parsed_code()))
    for event in re.findall(r'"WaitForExternalEvent:([\w-]+)"', code):
        # Durable's Listening reason names the event an orchestrator waits for.
        use("external event", event, event in external_event_names())
    states = re.findall(r'\bstate\s*==\s*"([^"]+)"', code)
    states += [value for group in re.findall(r"\bstate\s+in\s*\(([^)]*)\)", code)
               for value in re.findall(r'"([^"]+)"', group)]
    for state in states:
        use("host value", state, state in HOST_VALUES)
    return result


@pytest.fixture(scope="module")
def inventory() -> dict[str, QueryNames]:
    return {label: analyse(label, kql) for label, kql in deployed_queries().items()}


# ------------------------------------------------------------------------------------------------------ tests


def test_every_name_the_docs_query_is_emitted():
    documented: dict[str, set[str]] = {}
    unknown: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        queried = {key for key in re.findall(r'customDimensions\["([^"]+)"\]', text) if NAME.fullmatch(key)}
        families = set(re.findall(rf"({NAME.pattern})\.\*", text))  # `gen_ai.usage.*`
        names = (queried | set(DOC_NAME.findall(text))) - families
        documented[doc.name] = names
        unknown[doc.name] = sorted(names - emitted_names() - SPAN_NAME_PREFIXES) + sorted(
            family for family in families if not any(n.startswith(f"{family}.") for n in emitted_names()))
    assert unknown == {"README.md": [], "operations.md": []}
    assert {attr.RUN_ID, attr.RUN_STATUS, attr.TOOL_NAME, attr.GEN_AI_RESPONSE_MODEL} <= documented["operations.md"]


def test_every_attribute_name_is_set_by_the_code():
    used: set[str] = set()
    for path in APP_CODE:
        if path.name == "attributes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "attr":
                used.add(getattr(attr, node.attr))
    assert sorted(attribute_names() - used - POLICY_ONLY) == []


def test_the_metrics_table_lists_what_the_metrics_record():
    table = shared.telemetry.metrics.__doc__ or ""
    documented = set(re.findall(r"^``(weft\.[a-z_.]+)``", table, flags=re.MULTILINE))
    assert documented == set(metric_names())
    recording = {name for name, value in vars(Metrics).items() if callable(value) and not name.startswith("_")}
    assert recording == {"tool_call", "tool_retry", "run_finished", "llm_tokens", "llm_call", "breaker_transition",
                         "sandbox_run", "prometheus_text"}, "a new metric is added to this test and the table"


def test_the_code_scan_finds_what_the_queries_rely_on():
    # Guards the scanners: the span names of both emitters, the audit event, error codes and run statuses.
    exact, prefixes = span_names()
    assert "weft.search" in exact
    assert {"weft.run ", "weft.stage ", "weft.activity ", "weft.sandbox ", "execute_tool ", "chat "} <= prefixes
    assert "weft.audit" in custom_event_names()
    assert {"model_throttled", "sandbox_busy", "sandbox_limit_exceeded", "circuit_open"} <= error_codes()
    assert {"weft.breaker.transitions", "weft.tool.retries", "weft.runs"} <= metric_names()
    assert "ready" in http_function_names()
    assert "approval" in external_event_names()


def test_every_alert_rule_and_the_workbook_have_queries(inventory):
    assert {label for label in inventory if label.startswith("alert:")} == {
        f"alert:{name}" for name in re.findall(r"loadTextContent\('\.\./alerts/([\w-]+)\.kql'\)",
                                               ALERTS_BICEP.read_text(encoding="utf-8"))}
    assert len([label for label in inventory if label.startswith("workbook:")]) >= 10


def test_deployed_queries_use_only_names_the_code_emits(inventory, capsys):
    # The listing the issue asks for: each alert and workbook query with the names it uses (shown with -s or -rA).
    lines = []
    for label, names in sorted(inventory.items()):
        lines.append(label)
        lines += [f"    {kind}: {', '.join(sorted(values))}" for kind, values in sorted(names.used.items())]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert {label: names.unknown for label, names in inventory.items() if names.unknown} == {}
    assert [label for label, names in inventory.items() if not names.used] == [], "a query the checker cannot read"


@pytest.mark.parametrize(
    ("kql", "unknown"),
    [
        ('dependencies | where name startswith "execute_tool " | extend o = customDimensions["weft.tool.outcome"]',
         []),
        ('dependencies | extend x = customDimensions["weft.tool.colour"]', ["attribute 'weft.tool.colour'"]),
        ('customMetrics | where name == "weft.tool.calls_total"', ["span 'weft.tool.calls_total'"]),
        ('union requests | where name startswith "weft.runs "', ["span 'weft.runs '"]),
        ('dependencies | where name == "weft.stage approval"', []),
        ('dependencies | where name == "weft.stage lunch"', ["span 'weft.stage lunch'"]),
        ('dependencies | extend outcome = tostring(customDimensions["weft.llm.outcome"]) '
         '| where outcome == "model_hiccup"', ["outcome value 'model_hiccup'"]),
        ('traces | where message has "no such phrase anywhere in the code"',
         ["log phrase 'no such phrase anywhere in the code'"]),
        ('customEvents | where name == "weft.audit"', []),
        ('traces | where customDimensions["prop__state"] == "Dancing"', ["host value 'Dancing'"]),
        ('traces | where reason startswith "WaitForExternalEvent:payment"', ["external event 'payment'"]),
    ],
    ids=["known", "unknown-attribute", "prometheus-name", "unknown-span-prefix", "stage", "unknown-stage",
         "unknown-outcome", "unknown-log-phrase", "custom-event", "unknown-host-value", "unknown-external-event"],
)
def test_the_query_checker_reports_unknown_names(kql, unknown):
    assert analyse("probe", kql).unknown == unknown

"""What the docs promise about telemetry is what the code emits: attribute and span names in README.md and
docs/operations.md, the metrics table in shared/telemetry/metrics.py, and no attribute name nothing sets."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import shared.telemetry.metrics
from shared.telemetry import Metrics
from shared.telemetry import attributes as attr

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", ROOT / "docs" / "operations.md"]
APP_CODE = [*sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "activities").rglob("*.py")),
            *sorted((ROOT / "orchestrations").rglob("*.py"))]

SPAN_NAME_PREFIXES = {"weft.run", "weft.stage", "weft.activity", "weft.sandbox", "weft.search"}
"""Span names the docs mention (``weft.run <mode>``...); the ``execute_tool``/``chat`` spans are not dotted."""
POLICY_ONLY = {attr.GEN_AI_SYSTEM_INSTRUCTIONS, attr.GEN_AI_TOOL_CALL_ARGUMENTS, attr.GEN_AI_TOOL_CALL_RESULT}
"""Content keys Weft never sets, named in the content policy so that a caller setting them is filtered too."""
NAME = re.compile(r"(?:weft|gen_ai)\.[a-z0-9_.]*[a-z0-9_]")


def attribute_names() -> set[str]:
    return {getattr(attr, name) for name in attr.__all__ if isinstance(getattr(attr, name), str)
            and NAME.fullmatch(getattr(attr, name))}


def emitted_names() -> set[str]:
    """Attribute names, plus the ``_sha256`` digests the content policy records instead of hashed content."""
    names = attribute_names()
    return names | {f"{name}_sha256" for name in attr.HASHED_CONTENT_ATTRIBUTES}


def test_every_name_the_docs_query_is_emitted():
    documented: dict[str, set[str]] = {}
    unknown: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        queried = {key for key in re.findall(r'customDimensions\["([^"]+)"\]', text) if NAME.fullmatch(key)}
        families = set(re.findall(rf"({NAME.pattern})\.\*", text))  # `gen_ai.usage.*`
        names = (queried | set(NAME.findall(text))) - families
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
    recorded = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert documented == recorded
    recording = {name for name, value in vars(Metrics).items() if callable(value) and not name.startswith("_")}
    assert recording == {"tool_call", "tool_retry", "run_finished", "llm_tokens", "llm_call", "breaker_transition",
                         "sandbox_run", "prometheus_text"}, "a new metric is added to this test and the table"

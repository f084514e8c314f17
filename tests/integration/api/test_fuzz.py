"""schemathesis over the OpenAPI document against a devhost: no server error, every error body JSON
``{code, message, field}``, every answer conforming to the document (status, content type, schema).

Bounded and deterministic: ``WEFT_FUZZ_EXAMPLES`` examples per operation (default 100), a derandomized Hypothesis
run, each request with a 30 s timeout. A 503 the document lists (a dependency that is not there: no LLM endpoint
for task mode, a source host that does not resolve) is counted apart; any other 5xx fails.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import DevhostProcess

MAX_EXAMPLES = int(os.environ.get("WEFT_FUZZ_EXAMPLES", "100"))


def _documented(operation: Any, status: int) -> bool:
    return str(status) in operation.definition.raw.get("responses", {})


def _check(case: Any, problems: list[str], figures: Counter[str]) -> None:
    response = case.call(timeout=30)
    figures["requests"] += 1
    status = response.status_code
    figures[f"status {status}"] += 1
    where = f"{case.method} {case.formatted_path}: {status}"
    if status >= 500 and not (status == 503 and _documented(case.operation, 503)):
        figures["server_errors"] += 1
        problems.append(f"{where} {response.text[:300]}")
    if status == 503:
        figures["documented_503"] += 1
    if status >= 400 and case.path != "/api/ready":
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not (isinstance(body, dict) and set(body) == {"code", "message", "field"}):
            figures["non_json_errors"] += 1
            problems.append(f"{where} without the JSON error body")
    try:
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                 response_schema_conformance])
    except Exception as exc:  # schemathesis raises a failure group naming each violated check
        figures["schema_violations"] += 1
        problems.append(f"{where} does not conform: {str(exc)[:600]}")


def test_api_fuzz(api_host: DevhostProcess) -> None:
    schema = schemathesis.openapi.from_url(api_host.base_url + "/api/openapi.json")
    figures: Counter[str] = Counter()
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    described = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {operation.label for operation in operations} == described - {"GET /api/openapi.json"}  # its own URL
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def fuzz(case: Any) -> None:
            _check(case, problems, figures)

        fuzz()
    statuses = {k: v for k, v in sorted(figures.items()) if k.startswith("status ")}
    print(f"\nschemathesis: {len(operations)} operations, {figures['requests']} requests, "
          f"{figures['server_errors']} server errors, {figures['documented_503']} documented 503, "
          f"{figures['non_json_errors']} non-JSON errors, {figures['schema_violations']} schema violations; "
          f"{statuses}")
    assert problems == [], "\n".join(problems[:20])

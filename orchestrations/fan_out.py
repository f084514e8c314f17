"""A fan-out/fan-in orchestration: the smallest durable job, used to prove the host end to end."""

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Input ``{"items": [..]}``: each item becomes one ``describe_item`` activity, all in parallel."""
    items = (context.get_input() or {}).get("items", [])
    context.set_custom_status({"stage": "fan_out", "total": len(items)})
    results = yield context.task_all([context.call_activity("describe_item", item) for item in items])
    return {"count": len(results), "results": results}


"""MCP resources: a step result too large for a tool answer is read as the resource
``weft://runs/{run_id}/steps/{step_id}/result`` (the ``get_run`` answer names it), for the run's own caller."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

from shared.errors import InvalidRequest, WeftError
from shared.identity.caller import Role
from shared.mcp_server.calls import parse_call
from shared.runs.admission import owned_run
from shared.runs.run_status import DurableStarter, step_result
from shared.runtime import get_runtime_async

__all__ = ["STEP_RESULT_TEMPLATE", "read_step_result", "step_result_uri"]

STEP_RESULT_TEMPLATE = "weft://runs/{run_id}/steps/{step_id}/result"
_STEP_RESULT = re.compile(r"^weft://runs/(?P<run_id>[A-Za-z0-9_-]{1,128})/steps/(?P<step_id>[A-Za-z0-9_.:-]{1,200})"
                          r"/result$")


def step_result_uri(run_id: str, step_id: str) -> str:
    return f"weft://runs/{run_id}/steps/{step_id}/result"


async def read_step_result(context: str | bytes | Mapping[str, Any], client: DurableStarter) -> str:
    """The resource trigger's whole work: the caller (from the request's headers, as for tools), the run (its own,
    or any with ``Runs.ReadAll``), the step's whole result as JSON text; errors as a JSON error body."""
    try:
        call = parse_call(context)
        data = json.loads(context) if isinstance(context, str | bytes) else dict(context)
        match = _STEP_RESULT.fullmatch(str(data.get("uri") or ""))
        if match is None:
            raise InvalidRequest(f"not a step result resource; use {STEP_RESULT_TEMPLATE}", field="uri")
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(call.headers)
        entry = await owned_run(match["run_id"], caller, runtime.run_index, readers=(Role.RUNS_READ_ALL,))
        status = await client.get_status(entry.run_id, show_input=False)
        body = await asyncio.to_thread(step_result, status.output, entry.run_id, match["step_id"], runtime.payloads)
    except WeftError as exc:
        return json.dumps(exc.to_dict())
    return body.decode()

"""Which tools of a run need a human's approval: decided here only, for plans, code and the task planner's replies."""

from __future__ import annotations

import ast
from collections.abc import Mapping

from shared.catalog.schema import python_identifier
from shared.models import Plan, ToolSpec

__all__ = ["tools_needing_approval"]


def tools_needing_approval(
    specs: Mapping[str, ToolSpec], *, plan: Plan | None = None, code: str | None = None
) -> list[str]:
    """Tools marked ``requires_approval`` that ``plan`` calls, or whose (Python) names ``code`` mentions, sorted.

    ``specs``: the tools the run may use, by name. Code that does not parse needs nothing approved: it cannot run.
    """
    if plan is not None:
        used = {step.tool for step in plan.steps}
    elif code:
        try:
            names = {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
        except SyntaxError:
            return []
        used = {tool for tool in specs if python_identifier(tool) in names}
    else:
        return []
    return sorted(tool for tool in used if tool in specs and specs[tool].requires_approval)

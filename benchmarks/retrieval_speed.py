"""Tool-search speed on synthetic catalogs of 1k / 10k / 100k tools: index build, cold start, query latency, RSS.

For each size, in fresh processes (so imports, model load and page cache are part of what is measured):

* ``cold``: empty embedding cache; build the HybridRetriever (every tool embedded; catalogs of 256+ tools go through
  the bulk encoder, ONNX Runtime on every core) and store the embeddings in a local cache folder.
* ``prime``: the first start after the cold build: every vector comes from the embedding cache, and the index
  derived from the tools (documents, BM25 arrays, vector matrix) is saved beside it.
* ``warm`` (repeated ``--repeats`` times, medians printed): process spawn (clock read by the parent just before it
  starts the child) -> interpreter start -> imports -> reading the catalog -> loading the saved index
  (memory-mapped) -> first search result; then query latency over single-task and multi-part requests with the
  result LRU off, so every query pays for its embedding (ONNX Runtime, one thread) and scoring; then the process RSS
  (current and peak). The catalog's content key is a sha256 of the catalog file, as the runtime passes its catalog
  version.

    .venv/bin/python benchmarks/retrieval_speed.py                      # 1k, 10k, 100k (100k cold: ~15-30 min)
    .venv/bin/python benchmarks/retrieval_speed.py --sizes 1000 10000   # quicker

The synthetic tools look like API operations (``<service>_<verb><Noun>`` with a two-sentence description and 2-5
parameters, about 60 tokens of text each); queries are built from the same vocabulary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("RETRIEVAL_SPEED_DIR") or Path.home() / ".cache" / "weft" / "retrieval-speed")

VERBS = ("get", "list", "create", "update", "delete", "describe", "start", "stop", "restart", "cancel", "approve",
         "reject", "export", "import", "sync", "archive", "restore", "tag", "untag", "validate", "publish", "share",
         "search", "count", "rotate", "attach", "detach", "enable", "disable", "schedule", "send", "upload")
NOUNS = ("invoice", "customer", "order", "shipment", "ticket", "user", "group", "role", "policy", "bucket", "file",
         "folder", "report", "dashboard", "alert", "metric", "log", "trace", "deployment", "cluster", "node", "volume",
         "snapshot", "backup", "database", "table", "index", "queue", "topic", "subscription", "webhook", "secret",
         "certificate", "domain", "record", "calendar", "event", "meeting", "message", "channel", "contact", "lead",
         "opportunity", "campaign", "coupon", "product", "price", "inventory", "warehouse", "supplier", "contract",
         "employee", "payroll", "timesheet", "expense", "budget", "forecast", "flight", "hotel", "booking", "route",
         "vehicle", "driver", "device", "sensor", "firmware", "playlist", "song", "video", "image", "document",
         "translation", "summary", "model", "dataset", "experiment", "pipeline", "job", "task", "workflow", "form")
SERVICES = ("crm", "erp", "billing", "storage", "compute", "network", "identity", "monitoring", "messaging", "travel",
            "hr", "finance", "media", "iot", "analytics", "docs", "support", "commerce", "logistics", "ml",
            "calendar", "mail", "chat", "search", "maps", "security", "backup", "cdn", "dns", "devops", "legal",
            "marketing", "sales", "payments", "tax", "shipping", "catalog", "reviews", "loyalty", "forms", "survey",
            "kb")
QUALIFIERS = ("", "Batch", "Version", "Status", "Settings", "History", "Summary", "Draft", "Template", "Permission")
DETAILS = ("Returns the result as JSON.", "Requires the caller to have write access.", "Supports pagination.",
           "The operation is idempotent.", "Changes take effect within a minute.", "Only available in paid plans.",
           "Emits an audit event.", "Fails if the resource is locked.")
PARAMS = ("id", "name", "region", "limit", "cursor", "owner", "tags", "status", "start_date", "end_date", "format",
          "priority", "email", "amount", "currency", "language", "description", "dry_run")


def synthetic_tools(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` distinct API-like tool specs (deterministic)."""
    rng = random.Random(seed)
    combos = [(s, v, o, q) for s in SERVICES for v in VERBS for o in NOUNS for q in QUALIFIERS]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} synthetic tools")
    tools = []
    for service, verb, noun, qualifier in rng.sample(combos, n):
        params = rng.sample(PARAMS, rng.randint(2, 5))
        what = f"{noun} {qualifier.lower()}".strip()
        tools.append({
            "name": f"{service}_{verb}{noun.title()}{qualifier}",
            "description": f"{verb.title()} a {what} in the {service} service. {rng.choice(DETAILS)}",
            "parameters": {"type": "object", "properties": {
                p: {"type": "string", "description": f"The {p.replace('_', ' ')} of the {noun}."} for p in params}},
            "tags": [service],
            "source": f"synthetic:{service}",
        })
    return tools


def synthetic_queries(n_single: int, n_multi: int, seed: int = 11) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)

    def task() -> str:
        verb, noun, service = rng.choice(VERBS), rng.choice(NOUNS), rng.choice(SERVICES)
        return rng.choice((f"please {verb} the {noun} in {service}", f"{verb} my {noun} on the {service} system",
                           f"I need to {verb} a {noun} for the {service} team", f"can you {verb} {noun}s in {service}"))

    singles = [task() for _ in range(n_single)]
    multis = [rng.choice(("{a}, then {b}", "{a} and then {b}, and finally {c}", "First {a}; after that {b}")).format(
        a=task(), b=task(), c=task()) for _ in range(n_multi)]
    return singles, multis


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------------------------------
# Worker: runs in a fresh process, prints one JSON line.


def worker(phase: str, size: int, n_queries: int, spawned_at: float) -> None:
    import psutil

    t_import = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from shared.search.embedding import shared_encoder
    from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
    from shared.search.retrieval import HybridRetriever, RetrievalSettings

    imported = time.perf_counter() - t_import
    settings = RetrievalSettings(lru_size=0)
    encoder = shared_encoder(settings.max_tokens)
    t_read = time.perf_counter()
    raw = (WORK / f"tools-{size}.jsonl").read_bytes()
    content_key = hashlib.sha256(raw).hexdigest()
    specs = [json.loads(line) for line in raw.splitlines() if line.strip()]
    read = time.perf_counter() - t_read
    cache_dir = WORK / f"cache-{size}"
    t_build = time.perf_counter()
    retriever = HybridRetriever(specs, settings=settings, encoder=encoder, content_key=content_key,
                                cache=EmbeddingCache(encoder.cache_key, LocalFolderStore(cache_dir)))
    build = time.perf_counter() - t_build
    t_first = time.perf_counter()
    first = retriever.search("please delete the invoice in billing", 10)
    first_search = time.perf_counter() - t_first
    to_first_result = time.time() - spawned_at
    result: dict[str, Any] = {
        "phase": phase, "size": size, "import_s": imported, "read_catalog_s": read, "build_s": build,
        "first_search_s": first_search, "start_to_first_result_s": to_first_result,
        "embedded": retriever.embedding.embedded, "loaded_from_disk": retriever.loaded_from_disk,
        "first_hit": first[0].name if first else None,
    }
    if phase == "warm":
        singles, multis = synthetic_queries(n_queries, max(1, n_queries // 4))
        for q in singles[:5]:
            retriever.search(q, 10)  # warm caches and branch predictors, not results (the LRU is off)
        for label, queries in (("single", singles), ("multi", multis)):
            latencies = []
            for q in queries:
                t = time.perf_counter()
                retriever.search(q, 10)
                latencies.append((time.perf_counter() - t) * 1000)
            result[f"{label}_p50_ms"] = statistics.median(latencies)
            result[f"{label}_p95_ms"] = percentile(latencies, 0.95)
        embed = []
        for q in singles[:100]:
            t = time.perf_counter()
            encoder.encode([q])
            embed.append((time.perf_counter() - t) * 1000)
        result["embed_p50_ms"] = statistics.median(embed)
    process = psutil.Process()
    result["rss_mb"] = process.memory_info().rss / 2**20
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_worker(phase: str, size: int, n_queries: int) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, __file__, "_worker", phase, str(size), str(n_queries), repr(time.time())],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{phase} worker for {size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=200, help="single-task queries (multi-part: a quarter)")
    parser.add_argument("--repeats", type=int, default=3, help="warm-start runs per size (medians printed)")
    parser.add_argument("--keep-cache", action="store_true", help="skip the cold build when a cache exists")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        (WORK / f"tools-{size}.jsonl").write_text(
            "\n".join(json.dumps(t, separators=(",", ":")) for t in synthetic_tools(size)) + "\n")
        cache_dir = WORK / f"cache-{size}"
        cold: dict[str, Any] | None = None
        if not (args.keep_cache and cache_dir.exists()):
            shutil.rmtree(cache_dir, ignore_errors=True)
            print(f"[{size}] cold build ...", file=sys.stderr, flush=True)
            cold = run_worker("cold", size, args.queries)
            print(f"[{size}] cold: {json.dumps(cold)}", file=sys.stderr, flush=True)
        prime = run_worker("prime", size, args.queries)  # saves the derived index if the cold run did not
        print(f"[{size}] prime: {json.dumps(prime)}", file=sys.stderr, flush=True)
        warms = []
        for i in range(args.repeats):
            warms.append(run_worker("warm", size, args.queries))
            print(f"[{size}] warm {i + 1}: {json.dumps(warms[-1])}", file=sys.stderr, flush=True)
        med = {k: statistics.median(w[k] for w in warms) for k in warms[0] if isinstance(warms[0][k], float)}
        med["load"] = os.getloadavg()[0]
        rows.append((size, cold, med))
    cpu = os.cpu_count()
    load = os.getloadavg()[0]
    print(f"\nRetrieval speed ({cpu} cores, load average {load:.1f} at the end; warm figures are medians of "
          f"{args.repeats} fresh processes; latency percentiles over {args.queries} single-task and "
          f"{max(1, args.queries // 4)} multi-part requests, result LRU off)")
    print("| tools | cold build s | cold peak RSS MB | warm: start->1st result s | import s | read catalog s "
          "| index load s | query p50 / p95 ms | multi-part p50 / p95 ms | embed p50 ms | RSS MB | peak RSS MB "
          "| load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, cold, med in rows:
        cold_build = f"{cold['build_s']:.1f}" if cold else "(cached)"
        cold_rss = f"{cold['peak_rss_mb']:.0f}" if cold else "-"
        print(f"| {size:,} | {cold_build} | {cold_rss} | {med['start_to_first_result_s']:.2f} | "
              f"{med['import_s']:.2f} | {med['read_catalog_s']:.2f} | {med['build_s']:.3f} | "
              f"{med['single_p50_ms']:.1f} / {med['single_p95_ms']:.1f} | {med['multi_p50_ms']:.1f} / "
              f"{med['multi_p95_ms']:.1f} | {med['embed_p50_ms']:.1f} | {med['rss_mb']:.0f} | "
              f"{med['peak_rss_mb']:.0f} | {med['load']:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "_worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()

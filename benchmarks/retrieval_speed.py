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
  (current and peak). The catalog is read as the runtime reads ``WEFT_CATALOG_FILES``: ``Catalog.load_file`` with
  the validated-catalog cache beside the index (the first start validates every spec, about a millisecond each; later
  starts read the cache and build a spec only when it is used), the catalog version as the index's content key.

    .venv/bin/python benchmarks/retrieval_speed.py                      # 1k, 10k, 100k (100k cold: ~15-30 min)
    .venv/bin/python benchmarks/retrieval_speed.py --sizes 1000 10000   # quicker

The synthetic tools look like API operations (``<service>_<verb><Noun>`` with a two-sentence description and 2-5
parameters, about 60 tokens of text each); queries are built from the same vocabulary.

Tool vectors (``--vectors``):

* ``real`` (default): every tool text embedded by the model (100k tools: ~27 min cold on 2 cores).
* ``composed`` (SPEED ONLY): the embedding cache is filled, in about a minute, with deterministic unit vectors
  composed from real embeddings of the tools' parts: ``normalise(0.85 e("<verb> a <noun> <qualifier>") +
  0.45 e("<service> service") + 0.15 g)``, with ``g`` a random unit vector seeded by the tool's position. Tools
  sharing an operation sit close together as real ones do, so the vector pre-filter's candidate counts are of a
  realistic order, but the rankings are not the model's: figures from this mode measure speed only, never quality.
  Its caches live in ``cache-<size>-composed`` folders, apart from real ones, and are kept between runs.

A warm run also reports each query's CPU time (``time.thread_time``: what the search itself costs, apart from
waiting for a core on a loaded machine), a breakdown of one query's stages (query embedding, BM25, vector scoring,
fusion and top-k), for catalogs large enough for the int8 vector pre-filter (``shared.search.vectors``) the query p50
with it and with the dense float32 product alternating query by query (before/after under the same load), and how
often the pre-filter returns exactly the top 10 of exact dense scoring (``agree@10``).
"""

from __future__ import annotations

import argparse
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


def synthetic_parts(n: int, seed: int = 7) -> list[tuple[str, str, str, str]]:
    """``(service, verb, noun, qualifier)`` of each of :func:`synthetic_tools` (deterministic)."""
    combos = [(s, v, o, q) for s in SERVICES for v in VERBS for o in NOUNS for q in QUALIFIERS]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} synthetic tools")
    return random.Random(seed).sample(combos, n)


def synthetic_tools(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` distinct API-like tool specs (deterministic)."""
    rng = random.Random(seed)
    parts = synthetic_parts(n, seed)
    rng.sample(range(len(SERVICES) * len(VERBS) * len(NOUNS) * len(QUALIFIERS)), n)  # same stream as before
    tools = []
    for service, verb, noun, qualifier in parts:
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


def cache_dir_for(size: int, vectors: str) -> Path:
    return WORK / (f"cache-{size}-composed" if vectors == "composed" else f"cache-{size}")


def catalog_file(size: int) -> Path:
    return WORK / f"tools-{size}.json"


def fill_composed(size: int) -> dict[str, Any]:
    """Fill the embedding cache of ``size`` synthetic tools with composed vectors (SPEED ONLY, see the docstring)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from shared.search.document import ToolDocument
    from shared.search.embedding import bulk_encoder, shared_encoder
    from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore, text_key

    started = time.perf_counter()
    encoder = shared_encoder(256)
    bulk = bulk_encoder(256) or encoder
    parts = synthetic_parts(size)
    operations = sorted({f"{verb} a {noun} {qualifier.lower()}".strip() for _, verb, noun, qualifier in parts})
    services = sorted({service for service, *_ in parts})
    op_vectors = dict(zip(operations, bulk.encode(operations), strict=True))
    service_vectors = dict(zip(services, bulk.encode([f"{s} service" for s in services]), strict=True))
    rng = np.random.default_rng(1234)
    noise = rng.standard_normal((size, encoder.dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    matrix = np.stack([
        0.85 * op_vectors[f"{verb} a {noun} {qualifier.lower()}".strip()] + 0.45 * service_vectors[service]
        for service, verb, noun, qualifier in parts]).astype(np.float32) + np.float32(0.15) * noise
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    keys = [text_key(ToolDocument.from_spec(t).text) for t in synthetic_tools(size)]
    EmbeddingCache(encoder.cache_key, LocalFolderStore(cache_dir_for(size, "composed"))).put(keys, matrix)
    return {"phase": "fill", "size": size, "fill_s": time.perf_counter() - started,
            "operations_embedded": len(operations) + len(services)}


def stage_profile(retriever: Any, queries: list[str]) -> dict[str, float]:
    """Median ms of each stage of a single-task search, timed one by one as ``HybridRetriever._search`` runs them."""
    import numpy as np

    from shared.search.bm25 import tokenize
    from shared.search.retrieval import _top

    bm25, embedding, settings = retriever.bm25, retriever.embedding, retriever.settings
    stages: dict[str, list[float]] = {"embed_query": [], "bm25": [], "vectors_exact": [], "vectors_prefilter": [],
                                      "fuse_top10": []}
    for q in queries:
        t0 = time.perf_counter()
        vec = embedding.embed_queries([q])
        t1 = time.perf_counter()
        b = bm25._index.scores(tokenize(q))[1][None]
        t2 = time.perf_counter()
        embedding._vectors.cosines(vec)
        t3 = time.perf_counter()
        e = embedding._vectors.fusion_scores(vec, b, floor=settings.cosine_floor,
                                             span=settings.cosine_ceiling - settings.cosine_floor,
                                             bm25_weight=settings.bm25_weight,
                                             embedding_weight=settings.embedding_weight, k=10)
        t4 = time.perf_counter()
        _top(np.float32(settings.bm25_weight) * b[0] + np.float32(settings.embedding_weight) * e[0], 10, None,
             bm25._ranks)
        t5 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[name].append(value * 1000)
    return {f"stage_{name}_ms": statistics.median(values) for name, values in stages.items()}


def before_after(retriever: Any, queries: list[str]) -> dict[str, float]:
    """Single-task query p50 with the pre-filter and with dense float32 scoring (the transposed product every
    catalog used before the pre-filter), alternating query by query so that both meet the same machine load."""
    from shared.search.vectors import VectorIndex

    vectors = retriever.embedding._vectors
    if not vectors.prefiltered:
        return {}
    dense = VectorIndex(vectors.vectors, prefilter_min=2**62)
    times: dict[str, list[float]] = {"ab_prefilter": [], "ab_dense": []}
    try:
        for q in queries:
            for name, index in (("ab_prefilter", vectors), ("ab_dense", dense)):
                retriever.embedding._vectors = index
                t = time.perf_counter()
                retriever.search(q, 10)
                times[name].append((time.perf_counter() - t) * 1000)
    finally:
        retriever.embedding._vectors = vectors
    return {f"{name}_p50_ms": statistics.median(values) for name, values in times.items()}


def agreement(retriever: Any, queries: list[str]) -> dict[str, float]:
    """Share of queries whose top 10 (names, in order) is the same with the pre-filter as with exact dense scoring
    (float64 rounded to float32, as the pre-filter rescores its candidates; see shared.search.vectors)."""
    from shared.search.vectors import VectorIndex

    vectors = retriever.embedding._vectors
    if not vectors.prefiltered:
        return {}
    fast = [[h.name for h in retriever.search(q, 10)] for q in queries]
    retriever.embedding._vectors = VectorIndex(vectors.vectors, prefilter_min=2**62, float64=True)
    try:
        exact = [[h.name for h in retriever.search(q, 10)] for q in queries]
    finally:
        retriever.embedding._vectors = vectors
    return {"agree_at_10": sum(f == e for f, e in zip(fast, exact, strict=True)) / len(queries),
            "agree_queries": float(len(queries))}


def worker(phase: str, size: int, n_queries: int, spawned_at: float, vectors: str = "real") -> None:
    if phase == "fill":
        print(json.dumps(fill_composed(size)))
        return
    import psutil

    t_import = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from shared.catalog import Catalog
    from shared.search.embedding import shared_encoder
    from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
    from shared.search.retrieval import HybridRetriever, RetrievalSettings

    imported = time.perf_counter() - t_import
    settings = RetrievalSettings(lru_size=0)
    encoder = shared_encoder(settings.max_tokens)
    cache_dir = cache_dir_for(size, vectors)
    t_read = time.perf_counter()
    catalog = Catalog()
    catalog.load_file(catalog_file(size), cache_dir=cache_dir)
    content_key = catalog.version
    specs = catalog.search_entries()
    read = time.perf_counter() - t_read
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
            latencies, cpu = [], []
            for q in queries:
                t, c = time.perf_counter(), time.thread_time()
                retriever.search(q, 10)
                latencies.append((time.perf_counter() - t) * 1000)
                cpu.append((time.thread_time() - c) * 1000)
            result[f"{label}_p50_ms"] = statistics.median(latencies)
            result[f"{label}_p95_ms"] = percentile(latencies, 0.95)
            result[f"{label}_cpu_p50_ms"] = statistics.median(cpu)
        result.update(before_after(retriever, singles))
        embed = []
        for q in singles[:100]:
            t = time.perf_counter()
            encoder.encode([q])
            embed.append((time.perf_counter() - t) * 1000)
        result["embed_p50_ms"] = statistics.median(embed)
        result.update(stage_profile(retriever, singles[:100]))
        result.update(agreement(retriever, singles + multis))
    process = psutil.Process()
    result["rss_mb"] = process.memory_info().rss / 2**20
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_worker(phase: str, size: int, n_queries: int, vectors: str) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, __file__, "_worker", phase, str(size), str(n_queries), repr(time.time()),
                          vectors],
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
    parser.add_argument("--vectors", choices=("real", "composed"), default="real",
                        help="composed: fill the cache with composed vectors in ~1 min (SPEED ONLY, see above)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        catalog_file(size).write_text(json.dumps({"tools": synthetic_tools(size)}, separators=(",", ":")))
        cache_dir = cache_dir_for(size, args.vectors)
        cold: dict[str, Any] | None = None
        if not (args.keep_cache and cache_dir.exists()):
            shutil.rmtree(cache_dir, ignore_errors=True)
            if args.vectors == "composed":
                print(f"[{size}] filling the cache with composed vectors ...", file=sys.stderr, flush=True)
                print(f"[{size}] {json.dumps(run_worker('fill', size, args.queries, args.vectors))}", file=sys.stderr)
            print(f"[{size}] cold build ...", file=sys.stderr, flush=True)
            cold = run_worker("cold", size, args.queries, args.vectors)
            print(f"[{size}] cold: {json.dumps(cold)}", file=sys.stderr, flush=True)
        prime = run_worker("prime", size, args.queries, args.vectors)  # saves the derived index if the cold run did not
        print(f"[{size}] prime: {json.dumps(prime)}", file=sys.stderr, flush=True)
        warms = []
        for i in range(args.repeats):
            warms.append(run_worker("warm", size, args.queries, args.vectors))
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
          "| index load s | query p50 / p95 ms | query CPU p50 ms | multi-part p50 / p95 ms | embed p50 ms | RSS MB "
          "| peak RSS MB | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, cold, med in rows:
        cold_build = f"{cold['build_s']:.1f}" if cold else "(cached)"
        cold_rss = f"{cold['peak_rss_mb']:.0f}" if cold else "-"
        print(f"| {size:,} | {cold_build} | {cold_rss} | {med['start_to_first_result_s']:.2f} | "
              f"{med['import_s']:.2f} | {med['read_catalog_s']:.2f} | {med['build_s']:.3f} | "
              f"{med['single_p50_ms']:.1f} / {med['single_p95_ms']:.1f} | {med['single_cpu_p50_ms']:.1f} | "
              f"{med['multi_p50_ms']:.1f} / "
              f"{med['multi_p95_ms']:.1f} | {med['embed_p50_ms']:.1f} | {med['rss_mb']:.0f} | "
              f"{med['peak_rss_mb']:.0f} | {med['load']:.1f} |")
    print(f"\nTool vectors: {args.vectors}" + (" (composed from real embeddings of the tools' parts: SPEED ONLY, "
                                                "see the docstring; 'cold build' then only reads the filled cache)"
                                                if args.vectors == "composed" else " (every tool text embedded)"))
    print("\nOne single-task query, stage by stage (medians of 100 queries, ms; vector scoring is either the exact "
          "float32 product or the int8 pre-filter with exact rescoring, whichever the catalog size selects; "
          "agree@10: share of all benchmark queries whose top 10 is the same with the pre-filter as with exact "
          "dense scoring)")
    print("| tools | embed query | BM25 | vectors exact float32 | vectors pre-filtered | fuse + top 10 | agree@10 "
          "| query p50 A/B: pre-filter / dense float32 |")
    print("|---|---|---|---|---|---|---|---|")
    for size, _, med in rows:
        agree = f"{med['agree_at_10']:.3f} of {med['agree_queries']:.0f}" if "agree_at_10" in med else "(exact path)"
        ab = f"{med['ab_prefilter_p50_ms']:.1f} / {med['ab_dense_p50_ms']:.1f}" if "ab_dense_p50_ms" in med else "-"
        print(f"| {size:,} | {med['stage_embed_query_ms']:.2f} | {med['stage_bm25_ms']:.2f} | "
              f"{med['stage_vectors_exact_ms']:.2f} | {med['stage_vectors_prefilter_ms']:.2f} | "
              f"{med['stage_fuse_top10_ms']:.2f} | {agree} | {ab} |")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "_worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        main()

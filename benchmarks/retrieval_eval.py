"""Tool-search quality on the labelled AWS set: BM25 vs embeddings vs hybrid, plus the ablations behind the defaults.

Data: ``benchmarks/data/retrieval/aws_{tools,queries}.jsonl`` (built by ``build_aws_set.py`` there; see its
docstring for how the queries were made). Metrics, averaged over queries:

* Recall@k: share of a query's gold tools in the top k;  Complete@k: 1 if all of them are in the top k.
* MRR: 1 / rank of the first gold tool;  NDCG@10: binary-relevance NDCG over the top 10.

The main table calls the real ``Bm25Retriever.search``, ``EmbeddingRetriever.search`` and
``HybridRetriever.search`` (Weft) with default settings, beside three baselines over the same two retrievers (see
:func:`baselines`): reciprocal-rank fusion and weighted-score fusion of the whole request, and Weft's ranking
before issue 16. The ablation tables recompute fusion variants from the same score arrays on the dev split (30% of
queries), which is what the defaults were chosen on (ablation D: the order of a multi-part request's hits,
:mod:`shared.search.fusion`; E: ranking a split request whole when a clause finds nothing); the main table is reported
on the dev split (what changes are tuned on), on the test split (70%) and on everything.

``--set awscli`` reports the main table on ``awscli_queries.jsonl`` instead: a held-out set over the same tools whose
queries come from the AWS CLI's examples (``build_awscli_set.py``), for one look at a change designed on the AWS set.
``--set azcli`` does the same over its own catalog, ``azcli_tools.jsonl`` (4,230 Azure CLI commands), with queries
from the Azure CLI's example names (``build_azcli_set.py``): another domain and other authors, held out for a later,
single look.

    .venv/bin/python benchmarks/retrieval_eval.py                         # main table + ablations (~3 min on 2 cores)
    .venv/bin/python benchmarks/retrieval_eval.py --quick                 # main table only
    .venv/bin/python benchmarks/retrieval_eval.py --quick --set awscli    # main table on the held-out set
    .venv/bin/python benchmarks/retrieval_eval.py --quick --set azcli     # main table on the Azure held-out set
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.search.clauses import split_clauses
from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
from shared.search.retrieval import HybridRetriever, RetrievalSettings, _top, name_ranks

DATA = Path(__file__).resolve().parent / "data" / "retrieval"
KS = (1, 5, 10)
QUERY_SETS = {
    "aws": ("aws_tools.jsonl", "aws_queries.jsonl", ("dev", "test", "all")),
    "awscli": ("aws_tools.jsonl", "awscli_queries.jsonl", ("heldout",)),
    "azcli": ("azcli_tools.jsonl", "azcli_queries.jsonl", ("heldout",)),
}
"""Tool file, query file and the splits reported, per ``--set``."""


def load(name: str) -> list[dict]:
    with (DATA / name).open() as f:
        return [json.loads(line) for line in f]


def metrics(ranked: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    gold_set = set(gold)
    out = {f"R@{k}": len(gold_set & set(ranked[:k])) / len(gold_set) for k in KS}
    out["C@5"] = float(gold_set <= set(ranked[:5]))
    out["C@10"] = float(gold_set <= set(ranked[:10]))
    first = next((i for i, name in enumerate(ranked) if name in gold_set), None)
    out["MRR"] = 0.0 if first is None else 1.0 / (first + 1)
    dcg = sum(1.0 / np.log2(i + 2) for i, name in enumerate(ranked[:10]) if name in gold_set)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(gold_set), 10)))
    out["NDCG@10"] = dcg / ideal
    return out


COLUMNS = ("R@1", "R@5", "R@10", "MRR", "NDCG@10", "C@5", "C@10")


def average(rows: list[dict[str, float]]) -> dict[str, float]:
    return {c: float(np.mean([r[c] for r in rows])) if rows else float("nan") for c in COLUMNS}


def print_table(title: str, results: dict[str, dict[str, float]], counts: str = "") -> None:
    print(f"\n{title} {counts}".rstrip())
    print(f"| {'method':<34} | " + " | ".join(f"{c:>7}" for c in COLUMNS) + " |")
    print(f"|{'-' * 36}|" + "|".join("-" * 9 for _ in COLUMNS) + "|")
    for name, row in results.items():
        print(f"| {name:<34} | " + " | ".join(f"{row[c]:7.3f}" for c in COLUMNS) + " |")


SUBSETS: dict[str, Callable[[dict], bool]] = {
    "single (title+description)": lambda q: q["kind"] != "multi",
    "single: title": lambda q: q["kind"] == "title",
    "single: description": lambda q: q["kind"] == "description",
    "multi-part (2-3 tasks)": lambda q: q["kind"] == "multi",
}


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of every document by descending score (ties in index order)."""
    ranks = np.empty(scores.size)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(scores.size)
    return ranks


def baselines(retriever: HybridRetriever) -> dict[str, Callable[[str], list[str]]]:
    """Whole-query fusions of the same two retrievers (no clause handling), and Weft's ranking before issue 16.

    * RRF: ``sum 1 / (60 + rank)`` over the BM25 and cosine rankings (Cormack et al., 2009).
    * weighted: ``w * bm25 + (1 - w) * calibrated cosine`` with the default weight and anchors.
    * Weft before: the clause rankings interleaved from rank 1 (what ``HybridRetriever`` did before issue 16).
    """
    settings = retriever.settings
    names = retriever.names
    ranks = name_ranks(names)
    w = np.float32(settings.bm25_weight)

    def fused(text: str) -> np.ndarray:
        return w * retriever.bm25.scores(text) + (1 - w) * retriever.embedding.scores(text)

    def rrf(query: str) -> list[str]:
        cosine = retriever.embedding.cosines_for_vectors(retriever.embedding.embed_queries([query]))[0]
        score = 1.0 / (60.0 + _ranks(retriever.bm25.scores(query))) + 1.0 / (60.0 + _ranks(cosine))
        return [names[i] for i in _top(score, 10, None, ranks)]

    def weighted(query: str) -> list[str]:
        return [names[i] for i in _top(fused(query), 10, None, ranks)]

    def weft_before(query: str) -> list[str]:
        texts = split_clauses(query) or [query]
        rankings = [_top(fused(t), 10, None, ranks) for t in texts]
        order: list[int] = []
        for rank in range(10):
            for ranking in rankings:
                if rank < len(ranking) and ranking[rank] not in order:
                    order.append(ranking[rank])
        return [names[i] for i in order[:10]]

    return {"RRF (k=60), whole query": rrf, "weighted fusion, whole query": weighted,
            "Weft before (clauses interleaved)": weft_before}


def main_table(retriever: HybridRetriever, queries: list[dict]) -> dict[str, list[dict]]:
    """Rank with the real retrievers and the fusion baselines; returns per-method per-query metric rows."""
    methods: dict[str, Callable[[str], list[str]]] = {
        "BM25 (Bm25Retriever)": lambda q: [h.name for h in retriever.bm25.search(q, 10)],
        "embedding (EmbeddingRetriever)": lambda q: [h.name for h in retriever.embedding.search(q, 10)],
        **baselines(retriever),
        "Weft (HybridRetriever)": lambda q: [h.name for h in retriever.search(q, 10)],
    }
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    for method, search in methods.items():
        start = time.perf_counter()
        for q in queries:
            rows[method].append(metrics(search(q["query"]), q["gold"]))
        print(f"  {method}: {len(queries)} queries in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return rows


def report(rows: dict[str, list[dict]], queries: list[dict], split: str) -> None:
    picked = [i for i, q in enumerate(queries) if split == "all" or q["split"] == split]
    for subset, keep in SUBSETS.items():
        idx = [i for i in picked if keep(queries[i])]
        if not idx:  # azcli has no description queries
            continue
        print_table(f"[{split}] {subset}", {m: average([r[i] for i in idx]) for m, r in rows.items()},
                    f"(n={len(idx)})")


class ScoreArrays:
    """Per-query calibrated BM25 fractions and raw cosines for the full query and each clause (for ablations)."""

    def __init__(self, retriever: HybridRetriever, queries: list[dict]) -> None:
        self.names = np.array([d.name for d in retriever.documents])
        self.texts: list[list[str]] = []
        self.bm25: list[np.ndarray] = []
        self.cosine: list[np.ndarray] = []
        for q in queries:
            clauses = split_clauses(q["query"])
            texts = [q["query"], *clauses] if len(clauses) > 1 else [q["query"]]
            self.texts.append(texts)
            self.bm25.append(np.stack([retriever.bm25.scores(t) for t in texts]))
            self.cosine.append(retriever.embedding.cosines_for_vectors(retriever.embedding.embed_queries(texts)))


def rank_variant(arrays: ScoreArrays, i: int, w: float, floor: float, ceiling: float, mode: str) -> list[str]:
    bm25, cosine = arrays.bm25[i], arrays.cosine[i]
    emb = np.clip((cosine - floor) / (ceiling - floor), 0, 1)
    if mode == "rrf":
        fused = np.zeros_like(bm25)
        for row in range(bm25.shape[0]):
            for part in (bm25[row], cosine[row]):
                ranks = np.empty(part.size)
                ranks[np.argsort(-part, kind="stable")] = np.arange(part.size)
                fused[row] += 1.0 / (60.0 + ranks)
    else:
        fused = w * bm25 + (1 - w) * emb
    if mode in ("full", "rrf") or fused.shape[0] == 1:
        return list(arrays.names[np.argsort(-fused[0], kind="stable")[:10]])
    if mode == "max":
        return list(arrays.names[np.argsort(-fused.max(axis=0), kind="stable")[:10]])
    rows = fused[1:] if mode == "rr" else fused
    rankings = [np.argsort(-r, kind="stable")[:10] for r in rows]
    order: list[int] = []
    for rank in range(10):
        for ranking in rankings:
            if ranking[rank] not in order:
                order.append(int(ranking[rank]))
    return list(arrays.names[order[:10]])


def ablations(arrays: ScoreArrays, queries: list[dict], settings: RetrievalSettings) -> None:
    dev = [i for i, q in enumerate(queries) if q["split"] == "dev"]
    single = [i for i in dev if queries[i]["kind"] != "multi"]
    multi = [i for i in dev if queries[i]["kind"] == "multi"]
    floor, ceiling = settings.cosine_floor, settings.cosine_ceiling

    def score(idx: list[int], **kw: object) -> dict[str, float]:
        return average([metrics(rank_variant(arrays, i, **kw), queries[i]["gold"]) for i in idx])  # type: ignore[arg-type]

    print("\nAblation A [dev]: BM25 weight in the weighted sum (multi-part: round-robin over clauses)")
    print(f"| {'bm25 weight':>11} | {'single MRR':>10} | {'single R@5':>10} | {'multi C@10':>10} | {'multi MRR':>9} |")
    print("|-------------|------------|------------|------------|-----------|")
    for w in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
        s = score(single, w=w, floor=floor, ceiling=ceiling, mode="rr")
        m = score(multi, w=w, floor=floor, ceiling=ceiling, mode="rr")
        print(f"| {w:11.1f} | {s['MRR']:10.3f} | {s['R@5']:10.3f} | {m['C@10']:10.3f} | {m['MRR']:9.3f} |")

    print("\nAblation B [dev]: cosine calibration anchors (weighted sum, bm25 weight from settings)")
    print(f"| {'floor':>5} | {'ceiling':>7} | {'single MRR':>10} | {'multi C@10':>10} |")
    print("|-------|---------|------------|------------|")
    for fl, ce in ((0.0, 1.0), (0.1, 0.7), (0.15, 0.75), (0.2, 0.8), (0.25, 0.75), (0.3, 0.9)):
        s = score(single, w=settings.bm25_weight, floor=fl, ceiling=ce, mode="rr")
        m = score(multi, w=settings.bm25_weight, floor=fl, ceiling=ce, mode="rr")
        print(f"| {fl:5.2f} | {ce:7.2f} | {s['MRR']:10.3f} | {m['C@10']:10.3f} |")

    results = {}
    for label, mode in (("RRF (k=60), full query only", "rrf"), ("weighted, full query only", "full"),
                        ("weighted, max over query+clauses", "max"), ("weighted, round-robin clauses", "rr"),
                        ("weighted, round-robin query+clauses", "rr+full")):
        results[label] = score(multi, w=settings.bm25_weight, floor=floor, ceiling=ceiling, mode=mode)
    print_table("Ablation C [dev] fusion and multi-part handling on multi-part requests", results,
                f"(n={len(multi)})")
    results = {label: score(single, w=settings.bm25_weight, floor=floor, ceiling=ceiling, mode=mode)
               for label, mode in (("RRF (k=60), full query only", "rrf"), ("weighted, full query only", "full"),
                                   ("weighted, round-robin clauses", "rr"))}
    print_table("Ablation C' [dev] the same on single-task requests", results, f"(n={len(single)})")


def order_variant(arrays: ScoreArrays, i: int, settings: RetrievalSettings, lead: str, rest: str) -> list[str]:
    """A split request's top 10: the clauses' rankings interleaved, then rank 1 and ranks 2.. reordered.

    ``lead``: ``first`` (first clause's best), ``whole-of-tops`` (the clause top the whole request scores highest),
    ``whole`` (the whole request's best tool), ``agree`` (the whole request's best when BM25 and the embedding
    both rank it first, else ``whole-of-tops``). ``rest``: ``interleaved``, ``whole``, ``clause`` (best clause
    score), ``whole+clause``.
    """
    w, floor, ceiling = settings.bm25_weight, settings.cosine_floor, settings.cosine_ceiling
    bm25, cosine = arrays.bm25[i], arrays.cosine[i]
    fused = w * bm25 + (1 - w) * np.clip((cosine - floor) / (ceiling - floor), 0, 1)
    if fused.shape[0] == 1:
        return list(arrays.names[np.argsort(-fused[0], kind="stable")[:10]])
    rankings = [np.argsort(-row, kind="stable")[:10].tolist() for row in fused[1:]]
    order: list[int] = []
    for rank in range(10):
        order += [r[rank] for r in rankings if r[rank] not in order]
    firsts = [r[0] for r in rankings]
    best = int(np.argmax(fused[0]))
    first = max(firsts, key=lambda j: fused[0][j])
    if lead == "first":
        first = firsts[0]
    elif lead == "whole" or (lead == "agree" and best == int(np.argmax(bm25[0])) == int(np.argmax(cosine[0]))):
        first = best
    others = [j for j in order if j != first][:9]
    key = {"interleaved": np.zeros(fused.shape[1]), "whole": fused[0], "clause": fused[1:].max(axis=0),
           "whole+clause": fused[0] + fused[1:].max(axis=0)}[rest]
    return list(arrays.names[[first, *sorted(others, key=lambda j: -key[j])]])


def order_ablation(arrays: ScoreArrays, queries: list[dict], settings: RetrievalSettings) -> None:
    dev = [i for i, q in enumerate(queries) if q["split"] == "dev"]
    print("\nAblation D [dev]: order of a split request's hits (the tools are the interleaving's; Weft: "
          "whole-of-tops, interleaved). R@1 / MRR / C@5; R@10 and C@10 do not change")
    groups = {"single": [i for i in dev if queries[i]["kind"] != "multi"],
              "single, split": [i for i in dev if queries[i]["kind"] != "multi" and len(arrays.texts[i]) > 1],
              "multi-part": [i for i in dev if queries[i]["kind"] == "multi"]}
    print(f"| {'rank 1':<14} | {'ranks 2..':<12} | " + " | ".join(f"{g + f' (n={len(ix)})':>28}"
                                                             for g, ix in groups.items()) + " |")
    print("|----------------|--------------|" + "|".join("-" * 30 for _ in groups) + "|")
    for lead in ("first", "whole-of-tops", "whole", "agree"):
        for rest in ("interleaved", "whole", "clause", "whole+clause"):
            if lead in ("first", "whole", "agree") and rest not in ("interleaved", "whole+clause"):
                continue
            cells = []
            for ix in groups.values():
                m = average([metrics(order_variant(arrays, i, settings, lead, rest), queries[i]["gold"])
                             for i in ix])
                cells.append(f"{m['R@1']:.3f} / {m['MRR']:.3f} / {m['C@5']:.3f}")
            print(f"| {lead:<14} | {rest:<12} | " + " | ".join(f"{c:>28}" for c in cells) + " |")


def fragment_ablation(arrays: ScoreArrays, queries: list[dict], settings: RetrievalSettings) -> None:
    """Ablation E: a split request ranked as one task (whole-request weighted fusion) when one of its clauses finds
    no tool scoring ``threshold`` or more (a fragment of one task cut apart?). Not adopted: see docs/search.md."""
    dev = [i for i, q in enumerate(queries) if q["split"] == "dev"]
    w, floor, ceiling = settings.bm25_weight, settings.cosine_floor, settings.cosine_ceiling
    groups = {"single": [i for i in dev if queries[i]["kind"] != "multi"],
              "multi-part": [i for i in dev if queries[i]["kind"] == "multi"]}

    def weakest(i: int) -> float:
        fused = w * arrays.bm25[i] + (1 - w) * np.clip((arrays.cosine[i] - floor) / (ceiling - floor), 0, 1)
        return float(fused[1:].max(axis=1).min()) if fused.shape[0] > 1 else 1.0

    print("\nAblation E [dev]: a split request with a clause whose best tool scores below the threshold is ranked "
          "whole (R@1 / MRR / R@10 / C@10; ranked whole: of the split ones)")
    print(f"| {'threshold':>16} | " + " | ".join(f"{g + f' (n={len(ix)})':>40}" for g, ix in groups.items())
          + " |")
    print("|------------------|" + "|".join("-" * 42 for _ in groups) + "|")
    for threshold in (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
        cells = []
        for ix in groups.values():
            whole = [i for i in ix if len(arrays.texts[i]) > 1 and weakest(i) < threshold]
            m = average([metrics(rank_variant(arrays, i, w, floor, ceiling, "full") if i in whole
                                 else order_variant(arrays, i, settings, "whole-of-tops", "interleaved"),
                                 queries[i]["gold"]) for i in ix])
            split = sum(len(arrays.texts[i]) > 1 for i in ix)
            cells.append(f"{m['R@1']:.3f} / {m['MRR']:.3f} / {m['R@10']:.3f} / {m['C@10']:.3f}, "
                         f"{len(whole):>3} of {split:>3}")
        print(f"| {threshold:16.2f} | " + " | ".join(f"{c:>40}" for c in cells) + " |")


def calibration(arrays: ScoreArrays, queries: list[dict], settings: RetrievalSettings) -> None:
    """How hybrid scores of gold tools and of random other tools fall around candidate ``min_score`` values."""
    rng = np.random.default_rng(0)
    index = {n: i for i, n in enumerate(arrays.names)}
    gold_scores, other_scores, top_other = [], [], []
    w, floor, ceiling = settings.bm25_weight, settings.cosine_floor, settings.cosine_ceiling
    for i, q in enumerate(queries):
        if q["kind"] == "multi":
            continue
        fused = w * arrays.bm25[i][0] + (1 - w) * np.clip((arrays.cosine[i][0] - floor) / (ceiling - floor), 0, 1)
        gold = [index[g] for g in q["gold"]]
        gold_scores += fused[gold].tolist()
        others = rng.choice(len(fused), 20, replace=False)
        other_scores += [fused[j] for j in others if j not in gold]
        other_services = [j for j in np.argsort(-fused)[:200]
                          if arrays.names[j].split("_", 1)[0] != q["gold"][0].split("_", 1)[0]]
        top_other.append(fused[other_services[0]] if other_services else 0.0)
    g, o, t = np.array(gold_scores), np.array(other_scores), np.array(top_other)
    print("\nCalibration [all single-task queries]: share of tools scoring >= min_score")
    print("(random = 20 random non-gold tools per query; best-other-service = the top-scoring tool of another service)")
    print(f"| {'min_score':>9} | {'gold tools':>10} | {'random tools':>12} | {'best other-service':>18} |")
    print("|-----------|------------|--------------|--------------------|")
    for threshold in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        print(f"| {threshold:9.2f} | {np.mean(g >= threshold):10.3f} | {np.mean(o >= threshold):12.3f} | "
              f"{np.mean(t >= threshold):18.3f} |")
    print(f"median score: gold {np.median(g):.3f}, random {np.median(o):.3f}, best other-service {np.median(t):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "weft" / "retrieval-eval"),
                        help="embedding cache folder (kept between runs)")
    parser.add_argument("--quick", action="store_true", help="main table only")
    parser.add_argument("--set", choices=sorted(QUERY_SETS), default="aws",
                        help="query set: aws (dev/test, ablations), awscli or azcli (held-out, main table only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tool_file, query_file, splits = QUERY_SETS[args.set]
    tools, queries = load(tool_file), load(query_file)
    settings = RetrievalSettings()
    start = time.perf_counter()
    from shared.search.embedding import shared_encoder

    encoder = shared_encoder(settings.max_tokens)
    cache = EmbeddingCache(encoder.cache_key, LocalFolderStore(args.cache_dir))
    retriever = HybridRetriever(tools, settings=settings, encoder=encoder, cache=cache)
    print(f"indexed {len(retriever)} tools in {time.perf_counter() - start:.1f} s "
          f"({retriever.embedding.embedded} embedded, rest from cache)", file=sys.stderr)
    kinds = {k: sum(q["kind"] == k for q in queries) for k in ("title", "description", "multi")}
    print(f"Tool-search set {args.set} ({tool_file}, {query_file}): {len(tools)} tools, {len(queries)} queries "
          f"{kinds}; settings: bm25_weight={settings.bm25_weight}, "
          f"cosine floor/ceiling={settings.cosine_floor}/{settings.cosine_ceiling}, "
          f"split_clauses={settings.split_clauses}")
    for split in (s for s in splits if s != "all"):
        single = [q for q in queries if q["split"] == split and q["kind"] != "multi"]
        print(f"[{split}] single-task requests the clause splitter cuts: "
              f"{sum(len(split_clauses(q['query'])) > 1 for q in single)} of {len(single)}")
    rows = main_table(retriever, queries)
    for split in splits:
        report(rows, queries, split)
    print_table("[all] every query", {m: average(r) for m, r in rows.items()}, f"(n={len(queries)})")
    if not args.quick and args.set == "aws":
        arrays = ScoreArrays(retriever, queries)
        ablations(arrays, queries, settings)
        order_ablation(arrays, queries, settings)
        fragment_ablation(arrays, queries, settings)
        calibration(arrays, queries, settings)


if __name__ == "__main__":
    main()

"""BM25 side by side: our numpy index and suffix stemmer against ``bm25s`` and Snowball (``PyStemmer``).

Four variants, all over our identifier-aware tokeniser (camelCase / snake_case split, stopwords) and our field
weights (name 3, description 1, parameter name 1, parameter text 0.5):

* ``ours``: :class:`shared.search.bm25.Bm25Index` with the suffix stemmer (the code as it was).
* ``ours+snowball``: the same index, Snowball English stems (PyStemmer).
* ``bm25s``: ``bm25s.BM25`` (method ``lucene``) over the same terms; fractional field weights become integer
  repeats (weights x 2) with ``k1`` doubled, which gives exactly our per-term saturation ``tf / (tf + k1 * norm)``;
  scores are read from its CSC arrays (``bm25s``'s own ``get_scores`` is reported separately: it uses ``np.add.at``).
* ``bm25s+snowball``: both libraries.

Quality: the labelled AWS set (``retrieval_eval.py``'s data), BM25 alone and fused with the cached MiniLM vectors
exactly as :class:`~shared.search.retrieval.HybridRetriever` fuses them. Speed, in a fresh process per variant and
size (synthetic catalogs of ``retrieval_speed.py``): index build from tool documents, query p50 (scores + top 10),
save and memory-mapped load of the index, RSS growth.

    .venv/bin/python benchmarks/retrieval_bm25.py --quality
    .venv/bin/python benchmarks/retrieval_bm25.py --speed --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.search.bm25 import _CAMEL, _WORD, STOPWORDS, Bm25Index, Bm25Params, stem  # noqa: E402
from shared.search.document import (  # noqa: E402
    NAME_WEIGHT,
    PARAMETER_NAME_WEIGHT,
    PARAMETER_TEXT_WEIGHT,
    ToolDocument,
)

VARIANTS = ("ours", "ours+snowball", "bm25s", "bm25s+snowball")


def make_tokenizer(snowball: bool) -> Callable[[str], list[str]]:
    if snowball:
        import Stemmer

        stem_word = Stemmer.Stemmer("english").stemWord
    else:
        stem_word = stem

    @lru_cache(maxsize=1 << 16)
    def word_tokens(word: str) -> tuple[str, ...]:
        return tuple(stem_word(p.lower()) for p in _CAMEL.split(word) if p and p.lower() not in STOPWORDS)

    def tokenize(text: str) -> list[str]:
        return [t for w in _WORD.findall(text) for t in word_tokens(w)]

    return tokenize


def terms(doc: ToolDocument, tokenize: Callable[[str], list[str]]) -> list[tuple[str, float]]:
    out = [(t, NAME_WEIGHT) for t in tokenize(doc.name)] + [(t, 1.0) for t in tokenize(doc.description)]
    for name, text in doc.parameters:
        out += [(t, PARAMETER_NAME_WEIGHT) for t in tokenize(name)]
        out += [(t, PARAMETER_TEXT_WEIGHT) for t in tokenize(text)]
    return out


class Bm25sAdapter:
    """bm25s behind our index's interface (build / scores / matched_terms / save / load)."""

    def __init__(self, model: Any, vocab: dict[str, int], k1: float) -> None:
        self.model, self.vocab, self.k1 = model, vocab, k1
        s = model.scores
        self.data, self.indices, self.indptr, self.n = s["data"], s["indices"], s["indptr"], s["num_docs"]

    @classmethod
    def build(cls, bags: Sequence[Sequence[tuple[str, float]]], params: Bm25Params) -> Bm25sAdapter:
        import bm25s

        vocab: dict[str, int] = {}
        ids = []
        for bag in bags:
            doc: list[int] = []
            for term, weight in bag:
                doc.extend([vocab.setdefault(term, len(vocab))] * round(weight * 2))
            ids.append(doc)
        model = bm25s.BM25(k1=2 * params.k1, b=params.b, method="lucene")
        model.index((ids, vocab), create_empty_token=False, show_progress=False)
        return cls(model, vocab, params.k1)

    def _idf(self, col: int) -> float:
        df = float(self.indptr[col + 1] - self.indptr[col])
        return math.log1p((self.n - df + 0.5) / (df + 0.5))

    def scores(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        raw = np.zeros(self.n, dtype=np.float32)
        ceiling = 0.0
        for term in dict.fromkeys(tokens):
            col = self.vocab.get(term)
            if col is None:
                continue
            ceiling += self._idf(col)
            start, end = self.indptr[col], self.indptr[col + 1]
            raw[self.indices[start:end]] += self.data[start:end]
        return raw, raw / np.float32(ceiling) if ceiling > 0 else raw.copy()

    def library_scores(self, tokens: Sequence[str]) -> np.ndarray:
        ids = [self.vocab[t] for t in dict.fromkeys(tokens) if t in self.vocab]
        return self.model.get_scores_from_ids(ids) if ids else np.zeros(self.n, np.float32)

    def matched_terms(self, doc: int, tokens: Sequence[str]) -> list[str]:
        out = []
        for t in dict.fromkeys(tokens):
            col = self.vocab.get(t)
            if col is None:
                continue
            column = self.indices[self.indptr[col] : self.indptr[col + 1]]
            pos = int(np.searchsorted(column, doc))
            if pos < column.size and column[pos] == doc:
                out.append(t)
        return out

    def save(self, folder: Path) -> None:
        self.model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, k1: float) -> Bm25sAdapter:
        import bm25s

        model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        return cls(model, model.vocab_dict, k1)


class OursAdapter:
    """Our index, with a plain ``np.save`` / memory-mapped ``np.load`` persistence for the comparison."""

    def __init__(self, index: Bm25Index) -> None:
        self.index = index

    @classmethod
    def build(cls, bags: Sequence[Sequence[tuple[str, float]]], params: Bm25Params) -> OursAdapter:
        return cls(Bm25Index.build(bags, params))

    def scores(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.index.scores(tokens)

    def matched_terms(self, doc: int, tokens: Sequence[str]) -> list[str]:
        return self.index.matched_terms(doc, tokens)

    def save(self, folder: Path) -> None:
        i = self.index
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in (("term_ptr", i._term_ptr), ("term_docs", i._term_docs), ("term_weights", i._term_weights),
                          ("doc_ptr", i._doc_ptr), ("doc_terms", i._doc_terms), ("idf", i._idf)):
            np.save(folder / f"{name}.npy", arr)
        (folder / "vocab.json").write_text(json.dumps(list(i._vocabulary)))

    @classmethod
    def load(cls, folder: Path, k1: float) -> OursAdapter:
        def arr(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode="r")

        vocab = {t: n for n, t in enumerate(json.loads((folder / "vocab.json").read_text()))}
        return cls(Bm25Index((arr("term_ptr"), arr("term_docs"), arr("term_weights")),
                             (arr("doc_ptr"), arr("doc_terms")), vocab, arr("idf"), Bm25Params(k1=k1)))


def variant(name: str) -> tuple[type, Callable[[str], list[str]]]:
    return (Bm25sAdapter if name.startswith("bm25s") else OursAdapter), make_tokenizer(name.endswith("snowball"))


# ---------------------------------------------------------------------------------------------------------------
# Quality


def quality(variants: Sequence[str]) -> None:
    from benchmarks.retrieval_eval import load, metrics
    from shared.search.clauses import split_clauses
    from shared.search.embedding import shared_encoder
    from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
    from shared.search.retrieval import EmbeddingRetriever, RetrievalSettings, _top, name_ranks

    tools, queries = load("aws_tools.jsonl"), load("aws_queries.jsonl")
    settings = RetrievalSettings()
    encoder = shared_encoder(settings.max_tokens)
    cache_dir = Path.home() / ".cache" / "weft" / "retrieval-eval"
    cache = EmbeddingCache(encoder.cache_key, LocalFolderStore(cache_dir))
    emb = EmbeddingRetriever(tools, encoder=encoder, cache=cache)
    docs, names = emb.documents, [d.name for d in emb.documents]
    ranks = name_ranks(names)
    texts_of = [split_clauses(q["query"]) or [q["query"]] for q in queries]
    emb_scores = [emb.scores_for_vectors(emb.embed_queries(t)) for t in texts_of]
    print(f"AWS set: {len(docs)} tools, {len(queries)} queries (test + dev)")
    cols = ("R@1", "R@10", "MRR", "C@10", "NDCG@10")
    print("| variant | retriever | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name in variants:
        cls, tokenize = variant(name)
        index = cls.build([terms(d, tokenize) for d in docs], Bm25Params())
        bm25_rows, hybrid_rows = [], []
        for q, texts, emb_s in zip(queries, texts_of, emb_scores, strict=True):
            whole = index.scores(tokenize(q["query"]))[1]
            bm25_rows.append(metrics([names[i] for i in _top(whole, 10, None, ranks)], q["gold"]))
            fused = np.float32(settings.bm25_weight) * np.stack([index.scores(tokenize(t))[1] for t in texts]) \
                + np.float32(settings.embedding_weight) * emb_s
            rankings = [_top(row, 10, None, ranks) for row in fused]
            order: list[int] = []
            for rank in range(10):
                for ranking in rankings:
                    if rank < len(ranking) and ranking[rank] not in order:
                        order.append(ranking[rank])
            hybrid_rows.append(metrics([names[i] for i in order[:10]], q["gold"]))
        for label, rows in (("BM25", bm25_rows), ("hybrid", hybrid_rows)):
            print(f"| {name} | {label} | " + " | ".join(f"{np.mean([r[c] for r in rows]):.4f}" for c in cols) + " |")


# ---------------------------------------------------------------------------------------------------------------
# Speed (one fresh process per variant and size)


def speed_worker(name: str, size: int) -> dict[str, Any]:
    import psutil

    from benchmarks.retrieval_speed import synthetic_queries, synthetic_tools

    specs = synthetic_tools(size)
    docs = [ToolDocument.from_spec(s) for s in specs]
    for d in docs:
        _ = d.text  # what the embedding half computes anyway; not part of the BM25 cost
    singles, multis = synthetic_queries(200, 50)
    process = psutil.Process()
    cls, tokenize = variant(name)
    rss0 = process.memory_info().rss
    t = time.perf_counter()
    index = cls.build([terms(d, tokenize) for d in docs], Bm25Params())
    build = time.perf_counter() - t
    rss_built = process.memory_info().rss
    names = [d.name for d in docs]
    from shared.search.retrieval import _top, name_ranks

    ranks = name_ranks(names)

    def query(built: Any, q: str) -> None:
        tokens = tokenize(q)
        scores = built.scores(tokens)[1]
        for i in _top(scores, 10, None, ranks):
            built.matched_terms(i, tokens)

    for q in singles[:10]:
        query(index, q)
    lat = []
    for q in singles + multis:
        t = time.perf_counter()
        query(index, q)
        lat.append((time.perf_counter() - t) * 1000)
    result: dict[str, Any] = {"variant": name, "size": size, "build_s": build, "query_p50_ms": statistics.median(lat),
                              "query_p95_ms": sorted(lat)[int(0.95 * (len(lat) - 1))],
                              "rss_growth_mb": (rss_built - rss0) / 2**20}
    if isinstance(index, Bm25sAdapter):
        lib = []
        for q in singles:
            tokens = tokenize(q)
            t = time.perf_counter()
            index.library_scores(tokens)
            lib.append((time.perf_counter() - t) * 1000)
        result["library_get_scores_p50_ms"] = statistics.median(lib)
    folder = Path(tempfile.mkdtemp(prefix="bm25-"))
    try:
        t = time.perf_counter()
        index.save(folder)
        result["save_s"] = time.perf_counter() - t
        result["saved_mb"] = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        del index
        t = time.perf_counter()
        loaded = cls.load(folder, Bm25Params().k1)
        loaded.scores(tokenize(singles[0]))
        result["load_s"] = time.perf_counter() - t
        lat = []
        for q in singles:
            tokens = tokenize(q)
            t = time.perf_counter()
            loaded.scores(tokens)
            lat.append((time.perf_counter() - t) * 1000)
        result["loaded_scores_p50_ms"] = statistics.median(lat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def speed(variants: Sequence[str], sizes: Sequence[int], repeats: int) -> None:
    rows = []
    for size in sizes:
        for name in variants:
            runs = []
            for _ in range(repeats):
                out = subprocess.run([sys.executable, __file__, "_worker", name, str(size)], capture_output=True,
                                     text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
            rows.append({k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], float) else runs[0][k]
                         for k in runs[0]})
    print(f"\nBM25 speed ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; medians of "
          f"{repeats} fresh processes; 200 single-task + 50 multi-part synthetic queries)")
    print("| tools | variant | build s | query p50 / p95 ms | RSS growth MB | save s | on disk MB | mmap load s "
          "| loaded query p50 ms | bm25s get_scores p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lib = f"{r['library_get_scores_p50_ms']:.2f}" if "library_get_scores_p50_ms" in r else "-"
        print(f"| {r['size']:,} | {r['variant']} | {r['build_s']:.2f} | {r['query_p50_ms']:.2f} / "
              f"{r['query_p95_ms']:.2f} | {r['rss_growth_mb']:.0f} | {r['save_s']:.2f} | {r['saved_mb']:.1f} | "
              f"{r['load_s']:.3f} | {r['loaded_scores_p50_ms']:.2f} | {lib} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quality:
        quality(args.variants)
    if args.speed:
        speed(args.variants, args.sizes, args.repeats)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_worker":
        print(json.dumps(speed_worker(sys.argv[2], int(sys.argv[3]))))
    else:
        main()

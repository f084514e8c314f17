"""Ordering the hits of a multi-part request: the clauses' best tools interleaved, led by the one the whole request
scores highest.

Interleaving the clauses' own rankings (rank 1 of every clause, then rank 2 of every clause, ...) is what gets every
task's tools into the top k, but it is a poor judge of rank 1: it simply leads with the first clause's best tool.
Candidates for rank 1, on the dev split of the AWS set (``benchmarks/retrieval_eval.py``):

* the whole request's own best tool (whole-request fusion): best when a single task was split by accident, but on
  real multi-part requests its best tool is often a blend of the tasks (multi-part R@1 0.305 -> 0.245);
* among the clauses' best tools, the one the whole request scores highest: multi-part R@1 0.305 -> 0.333 and MRR
  0.812 -> 0.850, single-task descriptions as good as whole-request fusion; chosen.

Ranks 2.. and so Recall@10 and Complete@10 are unchanged. Ordering ranks 2.. by the whole request's score plus
the best clause score (ablation D) lifts single-task MRR slightly (dev 0.774 -> 0.775, test 0.779 -> 0.781) but
pushes clause tops out of the first five (test multi-part Complete@5 0.680 -> 0.504); rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from shared.search.vectors import kth_largest

__all__ = ["lead_then_interleave", "name_ranks"]

def name_ranks(names: Sequence[str]) -> np.ndarray:
    """Each name's position in sorted order (the tie-break of :func:`_top`)."""
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    return ranks


def _top(scores: np.ndarray, k: int, mask: np.ndarray | None, ranks: np.ndarray) -> list[int]:
    """Indices of the ``k`` best scores, ties broken by name (``ranks``: :func:`name_ranks`), within ``mask``.

    Selection stays in numpy: a partition of the negated scores (partitioning for the k-th largest directly is
    ~30x slower when most scores tie at 0), and ties at the boundary resolved by name rank, since an unrelated
    query can leave 100k tools tied at 0.
    """
    pool = np.flatnonzero(mask) if mask is not None else None
    values = scores[pool] if pool is not None else scores
    if values.size > k:
        threshold = kth_largest(values, k)  # block maxima first: ~0.1 ms at 100k instead of ~0.5
        above = np.flatnonzero(values > threshold)
        ties = np.flatnonzero(values == threshold)
        need = k - above.size
        if ties.size > need:
            tie_ranks = ranks[pool[ties] if pool is not None else ties]
            ties = ties[np.argpartition(tie_ranks, need - 1)[:need]] if need > 0 else ties[:0]
        chosen = np.concatenate([above, ties])
    else:
        chosen = np.arange(values.size)
    ids = pool[chosen] if pool is not None else chosen
    return ids[np.lexsort((ranks[ids], -scores[ids]))].tolist()


TopK = Callable[[np.ndarray, int, "np.ndarray | None"], list[int]]
"""``top(scores, k, mask)``: indices of the ``k`` best scores, best first, within ``mask``."""

WholeScores = Callable[[np.ndarray], np.ndarray]
"""``whole(ids)``: the whole request's fused scores of those tools (only the clause tops need it, so the request's
vector is compared with a few tools, not the whole catalog)."""


def lead_then_interleave(clauses: np.ndarray, k: int, mask: np.ndarray | None, top: TopK,
                         whole: WholeScores | None = None) -> list[int]:
    """At most ``k`` document indices, best first.

    ``clauses`` has one row of fused scores per clause (one row for a single-task request: a plain ranking). The
    order is the clauses' rankings interleaved, with the clause top that ``whole`` scores highest moved to the front.
    """
    if clauses.shape[0] == 1:
        return top(clauses[0], k, mask)
    rankings = [top(row, k, mask) for row in clauses]
    firsts = [ranking[0] for ranking in rankings if ranking]
    order: list[int] = []
    if firsts:
        order.append(firsts[int(np.argmax(whole(np.array(firsts))))] if whole is not None else firsts[0])
    seen = set(order)
    for rank in range(k):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank] not in seen:
                seen.add(ranking[rank])
                order.append(ranking[rank])
    return order[:k]

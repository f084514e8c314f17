"""Ordering the hits of a multi-part request: the clauses' best tools interleaved, led by the one the whole request
scores highest.

Interleaving the clauses' own rankings (rank 1 of every clause, then rank 2 of every clause, ...) is what gets every
task's tools into the top k, but it is a poor judge of rank 1: it simply leads with the first clause's best tool.
Candidates for rank 1, on the dev split of the AWS set (``benchmarks/retrieval_eval.py``):

* the whole request's own best tool (whole-request fusion): best when a single task was split by accident, but on
  real multi-part requests its best tool is often a blend of the tasks (multi-part R@1 0.305 -> 0.245);
* among the clauses' best tools, the one the whole request scores highest: multi-part R@1 0.305 -> 0.333 and MRR
  0.812 -> 0.850, single-task descriptions as good as whole-request fusion; chosen.

Ranks 2.. and so Recall@10 and Complete@10 are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["lead_then_interleave"]

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

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


def lead_then_interleave(fused: np.ndarray, k: int, mask: np.ndarray | None, top: TopK) -> list[int]:
    """At most ``k`` document indices, best first.

    ``fused`` has one row of scores for a single-task request; for a multi-part request row 0 is the whole request
    and rows 1.. its clauses. The order is the clauses' rankings interleaved, the clause top that row 0 scores
    highest moved to the front.
    """
    if fused.shape[0] == 1:
        return top(fused[0], k, mask)
    whole = fused[0]
    rankings = [top(row, k, mask) for row in fused[1:]]
    firsts = [ranking[0] for ranking in rankings if ranking]
    order: list[int] = [max(firsts, key=lambda i: whole[i])] if firsts else []
    seen = set(order)
    for rank in range(k):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank] not in seen:
                seen.add(ranking[rank])
                order.append(ranking[rank])
    return order[:k]

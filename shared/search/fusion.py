"""Ordering the hits of a multi-part request: the whole request's best tool first, then the clauses interleaved.

Interleaving the clauses' own rankings (rank 1 of every clause, then rank 2 of every clause, ...) is what gets every
task's tools into the top k, but it is a poor judge of rank 1: the first clause's best tool is not the request's
best. On the AWS set (``benchmarks/retrieval_eval.py``) leading with the whole request's best tool keeps the
interleaving's Recall@10 and Complete@10 and brings Recall@1 and MRR up to those of whole-request fusion.
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
    and rows 1.. its clauses. The order is row 0's best document, then round-robin over the clauses' rankings.
    """
    lead = top(fused[0], k, mask)
    if fused.shape[0] == 1:
        return lead
    order: list[int] = lead[:1]
    seen = set(order)
    rankings = [top(row, k, mask) for row in fused[1:]]
    for rank in range(k):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank] not in seen:
                seen.add(ranking[rank])
                order.append(ranking[rank])
    return order[:k]

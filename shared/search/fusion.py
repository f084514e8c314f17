"""Ordering the hits of a multi-part request: which tools are shown comes from interleaving the clauses' rankings,
the order they are shown in from how well the whole request and the clauses score them.

Interleaving the clauses' own rankings (rank 1 of every clause, then rank 2 of every clause, ...) is what gets every
task's tools into the top k, but it is a poor judge of order: it leads with the first clause's best tool, and when a
single task was split by accident (a description's second sentence, "read and write capacity") its whole-request
runner-up lands behind the other fragments' noise. Measured on the dev split of the AWS set
(``benchmarks/retrieval_eval.py``, ablation D):

* rank 1 -- among the clauses' best tools, the one the whole request scores highest: multi-part R@1 0.305 -> 0.333
  and MRR 0.812 -> 0.850, single-task as good as whole-request fusion. Leading with the whole request's own best
  tool, or one both retrievers agree on, is worse on multi-part requests (R@1 0.245-0.319): its best tool is
  often a blend of the tasks.
* ranks 2..k -- the rest of the interleaved set ordered by the whole request's score plus the tool's best clause
  score (evidence from both): single-task MRR 0.774 -> 0.775 (= whole-request fusion), multi-part MRR
  0.850 -> 0.843. Plain interleaving or the best clause score alone keep multi-part MRR but not single-task; the
  whole-request score alone costs multi-part MRR 0.012.

The set of ``k`` tools is the interleaving's, so Recall@k and Complete@k are unchanged, and the hits for a larger
``k`` contain those for a smaller one (after rank 1 their order may differ).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

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
        threshold = -np.partition(-values, k - 1)[k - 1]
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
"""``whole(ids)``: the whole request's fused scores of those tools (only the interleaved candidates need it, so the
request's vector is compared with a few tools, not the whole catalog)."""


def lead_then_interleave(clauses: np.ndarray, k: int, mask: np.ndarray | None, top: TopK,
                         whole: WholeScores | None = None) -> list[int]:
    """At most ``k`` document indices, best first.

    ``clauses`` has one row of fused scores per clause (one row for a single-task request: a plain ranking). The
    tools are the first ``k`` of the clauses' rankings interleaved; the clause top that ``whole`` scores highest
    leads, and the rest follow by ``whole`` score plus best clause score (ties keep the interleaved order).
    Without ``whole``: plain interleaving.
    """
    if clauses.shape[0] == 1:
        return top(clauses[0], k, mask)
    rankings = [top(row, k, mask) for row in clauses]
    firsts = [ranking[0] for ranking in rankings if ranking]
    interleaved = _interleave(rankings, k)
    if whole is None or not firsts:
        return interleaved
    candidates = list(dict.fromkeys([*interleaved, *firsts]))
    whole_scores = dict(zip(candidates, whole(np.array(candidates)).tolist(), strict=True))
    lead = max(firsts, key=lambda i: whole_scores[i])  # max keeps the first of equals: clause order
    rest = [i for i in interleaved if i != lead][: k - 1]
    evidence = {i: whole_scores[i] + float(clauses[:, i].max()) for i in rest}
    return [lead, *sorted(rest, key=lambda i: -evidence[i])]


def _interleave(rankings: Sequence[Sequence[int]], k: int) -> list[int]:
    """Rank 1 of every ranking, then rank 2 of every ranking, ..., without repeats; at most ``k``."""
    order: list[int] = []
    seen: set[int] = set()
    for rank in range(k):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank] not in seen:
                seen.add(ranking[rank])
                order.append(ranking[rank])
    return order[:k]

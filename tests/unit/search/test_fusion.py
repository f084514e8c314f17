"""Ordering a multi-part request's hits: clause rankings interleaved, led by the clause top the request prefers."""

from __future__ import annotations

import numpy as np

from shared.search.fusion import lead_then_interleave
from shared.search.retrieval import HybridRetriever, _top, name_ranks

NAMES = [f"t{i}" for i in range(8)]


def top(scores: np.ndarray, k: int, mask: np.ndarray | None) -> list[int]:
    return _top(scores, k, mask, name_ranks(NAMES))


def test_one_row_is_a_plain_ranking() -> None:
    fused = np.array([[0.1, 0.9, 0.5, 0.0, 0.0, 0.0, 0.0, 0.3]], dtype=np.float32)
    assert lead_then_interleave(fused, 3, None, top) == [1, 2, 7]


def test_the_clause_top_the_whole_request_scores_highest_leads() -> None:
    whole = np.array([0.2, 0.1, 0.6, 0.1, 0.9, 0.0, 0.0, 0.0], dtype=np.float32)  # likes t4 most: no clause top
    clauses = np.array([
        [0.9, 0.8, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0],  # clause 1: t0, t1, t4
        [0.0, 0.0, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0],  # clause 2: t2, t3
    ], dtype=np.float32)
    asked: list[list[int]] = []

    def whole_at(ids: np.ndarray) -> np.ndarray:
        asked.append(ids.tolist())
        return whole[ids]

    assert lead_then_interleave(clauses, 5, None, top, whole_at) == [2, 0, 1, 3, 4]
    assert asked == [[0, 2]]  # only the clause tops were scored against the whole request
    assert lead_then_interleave(clauses, 5, None, top) == [0, 2, 1, 3, 4]  # without it: plain interleaving


def test_every_clauses_best_tool_comes_before_any_runner_up() -> None:
    # Ordering ranks 2.. by score (whole request + best clause) lifted single-task MRR by 0.001-0.003 but pushed
    # clause tops out of the first five: multi-part Complete@5 0.680 -> 0.504. The first round stays whole.
    whole = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.0, 0.0], dtype=np.float32)
    clauses = np.array([
        [0.9, 0.8, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0],  # t0, t1, t2: the whole request likes these
        [0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0],  # t3
        [0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0],  # t4
    ], dtype=np.float32)
    hits = lead_then_interleave(clauses, 5, None, top, lambda ids: whole[ids])
    assert hits[:3] == [0, 3, 4] and set(hits) == {0, 1, 2, 3, 4}


def test_the_mask_applies_to_every_row() -> None:
    whole = np.array([0.0, 0.0, 0.9, 0.5, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    clauses = np.array([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.8, 0.2, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    mask = np.array([False, True, False, True, False, False, False, False])
    assert lead_then_interleave(clauses, 2, mask, top, lambda ids: whole[ids]) == [3, 1]


def test_a_multi_part_request_leads_with_a_clause_tool(retriever: HybridRetriever) -> None:
    hits = retriever.search("book a flight to Rome, then convert the price to euros and email it to me", 3)
    assert {h.name for h in hits} == {"book_flight", "convertCurrency", "send_email"}
    assert all(h.clause for h in hits)


def test_top_breaks_ties_by_name_even_when_most_tools_tie_at_zero() -> None:
    names = [f"tool{i:05d}" for i in range(20000)][::-1]  # index order is the reverse of name order
    scores = np.zeros(len(names), dtype=np.float32)
    scores[[5, 17]] = (0.5, 0.9)
    ranks = name_ranks(names)
    top3 = _top(scores, 3, None, ranks)
    assert top3[:2] == [17, 5] and names[top3[2]] == "tool00000"
    mask = np.zeros(len(names), dtype=bool)
    mask[[3, 4, 17]] = True
    assert _top(scores, 2, mask, ranks) == [17, 4]

"""Ordering a multi-part request's hits: the interleaved clause rankings' tools, led by the clause top the request
prefers, the rest by whole-request plus best-clause score."""

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

    hits = lead_then_interleave(clauses, 5, None, top, whole_at)
    assert hits[0] == 2  # t4 scores highest for the whole request but is no clause's best tool
    assert asked == [[0, 2, 1, 3, 4]]  # one call, for the interleaved candidates only
    assert lead_then_interleave(clauses, 5, None, top) == [0, 2, 1, 3, 4]  # without it: plain interleaving


def test_after_the_lead_tools_follow_by_whole_request_plus_best_clause_score() -> None:
    whole = np.array([0.2, 0.1, 0.6, 0.1, 0.9, 0.0, 0.0, 0.0], dtype=np.float32)
    clauses = np.array([
        [0.9, 0.8, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0],
    ], dtype=np.float32)
    # t4 0.9 + 0.5, t0 0.2 + 0.9, t1 0.1 + 0.8, t3 0.1 + 0.6
    assert lead_then_interleave(clauses, 5, None, top, lambda ids: whole[ids]) == [2, 4, 0, 1, 3]


def test_an_accidental_split_keeps_the_whole_requests_runner_up_second() -> None:
    # One task split in two ("increase the provisioned read | write capacity"): the fragments' own rankings put
    # noise (t5, t6) before t1, which the whole request ranks second; interleaving alone showed it fourth.
    whole = np.array([0.9, 0.8, 0.1, 0.1, 0.0, 0.2, 0.2, 0.0], dtype=np.float32)
    clauses = np.array([
        [0.8, 0.5, 0.0, 0.0, 0.0, 0.6, 0.0, 0.0],  # t0, t5, t1
        [0.7, 0.4, 0.0, 0.0, 0.0, 0.0, 0.6, 0.0],  # t0, t6, t1
    ], dtype=np.float32)
    assert lead_then_interleave(clauses, 4, None, top) == [0, 5, 6, 1]
    assert lead_then_interleave(clauses, 4, None, top, lambda ids: whole[ids]) == [0, 1, 5, 6]


def test_the_tools_shown_are_the_interleavings_for_every_k() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        clauses = rng.random((3, len(NAMES))).astype(np.float32)
        whole = rng.random(len(NAMES)).astype(np.float32)
        previous: set[int] = set()
        for k in range(1, len(NAMES) + 1):
            hits = lead_then_interleave(clauses, k, None, top, lambda ids, w=whole: w[ids])
            plain = lead_then_interleave(clauses, k, None, top)
            firsts = [top(row, 1, None)[0] for row in clauses]
            assert len(hits) == len(set(hits)) == min(k, len(NAMES))
            assert hits[0] == max(firsts, key=lambda i, w=whole: w[i])
            # the same tools as plain interleaving (the lead may come from a later clause when k is small)
            assert set(hits) - {hits[0]} <= set(plain) and previous <= set(hits)
            if hits[0] in plain:
                assert set(hits) == set(plain)
            previous = set(hits)


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

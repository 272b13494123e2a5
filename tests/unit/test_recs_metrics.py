"""Ranking metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.recs.metrics import ranking_metrics


def _holdout(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    data = [(u, a) for u, items in enumerate(rows) for a in items]
    r, c = zip(*data, strict=True) if data else ((), ())
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_single_user_by_hand():
    # relevant {1, 4, 7}; recommended [1, 2, 4] at K=3: hits at ranks 1 and 3
    m = ranking_metrics(np.array([[1, 2, 4]]), _holdout([[1, 4, 7]]), k=3)
    assert m["precision_at_3"] == pytest.approx(2 / 3)
    assert m["recall_at_3"] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg_at_3"] == pytest.approx(dcg / idcg)
    assert m["map_at_3"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert m["coverage"] == pytest.approx(3 / 10)


def test_ideal_dcg_capped_by_holdout_size_and_padding_is_a_miss():
    # one relevant item found at rank 1: perfect NDCG and MAP, though K = 3 and slots are empty (-1)
    m = ranking_metrics(np.array([[5, -1, -1]]), _holdout([[5]]), k=3)
    assert m["ndcg_at_3"] == pytest.approx(1.0)
    assert m["map_at_3"] == pytest.approx(1.0)
    assert m["precision_at_3"] == pytest.approx(1 / 3)
    assert m["coverage"] == pytest.approx(1 / 10)


def test_users_without_holdout_are_not_averaged_and_misses_count_zero():
    recs = np.array([[0, 1], [2, 3], [4, 5]])
    m = ranking_metrics(recs, _holdout([[0], [], [9]]), k=2)
    assert m["users_evaluated"] == 2
    assert m["precision_at_2"] == pytest.approx((0.5 + 0) / 2)
    assert m["recall_at_2"] == pytest.approx((1 + 0) / 2)
    assert m["ndcg_at_2"] == pytest.approx((1 + 0) / 2)


def test_hit_at_lower_rank_scores_less():
    top = ranking_metrics(np.array([[3, 0]]), _holdout([[3]]), k=2)["ndcg_at_2"]
    second = ranking_metrics(np.array([[0, 3]]), _holdout([[3]]), k=2)["ndcg_at_2"]
    assert top == pytest.approx(1.0)
    assert second == pytest.approx(1 / math.log2(3))

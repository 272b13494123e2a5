"""Held-out metrics on hand-computed cases: a perfect prediction, a constant one, a known error, the share of
the oracle's gain, and the top-decile precision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.engagement.models.evaluate import compare, metrics


def test_perfect_prediction():
    votes = np.array([0, 1, 3, 10, 100, 1000, 5, 7, 2, 50])
    m = metrics(votes, np.log1p(votes))
    assert m["rmse_log1p"] == 0 and m["mae_log1p"] == 0 and m["mae_votes"] == pytest.approx(0, abs=1e-9)
    assert m["r2_log1p"] == 1 and m["spearman"] == pytest.approx(1)
    assert m["precision_top_decile"] == 1 and m["top_decile_base_rate"] == pytest.approx(0.1)


def test_constant_prediction_has_no_ranking():
    votes = np.arange(20)
    m = metrics(votes, np.full(20, 1.0))
    assert math.isnan(m["spearman"])
    assert m["precision_top_decile"] == 0  # ties keep the sample's order: the first two rows, 0 and 1 votes
    assert m["r2_log1p"] < 0


def test_known_errors():
    votes = np.array([0, 0, 0, 0])
    m = metrics(votes, np.array([1.0, -1.0, 1.0, -1.0]))
    assert m["rmse_log1p"] == 1 and m["mae_log1p"] == 1
    assert m["mae_votes"] == pytest.approx((math.e - 1) / 2)  # negative predictions back-transform to 0


def test_share_of_the_oracle_gain():
    votes = np.array([1, 2, 3, 4, 50, 60, 7, 8, 9, 10])
    y = np.log1p(votes)
    mean = np.full(10, y.mean())
    half = (y + mean) / 2
    table = compare({"mean": mean, "half": half}, votes, oracle=y)
    assert table.loc["mean", "share_of_oracle_gain"] == 0 and table.loc["oracle", "share_of_oracle_gain"] == 1
    assert table.loc["half", "rmse_log1p"] == pytest.approx(table.loc["mean", "rmse_log1p"] / 2)
    assert table.loc["half", "share_of_oracle_gain"] == pytest.approx(0.5)

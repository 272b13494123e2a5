"""The Eluvio-format generator: deterministic, a day the same in a historical file and a daily drop, every
planted bad row found by the converter with its reason, the truth keyed by the ids the converter computes,
an unbiased oracle, heavy-tailed votes, and files of a requested size."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import ingest
from pipelines.engagement import convert, schema
from pipelines.engagement.generate import (
    EngagementSpec,
    day_posts,
    expected_log1p,
    spec_for_size,
    truth_path_for,
    write_day,
    write_history,
)

SPEC = EngagementSpec(seed=11, start=date(2017, 3, 1), days=20, posts_per_day=150, n_authors=500, bad_row_rate=0.03)


def test_same_spec_same_bytes(tmp_path):
    a = write_history(SPEC, tmp_path / "a", "h.csv", SPEC.start, SPEC.end)
    b = write_history(SPEC, tmp_path / "b", "h.csv", SPEC.start, SPEC.end)
    assert (tmp_path / "a" / schema.HISTORY_DIR / "h.csv").read_bytes() == \
        (tmp_path / "b" / schema.HISTORY_DIR / "h.csv").read_bytes()
    assert a["bad"] == b["bad"] and a["rows"] == b["rows"] > a["clean"]


def test_a_day_is_the_same_in_the_history_and_in_its_drop(tmp_path):
    clean = EngagementSpec(**{**SPEC.__dict__, "bad_row_rate": 0.0})
    day = SPEC.start + timedelta(days=3)
    write_history(clean, tmp_path, "h.csv", day, day)
    write_day(clean, tmp_path, day)
    history = (tmp_path / schema.HISTORY_DIR / "h.csv").read_text(encoding="utf-8")
    drop = (tmp_path / schema.raw_day_dir(day) / "posts.csv").read_text(encoding="utf-8")
    assert history == drop and history.count("\n") > 100


@pytest.mark.parametrize(("eol", "bom"), [("\n", False), ("\r\n", True)])
def test_every_planted_bad_row_is_found_with_its_reason(tmp_path, eol, bom):
    written = write_history(SPEC, tmp_path, "h.csv", SPEC.start, SPEC.end, eol=eol, bom=bom)
    with ingest.Workspace() as ws:
        result = convert.preview(tmp_path / schema.HISTORY_DIR / "h.csv", 0.5, workspace=ws)
        assert result.reasons == written["bad"] and sum(written["bad"].values()) > 30
        assert result.rows_valid == written["clean"] and result.rows_read == written["rows"]
        staged = set()
        for path in ws.local.glob("posts-*.parquet"):
            staged |= set(pq.read_table(path, columns=["post_id"])["post_id"].to_pylist())
    truth = pq.read_table(truth_path_for(tmp_path, f"{schema.HISTORY_DIR}/h.csv"))
    assert set(truth["post_id"].to_pylist()) == staged and truth.num_rows == written["clean"]


def test_a_daily_drop_also_plants_posts_of_another_day(tmp_path):
    spec = EngagementSpec(**{**SPEC.__dict__, "bad_row_rate": 0.2, "posts_per_day": 300})
    day = spec.start + timedelta(days=5)
    written = write_day(spec, tmp_path, day)
    assert written["bad"].get("outside_day", 0) > 0
    path = tmp_path / schema.raw_day_dir(day) / "posts.csv"
    result = ingest.inspect(schema.PIPELINE, day.isoformat(), convert.local_file_validator(path, day=day),
                            max_bad_share=0.5, benign_reasons=schema.BENIGN_REASONS)
    assert result.reasons == written["bad"] and result.rows_valid == written["clean"]


def test_votes_are_heavy_tailed_and_the_oracle_is_unbiased():
    spec = EngagementSpec(seed=3, start=date(2018, 1, 1), days=30, posts_per_day=2_000, n_authors=3_000)
    days = [day_posts(spec, spec.start + timedelta(days=i)) for i in range(spec.days)]
    votes = np.concatenate([d.up_votes for d in days])
    mu = np.concatenate([d.mu for d in days])
    assert np.median(votes) < 10 and votes.max() > 300 and votes.min() >= 0
    y = np.log1p(votes)
    oracle = expected_log1p(mu, spec.noise_sd)
    assert abs(float(np.mean(y - oracle))) < 0.02  # E[log1p(votes) | post] is what the oracle predicts
    assert np.corrcoef(oracle, y)[0, 1] > 0.45  # the planted signal is there to be learned


def test_spec_for_size_lands_near_the_target(tmp_path):
    spec = spec_for_size(3_000_000, days=60, seed=5, n_authors=2_000)
    written = write_history(spec, tmp_path, "big.csv", spec.start, spec.end, truth=False)
    assert written["bytes"] == pytest.approx(3_000_000, rel=0.1)

"""The socio-demographic jobs against real PostgreSQL and a temporary data root: quarantine rows with reasons,
scoring refused until a model is promoted, one prediction row per user, identical reruns, explicit promotion."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines import db
from pipelines.errors import RunRejected
from pipelines.sociodemo import jobs

START = date(2024, 6, 1)
SPEC = {"seed": 5, "n_users": 700, "n_videos": 900, "n_authors": 90, "start": START, "days": 4,
        "bad_row_rate": 0.01, "bad_target_rate": 0.03, "chunk_users": 400}
MODELS = ["topclass", "catboost"]
PARAMS = {"catboost": {"iterations": 40, "depth": 4}}
LAST = START + timedelta(days=SPEC["days"] - 1)


def _predictions() -> list[dict]:
    return db.query("SELECT * FROM sociodemo_predictions ORDER BY user_id")


@pytest.fixture
def staged(pg_dsn, data_root):
    """A generated dataset with every day validated and the histories built as of the last day."""
    jobs.generate(**SPEC)
    for i in range(SPEC["days"]):
        jobs.validate(START + timedelta(days=i), 0.05)
    jobs.validate_targets(0.1)
    jobs.update_histories(LAST)
    return data_root


def test_quarantine_rows_land_with_reasons(staged):
    rows = db.query("SELECT partition_key, reason, count(*) AS n, bool_and(record IS NOT NULL) AS has_record "
                    "FROM quarantine WHERE pipeline = 'sociodemo' GROUP BY 1, 2")
    days = {r["partition_key"] for r in rows if r["partition_key"] != "targets"}
    assert days == {(START + timedelta(days=i)).isoformat() for i in range(SPEC["days"])}
    assert all(r["has_record"] for r in rows)
    day_reasons = {r["reason"] for r in rows if r["partition_key"] != "targets"}
    assert {"duplicate", "unknown_video"} <= day_reasons
    assert any(r["partition_key"] == "targets" for r in rows)
    first = START.isoformat()
    before = db.query("SELECT count(*) AS n FROM quarantine WHERE partition_key = %s", (first,))[0]["n"]
    jobs.validate(START, 0.05)  # revalidating replaces the day's rows, never duplicates them
    assert db.query("SELECT count(*) AS n FROM quarantine WHERE partition_key = %s", (first,))[0]["n"] == before


def test_rejected_day_still_quarantines(pg_dsn, data_root):
    jobs.generate(**{**SPEC, "days": 1, "bad_row_rate": 0.2})
    with pytest.raises(RunRejected):
        jobs.validate(START, 0.05)
    assert db.query("SELECT count(*) AS n FROM quarantine WHERE pipeline = 'sociodemo'")[0]["n"] > 0
    assert db.query("SELECT status FROM runs WHERE kind = 'ingest'")[0]["status"] == "rejected"


def test_score_needs_an_explicit_promotion_then_upserts_every_user_identically(staged):
    with pytest.raises(jobs.NoPromotedModelError, match="registry promote"):
        jobs.score(LAST)

    trained = jobs.train(LAST, MODELS, PARAMS)
    runs = db.query("SELECT model_name, model_version, status, artifact_uri FROM runs WHERE kind = 'train'")
    assert {r["model_name"] for r in runs} == set(MODELS)
    assert {r["model_version"] for r in runs} == {trained["version"]}
    assert all(r["status"] == "success" and r["artifact_uri"].endswith(r["model_name"]) for r in runs)
    oracle = db.query("SELECT DISTINCT segment FROM run_metrics JOIN runs USING (run_id) WHERE kind = 'train'")
    assert {r["segment"] for r in oracle} == {"", "oracle"}  # generated data: the oracle beside the models
    assert db.query("SELECT count(*) AS n FROM model_promotions")[0]["n"] == 0  # training promotes nothing

    promoted = jobs.promote("catboost")
    assert promoted["run_id"] == trained["runs"]["catboost"]
    scored = jobs.score(LAST)
    rows = _predictions()
    users = jobs.update_histories(LAST)["users"]
    assert scored["users"] == len(rows) == users
    assert len({r["user_id"] for r in rows}) == len(rows)
    for r in rows:
        assert len(r["age_class_proba"]) == 4
        assert abs(sum(r["age_class_proba"]) - 1) < 1e-6 and 0 <= r["sex_proba"] <= 1
        assert r["age_class"] == max(range(4), key=r["age_class_proba"].__getitem__)
        assert r["model_name"] == "catboost" and r["model_version"] == trained["version"]
        assert r["as_of"] == LAST and r["scored_at"].date() == LAST + timedelta(days=1)

    jobs.score(LAST)  # a rerun of the day: the same rows, exactly
    assert _predictions() == rows
    jobs.score(LAST, chunk_users=97)  # scored in many small chunks: still the same rows
    assert _predictions() == rows
    book = db.query("SELECT * FROM sociodemo_scoring_runs")
    assert len(book) == 1 and book[0]["users"] == len(rows) and book[0]["model_name"] == "catboost"

    jobs.promote("topclass")  # promotion picks the named model; scoring follows the latest promotion
    jobs.score(LAST)
    assert {r["model_name"] for r in _predictions()} == {"topclass"}
    assert jobs.serving_model("catboost")["run_id"] == promoted["run_id"]
    jobs.score(LAST, model_name="catboost")
    assert _predictions() == rows


def test_a_backfilled_older_day_never_replaces_newer_predictions(staged):
    jobs.train(LAST, ["topclass"], {})
    jobs.promote("topclass")
    jobs.score(LAST)
    newer = _predictions()
    earlier = LAST - timedelta(days=1)
    jobs.update_histories(earlier)
    jobs.score(earlier)  # e.g. a backfill run of the day before
    assert _predictions() == newer
    assert {r["as_of"] for r in db.query("SELECT as_of FROM sociodemo_scoring_runs")} == {earlier, LAST}


def test_scoring_refuses_a_model_of_another_feature_definition(staged, monkeypatch):
    from pipelines.errors import PipelineError
    from pipelines.sociodemo import features

    jobs.train(LAST, ["topclass"], {})
    jobs.promote("topclass")
    other = features.parse_config({"features": [{"name": "n", "agg": "count", "windows": ["all"]}]})
    monkeypatch.setattr(features, "load_config", lambda *a, **k: other)
    with pytest.raises(PipelineError, match=r"trained on feature config .* retrain"):
        jobs.score(LAST)
    assert _predictions() == []


def test_promote_refuses_an_untrained_model(pg_dsn, data_root):
    with pytest.raises(ValueError, match="no successful sociodemo training run"):
        jobs.promote("deepsets")

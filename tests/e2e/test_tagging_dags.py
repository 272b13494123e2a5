"""The tagging DAGs through Airflow (``dag.test``) against the real PostgreSQL on generated articles: a daily
run before any promotion (tagging skipped), the weekly training promoting its best model by the ``promote``
Param, then daily tagging of a new day, rerun identically."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from pipelines import db
from pipelines.tagging import jobs

pytestmark = pytest.mark.e2e

START = date(2024, 6, 3)
SPEC = {"seed": 11, "corpus_articles": 300, "start": START, "days": 2, "daily_articles": 30, "bad_rate": 0.02}
TRAIN_CONF = {"models": ["majority", "seed_rf", "tfidf_lr", "catboost"], "views": ["words", "chars"],
              "grid": {"seed_rf": {"forest__n_estimators": [50], "vectorizer__min_df": [1, 2]}},
              "cv_folds": 5, "catboost_iterations": 30, "promote": "tfidf_lr_words", "day": "2024-06-02"}
#: Promoted by name, the explicit promotion an operator makes; ``best`` is exercised by the demo part below.
#: (Loading a CatBoost tagger in the process that trained it once spun in CatBoost's deserializer: the tagger
#: now pickles CatBoost's own bytes, see ``catboost_model``, tested in the unit tests.)
PROMOTED = "tfidf_lr_words"


def _states(run) -> dict:
    states: dict = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return states


def _run_daily(dag, day: date):
    """A run whose data interval is ``day`` (02:00 to 02:00 the next day)."""
    run = dag.test(logical_date=datetime.combine(day + timedelta(days=1), time(2), tzinfo=UTC))
    return run, _states(run)


def _tags() -> list[dict]:
    return db.query("SELECT * FROM tagging_article_tags ORDER BY article_id, tag")


def test_weekly_training_then_daily_tagging(dagbag, pg_dsn, data_root):
    made = jobs.generate(**SPEC)
    daily = dagbag.dags["tagging_daily"]
    run, states = _run_daily(daily, START)  # before any promotion: validated and segmented, tagging skipped
    assert str(run.state) == "success", states
    assert states["tag"] == {"skipped"} and states["segment"] == {"success"} and states["cleanup"] == {"success"}
    assert _tags() == []
    assert run.data_interval_start.date() == START

    weekly = dagbag.dags["tagging_train_weekly"]
    run = weekly.test(logical_date=datetime.combine(START, time(4), tzinfo=UTC), run_conf=TRAIN_CONF)
    assert str(run.state) == "success", _states(run)
    trained = db.query("SELECT run_id, model_name, model_version, status FROM runs "
                       "WHERE pipeline = 'tagging' AND kind = 'train'")
    assert sorted(r["model_name"] for r in trained) == ["catboost_chars", "catboost_words", "majority",
                                                        "seed_rf_chars", "seed_rf_words", "tfidf_lr_chars",
                                                        "tfidf_lr_words"]
    assert {r["status"] for r in trained} == {"success"} and len({r["model_version"] for r in trained}) == 1
    assert trained[0]["model_version"].startswith("20240602-")
    best = PROMOTED
    promotions = db.query("SELECT model_name, promoted_by FROM model_promotions WHERE pipeline = 'tagging'")
    assert promotions == [{"model_name": best, "promoted_by": "tagging_train_weekly"}]
    assert db.query("SELECT count(*) AS n FROM runs WHERE kind = 'evaluate' AND status = 'success'")[0]["n"] == 1
    assert db.query("SELECT count(*) AS n FROM quarantine WHERE partition_key = 'corpus'")[0]["n"] == sum(
        made["planted"]["corpus"].values())

    second = START + timedelta(days=1)
    run, states = _run_daily(daily, second)
    assert str(run.state) == "success", states
    rows = _tags()
    accepted = db.query("SELECT rows_valid FROM ingest_partitions WHERE partition_key = %s", (second.isoformat(),))
    assert len({r["article_id"] for r in rows}) == accepted[0]["rows_valid"]
    assert {r["model_name"] for r in rows} == {best} and {r["as_of"] for r in rows} == {second}

    run, states = _run_daily(daily, second)  # a rerun of the day: identical rows
    assert str(run.state) == "success", states
    assert _tags() == rows
    day_rows = db.query("SELECT day, articles_written FROM tagging_days")
    assert day_rows == [{"day": second, "articles_written": accepted[0]["rows_valid"]}]


def test_unknown_conf_keys_fail_the_run(dagbag, pg_dsn, data_root):
    jobs.generate(**SPEC)
    run = dagbag.dags["tagging_daily"].test(logical_date=datetime(2024, 6, 4, 2, tzinfo=UTC),
                                            run_conf={"model": "tfidf_lr_words"})
    assert str(run.state) == "failed"
    assert _states(run)["begin"] == {"failed"}


def test_the_demo_part_runs_through_airflow(dagbag, pg_dsn, data_root, tmp_path, capsys):
    """``make demo``'s tagging part on small data: both DAGs through Airflow, then the tables it prints."""
    from pipelines.demo import DemoContext
    from pipelines.tagging import demo

    ctx = DemoContext(log_path=tmp_path / "demo.log", sizes={"tagging_articles": 240})
    ctx._dags.update(dagbag.dags)
    demo.run(ctx)
    out = capsys.readouterr().out
    for heading in ("Held-out comparison", "oracle (ceiling)", "Words or characters?", "Segmentation vs HKCanCor",
                    "Promoted (explicitly)", "A few tagged articles", "Quarantined rows by reason"):
        assert heading in out, heading
    assert db.query("SELECT count(DISTINCT as_of) AS n FROM tagging_article_tags")[0]["n"] == 2
    rows = {r["family"]: r for r in demo.views_table(jobs.report()["comparison"])}
    assert set(rows) == {"seed_rf", "tfidf_lr", "tfidf_svm", "catboost"}
    assert all({"words", "chars", "both"} <= set(r) for r in rows.values())

"""The engagement DAGs run through Airflow (``dag.test``) against real PostgreSQL on generated data: a daily run
before any promotion (converted, scoring skipped), weekly training converting the historical file in a mapped
task and promoting by Param, daily scoring, a rerun writing identical rows; a rejected historical file fails its
own mapped task and the run, while training goes on with the accepted data."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from pipelines import db
from pipelines.engagement import jobs, schema

pytestmark = pytest.mark.e2e

START, DAYS, HISTORY = date(2016, 1, 1), 94, 92  # history to 2016-04-01; daily drops for 2 and 3 April
DAY1, DAY2 = START + timedelta(days=HISTORY), START + timedelta(days=HISTORY + 1)
TRAIN_CONF = {"models": ["linear", "neural"], "linear_epochs": 1, "neural_epochs": 1, "neural_workers": 1,
              "eval_rows": 600, "valid_rows": 600, "promote": "linear", "day": DAY1.isoformat()}


def _states(run) -> dict:
    states: dict = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return states


def _daily(dag, day: date):
    """A run whose data interval is ``day`` (02:00 to 02:00 the next day)."""
    run = dag.test(logical_date=datetime.combine(day + timedelta(days=1), time(2), tzinfo=UTC))
    return run, _states(run)


def _weekly(dag, conf: dict):
    run = dag.test(logical_date=datetime.combine(DAY2, time(4), tzinfo=UTC), run_conf=conf)
    return run, _states(run)


def test_graphs(dagbag):
    daily = dagbag.dags["engagement_daily"]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in daily.tasks} == {
        "begin": ["wait_for_posts"], "wait_for_posts": ["convert"], "convert": ["score"], "score": ["cleanup"],
        "cleanup": []}
    weekly = dagbag.dags["engagement_train_weekly"]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in weekly.tasks} == {
        "begin": ["pending_files", "train"], "pending_files": ["conversions", "convert_file"],
        "convert_file": ["conversions"], "conversions": ["train", "verdict"], "train": ["promote"],
        "promote": ["verdict"], "verdict": []}
    assert weekly.params["promote"] == "" and weekly.get_task("train").pool == "ml_training"
    for dag in (daily, weekly):
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"


def test_daily_before_promotion_then_weekly_training_then_daily_scoring(dagbag, pg_dsn, data_root):
    jobs.generate(start=START, days=DAYS, history_days=HISTORY, posts_per_day=110, n_authors=500, seed=8,
                  bad_row_rate=0.01)
    daily = dagbag.dags["engagement_daily"]
    run, states = _daily(daily, DAY1)  # no model yet: converted, scoring skipped
    assert str(run.state) == "success", states
    assert states["convert"] == {"success"} and states["score"] == {"skipped"}
    assert db.query("SELECT count(*) AS n FROM engagement_predictions")[0]["n"] == 0

    weekly = dagbag.dags["engagement_train_weekly"]
    run, states = _weekly(weekly, TRAIN_CONF)
    assert str(run.state) == "success", states
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "convert_file"]
    assert [ti.rendered_map_index for ti in mapped] == ["history.csv"]
    trained = db.query("SELECT model_name, run_id FROM runs WHERE pipeline = 'engagement' AND kind = 'train'")
    assert sorted(r["model_name"] for r in trained) == ["author_mean", "linear", "mean", "neural"]
    promotions = db.query("SELECT model_name, run_id, promoted_by FROM model_promotions "
                          "WHERE pipeline = 'engagement'")
    linear = next(r["run_id"] for r in trained if r["model_name"] == "linear")
    assert promotions == [{"model_name": "linear", "run_id": linear, "promoted_by": "engagement_train_weekly"}]

    run, states = _daily(daily, DAY2)
    assert str(run.state) == "success", states
    rows = db.query("SELECT * FROM engagement_predictions ORDER BY post_id")
    posts = db.query("SELECT rows_valid FROM ingest_partitions WHERE partition_key = %s", (DAY2.isoformat(),))
    assert len(rows) == posts[0]["rows_valid"] > 50 and {r["as_of"] for r in rows} == {DAY2}
    run, states = _daily(daily, DAY2)  # a rerun of the day: identical rows
    assert str(run.state) == "success", states
    again = db.query("SELECT * FROM engagement_predictions ORDER BY post_id")
    assert [{k: v for k, v in r.items() if k != "run_id"} for r in again] == \
        [{k: v for k, v in r.items() if k != "run_id"} for r in rows]


def test_a_rejected_history_file_fails_its_task_not_the_training(dagbag, pg_dsn, data_root):
    jobs.generate(start=START, days=HISTORY, posts_per_day=110, n_authors=500, seed=8)
    broken = data_root / schema.HISTORY_DIR / "broken.csv"
    broken.write_text("time_created,title\n1,a\n")  # no up_votes, no author: the file cannot be read
    run, states = _weekly(dagbag.dags["engagement_train_weekly"],
                          {**TRAIN_CONF, "models": ["linear"], "promote": ""})
    assert str(run.state) == "failed"
    assert states["convert_file"] == {"success", "failed"}
    assert states["conversions"] == {"success"} and states["train"] == {"success"}
    assert states["verdict"] == {"failed"}  # the run fails, after training, so the rejection is not missed
    status = jobs.history_status()
    assert [a["file"] for a in status["accepted"]] == ["history.csv"]
    assert [r["file"] for r in status["rejected"]] == ["broken.csv"]
    assert db.query("SELECT count(*) AS n FROM model_promotions")[0]["n"] == 0

"""The socio-demographic DAGs run through Airflow (``dag.test``) against real PostgreSQL on generated data:
weekly training with an explicit promotion Param, then daily scoring of a new day, rerun identically."""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, time, timedelta

import pytest

from pipelines import db
from pipelines.sociodemo import jobs

pytestmark = pytest.mark.e2e

START = date(2026, 3, 2)
DAYS = 10
SPEC = {"seed": 21, "n_users": 1500, "n_videos": 1500, "n_authors": 150, "start": START, "days": DAYS,
        "bad_row_rate": 0.01, "bad_target_rate": 0.02}
TRAIN_DAY = START + timedelta(days=DAYS - 2)
SCORE_DAY = START + timedelta(days=DAYS - 1)
MODELS = ["topclass", "catboost"] + (["deepsets"] if importlib.util.find_spec("torch") else [])
TRAIN_CONF = {"models": MODELS, "catboost_iterations": 60, "catboost_depth": 4, "deepsets_max_epochs": 1,
              "promote": "catboost", "day": TRAIN_DAY.isoformat()}


def _states(run) -> dict:
    states: dict = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return states


def _run_daily(dag, day: date):
    """A manual run whose data interval is ``day`` (01:00 to 01:00 the next day)."""
    run = dag.test(logical_date=datetime.combine(day + timedelta(days=1), time(1), tzinfo=UTC))
    return run, _states(run)


def test_graphs(dagbag):
    weekly = dagbag.dags["sociodemo_train_weekly"]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in weekly.tasks} == {
        "begin": ["validate_targets"], "validate_targets": ["update_histories"], "update_histories": ["train"],
        "train": ["promote"], "promote": []}
    assert weekly.params["promote"] == ""  # nothing is promoted unless asked
    daily = dagbag.dags["sociodemo_daily"]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in daily.tasks} == {
        "begin": ["wait_for_events"], "wait_for_events": ["validate"], "validate": ["update_histories"],
        "update_histories": ["score"], "score": []}
    assert daily.max_active_runs == 1  # histories are cumulative
    for dag in (weekly, daily):
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"


def test_weekly_training_then_daily_scoring(dagbag, pg_dsn, data_root):
    jobs.generate(**SPEC)
    daily = dagbag.dags["sociodemo_daily"]
    run, states = _run_daily(daily, START)  # before any promotion: ingest and histories run, scoring is skipped
    assert str(run.state) == "success", states
    assert states["score"] == {"skipped"} and states["update_histories"] == {"success"}
    assert db.query("SELECT count(*) AS n FROM sociodemo_predictions")[0]["n"] == 0
    for i in range(1, (TRAIN_DAY - START).days + 1):  # the other days the daily DAG ingested before a model
        jobs.validate(START + timedelta(days=i), 0.05)

    weekly = dagbag.dags["sociodemo_train_weekly"]
    run = weekly.test(logical_date=datetime.combine(SCORE_DAY, time(3), tzinfo=UTC), run_conf=TRAIN_CONF)
    assert str(run.state) == "success", _states(run)
    trained = db.query("SELECT run_id, model_name, model_version, status FROM runs "
                       "WHERE pipeline = 'sociodemo' AND kind = 'train'")
    assert sorted(r["model_name"] for r in trained) == sorted(MODELS)
    assert all(r["status"] == "success" for r in trained)
    assert len({r["model_version"] for r in trained}) == 1
    assert db.query("SELECT count(*) AS n FROM run_metrics JOIN runs USING (run_id) "
                    "WHERE kind = 'train' AND segment = 'oracle'")[0]["n"] > 0
    promotions = db.query("SELECT model_name, run_id, promoted_by FROM model_promotions WHERE pipeline = 'sociodemo'")
    catboost_run = next(r["run_id"] for r in trained if r["model_name"] == "catboost")
    assert promotions == [{"model_name": "catboost", "run_id": catboost_run, "promoted_by": "sociodemo_train_weekly"}]
    assert db.query("SELECT count(*) AS n FROM quarantine WHERE partition_key = 'targets'")[0]["n"] > 0

    run, states = _run_daily(daily, SCORE_DAY)
    assert str(run.state) == "success", states
    assert run.data_interval_start.date() == SCORE_DAY
    rows = db.query("SELECT * FROM sociodemo_predictions ORDER BY user_id")
    users = db.query("SELECT summary FROM runs WHERE kind = 'transform' ORDER BY started_at DESC LIMIT 1"
                     )[0]["summary"]["schema"]["rows"]
    assert len(rows) == users > 1000
    assert {r["model_name"] for r in rows} == {"catboost"} and {r["as_of"] for r in rows} == {SCORE_DAY}
    assert all(abs(sum(r["age_class_proba"]) - 1) < 1e-6 for r in rows)
    assert db.query("SELECT count(*) AS n FROM quarantine WHERE partition_key = %s",
                    (SCORE_DAY.isoformat(),))[0]["n"] > 0

    run, states = _run_daily(daily, SCORE_DAY)  # a rerun of the day: identical rows
    assert str(run.state) == "success", states
    assert db.query("SELECT * FROM sociodemo_predictions ORDER BY user_id") == rows

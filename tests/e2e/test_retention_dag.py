"""The retention DAG run through Airflow (``dag.test``, the task code the scheduler runs) over several days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from pipelines import db
from pipelines.retention.generate import RetentionDataSpec, write_days
from tests.retention_truth import read_drops

pytestmark = pytest.mark.e2e

SPEC = RetentionDataSpec(start=date(2017, 3, 28), days=10, installs_per_day=40, existing_users=200, seed=9,
                         bad_row_rate=0.005)


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["retention_daily"]


def _run(dag, day: date):
    """A run whose data interval is ``day``: manual runs cover the last whole day before their logical date."""
    logical = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    run = dag.test(logical_date=logical)
    return run, {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_daily_runs_load_every_day_and_match_the_truth(dag, pg_dsn, data_root):
    write_days(SPEC, data_root)
    for day in SPEC.dates():
        run, states = _run(dag, day)
        assert str(run.state) == "success", states
        assert run.data_interval_start.date() == day
    truth = read_drops(data_root, SPEC.dates())
    assert db.query("SELECT count(*) AS n FROM piwik_track")[0]["n"] == truth.events
    loads = db.query("SELECT day, status FROM retention_day_loads ORDER BY day")
    assert [(r["day"], r["status"]) for r in loads] == [(d, "loaded") for d in SPEC.dates()]
    for row in db.query("SELECT * FROM cohort_retention"):
        expected = truth.cohort_row(row["install_date"])
        assert row["cohort_size"] == expected["cohort_size"]
        assert row["retained_7d_users"] == expected["retained_7d_users"]
    assert db.query("SELECT count(*) AS n FROM daily_event_stats")[0]["n"] == SPEC.days
    before = db.query("SELECT * FROM cohort_retention ORDER BY install_date")
    run, _ = _run(dag, SPEC.start + timedelta(days=3))  # a rerun changes nothing
    after = db.query("SELECT * FROM cohort_retention ORDER BY install_date")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "computed_at"} for r in rows]  # noqa: E731
    assert str(run.state) == "success" and strip(after) == strip(before)
    dag_ids = {r["airflow_dag_id"] for r in db.query("SELECT airflow_dag_id FROM runs")}
    assert dag_ids == {"retention_daily"}


def test_a_bad_day_fails_without_retry_and_is_quarantined(dag, pg_dsn, data_root):
    day = date(2017, 5, 2)
    folder = data_root / "raw" / "piwik_track" / f"dt={day}"
    folder.mkdir(parents=True)
    (folder / "export.csv").write_text("uid,time,event_name\n" + "u1,2017-05-02 10:00:00,APP_OPEN\n"
                                       + "u2,soon,APP_OPEN\n" * 5)
    run, states = _run(dag, day)
    assert str(run.state) == "failed"
    assert states["validate"] == "failed"  # no retry: bad input does not heal by waiting
    assert {ti.task_id: ti.try_number for ti in run.get_task_instances()}["validate"] == 1
    assert states["load"] == "upstream_failed"
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE partition_key = %s GROUP BY reason",
                    (day.isoformat(),))
    assert rows == [{"reason": "bad_time", "n": 5}]
    assert db.query("SELECT count(*) AS n FROM piwik_track")[0]["n"] == 0


def test_a_missing_day_is_waited_for_then_fails_clearly_and_writes_nothing(dag, pg_dsn, data_root, monkeypatch):
    sensor = dag.get_task("wait_for_drop")
    monkeypatch.setattr(sensor, "timeout", 3)  # production waits 6 hours, rescheduled (no worker slot held)
    monkeypatch.setattr(sensor, "poke_interval", 1)
    run, states = _run(dag, date(2017, 6, 1))
    assert str(run.state) == "failed"
    assert sensor.mode == "reschedule"
    assert states["wait_for_drop"] == "failed" and states["validate"] == "upstream_failed"
    from pipelines.migrate import upgrade

    upgrade()  # nothing ran against the database; make the tables exist to show they are empty
    assert db.query("SELECT count(*) AS n FROM retention_day_loads")[0]["n"] == 0
    assert db.query("SELECT count(*) AS n FROM ingest_partitions")[0]["n"] == 0


def test_a_typo_in_the_conf_fails_the_run_at_once(dag, pg_dsn, data_root):
    run = dag.test(logical_date=datetime(2017, 6, 2, tzinfo=UTC), run_conf={"max_bad_sharre": 0.5})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed" and states["begin"] == "failed", states
    assert states["wait_for_drop"] == "upstream_failed"

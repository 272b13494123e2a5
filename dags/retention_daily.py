"""
### Retention analytics, daily

Loads one UTC day of tracker events (`piwik_track` CSV drops under `raw/piwik_track/dt=YYYY-MM-DD/` in the
data root) into Postgres, then refreshes install-cohort retention (Q1) and daily event analytics (Q2).

**Which day a run processes**: the `day` Param when given (Trigger form); otherwise the data interval's day:
the schedule is a `CronDataIntervalTimetable` at 00:00 UTC, so the run with logical date D covers
[D 00:00, D+1 00:00), starts once that day is over, and loads day D. A manual run without a logical date
loads the last whole day before it started. `begin`'s log names the day.

**Safe to rerun and backfill** (`airflow backfill create --dag-id retention_daily --from-date ... --to-date ...`,
or *Trigger → Backfill* in the UI): every write of a day happens under that day's lock in one transaction, and
the cohort refresh is serialised with loads, so any order and any overlap of runs ends in the same tables.

**Failures**: a late drop is waited for (`wait_for_drop`, reschedule mode, up to 6 hours, no worker slot held),
then fails clearly; a drop with more bad rows than `max_bad_share`, or a file that cannot be read, fails
`validate` at once without retry, its rows in the `quarantine` table with reasons, and the day's previous
accepted load stays in place.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, PokeReturnValue, dag, task

from pipelines.dagkit import SENSOR, day_param, default_args, overrun_alert, share_param


@dag(
    dag_id="retention_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2017, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=pendulum.duration(hours=8),
    deadline=overrun_alert(pendulum.duration(hours=2)),
    default_args=default_args("analytics-platform", retries=3, retry_minutes=15, timeout_minutes=60),
    tags=["retention", "analytics"],
    doc_md=__doc__,
    params={"day": day_param(), "max_bad_share": share_param()},
)
def retention_daily():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say which day it processes."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=0, dag=dag)

    @task.sensor(**SENSOR)
    def wait_for_drop(day: str, data_interval_end=None, dag_run=None) -> PokeReturnValue:
        """Wait (rescheduled, no slot held) until the day's drop has at least one file."""
        from pipelines.orchestration import poke_input
        from pipelines.retention import jobs

        ready = poke_input(jobs.drop_ready(day), day, "the piwik_track drop", data_interval_end, dag_run)
        return PokeReturnValue(is_done=ready, xcom_value=day)

    @task(pool="duckdb")
    def validate(day: str, params=None) -> dict:
        """Read the day's drop, quarantine bad rows, stage valid ones (the ingest contract)."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.retention import jobs

        return fail_without_retry_on_rejection(jobs.validate)(day, params["max_bad_share"])

    @task
    def load(validated: dict) -> dict:
        """Replace the day in piwik_track and the per-user tables with its accepted run, atomically."""
        from pipelines.retention import jobs

        return jobs.load(validated["day"])

    @task
    def refresh_cohorts(loaded: dict) -> dict:
        """Recompute the cohorts this day can change (its 30-day horizon)."""
        from pipelines.retention import jobs

        return jobs.cohorts(loaded["day"], loaded["affected_install_dates"])

    @task
    def refresh_daily_analytics(loaded: dict) -> dict:
        """DAU, new vs returning, events per user, top events, platforms."""
        from pipelines.retention import jobs

        return jobs.daily_analytics(loaded["day"], loaded["affected_install_dates"])

    loaded = load(validate(wait_for_drop(begin())))
    refresh_cohorts(loaded)
    refresh_daily_analytics(loaded)


retention_daily()

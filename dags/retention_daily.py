"""
### Retention analytics, daily

Loads one UTC day of tracker events (`piwik_track` CSV drops under `raw/piwik_track/dt=YYYY-MM-DD/` in the
data root) into Postgres, then refreshes install-cohort retention (Q1) and daily event analytics (Q2).

**Which day a run processes**: the schedule is a `CronDataIntervalTimetable` at 00:00 UTC, so the run with
logical date D covers the interval [D 00:00, D+1 00:00) and starts once that day is over. The run loads day D.

**Safe to rerun and backfill** (`airflow backfill create --dag-id retention_daily --from-date ... --to-date ...`,
or *Trigger → Backfill* in the UI): every task replaces exactly its day's rows in one transaction, and the
cohort refresh is serialised with loads, so any order of days ends in the same tables.

**Failures**: a missing drop fails `validate` and is retried (the export may be late); a drop with more bad
rows than `max_bad_share` fails at once without retry, its rows in the `quarantine` table with reasons.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "analytics-platform",
    "retries": 3,
    "retry_delay": pendulum.duration(minutes=15),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="retention_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2017, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["retention", "analytics"],
    doc_md=__doc__,
    params={
        "max_bad_share": Param(0.05, type="number", minimum=0, maximum=1,
                               description="Fail the day when more than this share of rows is bad."),
    },
)
def retention_daily():
    @task
    def validate(data_interval_start=None, params=None) -> dict:
        """Read the day's drop, quarantine bad rows, stage valid ones."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.retention import jobs

        return fail_without_retry_on_rejection(jobs.validate)(data_interval_start.date(), params["max_bad_share"])

    @task
    def load(validated: dict) -> dict:
        """Replace the day in piwik_track and the per-user tables, atomically."""
        from pipelines.retention import jobs

        return jobs.load(validated["day"], validated["run_id"])

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

    loaded = load(validate())
    refresh_cohorts(loaded)
    refresh_daily_analytics(loaded)


retention_daily()

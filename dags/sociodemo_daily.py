"""
### Socio-demographic scoring, daily, to Postgres

Validates one UTC day of viewing events (`sociodemo/raw/events/dt=YYYY-MM-DD/*.parquet` in the data root; bad
rows to the `quarantine` table with reasons), brings the user histories (feature table and user sets) up to that
day, and scores every user with the **currently promoted** model into `sociodemo_predictions` (`user_id,
sex_proba, age_class, age_class_proba[], model_version, scored_at`), all rows in one transaction.

**Which day a run processes**: the `day` Param when given; otherwise the data interval's:
`CronDataIntervalTimetable` at 01:00 UTC, so the run with logical date D covers [D 01:00, D+1 01:00) and
processes day D. `begin`'s log names the day.

**Rerun / backfill**: `scored_at` is the end of the processed day, not the wall clock, so rerunning a day
writes identical rows; an older day never overwrites a newer day's prediction of a user. Histories are
cumulative, so runs are serialised (`max_active_runs=1`); backfill in day order. Scoring refuses a model
trained on another feature definition (config hash) than today's histories.

**Failures**: a late drop is waited for (`wait_for_events`, reschedule mode, up to 6 hours); more bad rows
than `max_bad_share` fails at once.
Until a model has been promoted (weekly DAG's `promote` Param, or `python -m pipelines sociodemo promote`),
`score` is **skipped** with the reason in its log while histories keep advancing: promotion is never implicit.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from pipelines.dagkit import SENSOR, day_param, default_args, overrun_alert, share_param


@dag(
    dag_id="sociodemo_daily",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # early, so historical days can be backfilled
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=6),
    deadline=overrun_alert(pendulum.duration(hours=2)),
    default_args=default_args("sociodemo", retries=2, retry_minutes=10, timeout_minutes=90),
    tags=["sociodemo", "scoring"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "max_bad_share": share_param(),
        "model_name": Param("", enum=["", "topclass", "catboost", "deepsets"],
                            description="Score with this promoted model ('' = the most recently promoted one)."),
    },
)
def sociodemo_daily():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say which day it processes."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=1, dag=dag)

    @task.sensor(**SENSOR)
    def wait_for_events(day: str, data_interval_end=None, dag_run=None) -> PokeReturnValue:
        """Wait (rescheduled, no slot held) until the day's event drop has a file."""
        from pipelines.orchestration import poke_input
        from pipelines.sociodemo import jobs

        ready = poke_input(jobs.events_ready(day), day, "the viewing-events drop", data_interval_end, dag_run)
        return PokeReturnValue(is_done=ready, xcom_value=day)

    @task(pool="duckdb")
    def validate(day: str, params=None) -> dict:
        """Read the day's drop, quarantine bad rows, stage clean events (the ingest contract)."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.sociodemo import jobs

        return fail_without_retry_on_rejection(jobs.validate)(day, params["max_bad_share"])

    @task(pool="duckdb")
    def update_histories(validated: dict) -> dict:
        """Fold the day into the per-user feature state; rebuild the user sets; prune old state."""
        from pipelines.sociodemo import jobs

        return jobs.update_histories(validated["day"], mode="incremental")

    @task
    def score(histories: dict, params=None) -> dict:
        """Predict every user with the promoted model; upsert all rows in one transaction."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.sociodemo import jobs

        try:
            return jobs.score(histories["day"], params["model_name"] or None)
        except jobs.NoPromotedModelError as exc:  # before the first promotion: histories still advance
            raise AirflowSkipException(str(exc)) from exc

    score(update_histories(validate(wait_for_events(begin()))))


sociodemo_daily()

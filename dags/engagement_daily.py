"""
### Engagement: convert and score a day's new posts, daily

Converts one UTC day of Eluvio-format posts (`engagement/raw/dt=YYYY-MM-DD/*.csv[.gz]` in the data root) to
month-partitioned Parquet under the ingest contract (bad rows to the `quarantine` table with reasons: broken
quoting, wrong field count, unparseable numbers, missing title, negative votes, ...), then predicts every new
post's up-votes with the **promoted** model into `engagement_predictions` (`post_id, predicted_up_votes,
predicted_log1p, model_name, model_version, as_of, scored_at`), all rows in one transaction.

**Which day a run processes**: the `day` Param when given; otherwise the data interval's: a
`CronDataIntervalTimetable` at 02:00 UTC, so the run with logical date D covers [D 02:00, D+1 02:00) and
processes day D. `begin`'s log names the day.

**Rerun / backfill**: the day's conversion replaces the day's partition (a new run folder; readers follow the
accepted pointer), `scored_at` is the end of the processed day, not the wall clock, so a rerun writes
identical rows, and an older day never overwrites a newer day's score of a post. Days are independent:
backfill in any order.

**Failures**: a late drop is waited for (`wait_for_posts`, reschedule mode, up to 6 hours); more bad rows than
`max_bad_share`, or a file that cannot be read, fails `convert` at once without retry (the day's previous
accepted drop stays in place). Until a model has been promoted (the weekly DAG's `promote` Param, or
`python -m pipelines engagement promote`), `score` is **skipped** with the reason in its log.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from pipelines.dagkit import SENSOR, day_param, default_args, overrun_alert, share_param

MODELS = ["mean", "author_mean", "linear", "catboost", "minilm", "neural"]


@dag(
    dag_id="engagement_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2005, 6, 1, tz="UTC"),  # Reddit's start: any historical day can be backfilled
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=pendulum.duration(hours=8),
    deadline=overrun_alert(pendulum.duration(hours=3)),
    default_args=default_args("engagement", retries=2, retry_minutes=10, timeout_minutes=120),
    tags=["engagement", "scoring"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "max_bad_share": share_param(),
        "model_name": Param("", enum=["", *MODELS],
                            description="Score with this promoted model ('' = the most recently promoted one)."),
    },
)
def engagement_daily():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say which day it processes."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=2, dag=dag)

    @task.sensor(**SENSOR)
    def wait_for_posts(day: str) -> PokeReturnValue:
        """Wait (rescheduled, no slot held) until the day's drop has a file."""
        from pipelines.engagement import jobs

        return PokeReturnValue(is_done=jobs.posts_ready(day), xcom_value=day)

    @task(pool="duckdb")
    def convert(day: str, params=None) -> dict:
        """Stream the day's CSV to month Parquet; quarantine bad rows with reasons (the ingest contract)."""
        from pipelines.engagement import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.convert_day)(day, params["max_bad_share"])

    @task
    def score(converted: dict, params=None) -> dict:
        """Predict the day's posts with the promoted model; upsert them all in one transaction."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.engagement import jobs

        try:
            return jobs.score(converted["day"], params["model_name"] or None)
        except jobs.NoPromotedModelError as exc:  # before the first promotion: conversion still advances
            raise AirflowSkipException(str(exc)) from exc

    @task(trigger_rule="none_failed")
    def cleanup() -> dict:
        """Remove staged runs no reader needs (each partition keeps its accepted run and newest attempts)."""
        from pipelines.engagement import jobs

        return jobs.prune()

    score(convert(wait_for_posts(begin()))) >> cleanup()


engagement_daily()

"""
### Socio-demographic scoring, daily, to Postgres

Validates one UTC day of viewing events (`sociodemo/raw/events/dt=YYYY-MM-DD/*.parquet` in the data root; bad
rows to the `quarantine` table with reasons), brings the user histories (feature table and user sets) up to that
day, and scores every user with the **currently promoted** model into `sociodemo_predictions` (`user_id,
sex_proba, age_class, age_class_proba[], model_version, scored_at`), all rows in one transaction.

**Which day a run processes**: `CronDataIntervalTimetable` at 01:00 UTC, so the run with logical date D covers
[D 01:00, D+1 01:00) and processes day D (`data_interval_start.date()`).

**Rerun / backfill**: `scored_at` is the end of the processed day, not the wall clock, so rerunning a day
writes identical rows. Histories are cumulative, so runs are serialised (`max_active_runs=1`); backfill in
day order.

**Failures**: a missing drop fails `validate` with retries; more bad rows than `max_bad_share` fails at once.
Until a model has been promoted (weekly DAG's `promote` Param, or `python -m pipelines sociodemo promote`),
`score` is **skipped** with the reason in its log while histories keep advancing: promotion is never implicit.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "sociodemo",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=10),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="sociodemo_daily",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # early, so historical days can be backfilled
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["sociodemo", "scoring"],
    doc_md=__doc__,
    params={
        "max_bad_share": Param(0.05, type="number", minimum=0, maximum=1,
                               description="Fail the day when more than this share of rows is bad."),
        "model_name": Param("", type="string",
                            description="Score with this promoted model ('' = the most recently promoted one)."),
    },
)
def sociodemo_daily():
    @task
    def validate(data_interval_start=None, params=None) -> dict:
        """Read the day's drop, quarantine bad rows, stage clean events."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.sociodemo import jobs

        return fail_without_retry_on_rejection(jobs.validate)(data_interval_start.date(), params["max_bad_share"])

    @task
    def update_histories(validated: dict) -> dict:
        """Fold the day into the per-user feature state; rebuild the user sets."""
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

    score(update_histories(validate()))


sociodemo_daily()

"""
### Cantonese article tagging: daily, to Postgres

Validates one UTC day's drop of new articles (`tagging/raw/dt=YYYY-MM-DD/`: JSON lines, JSON, CSV or Parquet,
UTF-8 with or without a BOM; bad rows to the `quarantine` table with reasons), segments them with pycantonese
(cached per content hash: a rerun segments nothing), and tags them with the **currently promoted** model into
`tagging_article_tags` (`article_id, tag, probability, rank, model_name, model_version, content_hash, as_of,
tagged_at`), every row of the day in one transaction. When the drop carries editor tags, the run records how
well the model agreed with them (registry segment `editor_tags`).

**Which day a run processes**: the `day` Param when given; otherwise the data interval's: the schedule is a
`CronDataIntervalTimetable` at 02:00 UTC, so the run with logical date D covers [D 02:00, D+1 02:00) and tags
day D's drop. `begin`'s log names the day.

**Rerun / backfill**: `tagged_at` is the end of the day's interval, not the wall clock, so rerunning a day writes
identical rows; an article tagged from a newer day is never overwritten by an older day's run.

**Failures**: a late drop is waited for (`wait_for_drop`, reschedule mode, up to 6 hours); more bad rows than
`max_bad_share` or an unreadable file fails `validate` at once without retry, and nothing is tagged. Until a
model has been promoted (weekly DAG's `promote` Param, or `python -m pipelines tagging promote`), `tag` is
**skipped** with the reason in its log. A promoted model trained on another feature definition (pycantonese
upgraded) fails `tag` without retry: retrain and promote.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from pipelines.dagkit import SENSOR, day_param, default_args, overrun_alert, share_param

FAMILIES = ["seed_rf", "tfidf_lr", "tfidf_svm", "catboost"]
VIEWS = ["words", "chars", "both", "char1"]
MODEL_NAMES = ["majority"] + [f"{f}_{v}" for f in FAMILIES for v in VIEWS]


@dag(
    dag_id="tagging_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # early, so historical days can be backfilled
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=pendulum.duration(hours=6),
    deadline=overrun_alert(pendulum.duration(hours=2)),
    default_args=default_args("tagging", retries=2, retry_minutes=10, timeout_minutes=90),
    tags=["tagging", "scoring"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "max_bad_share": share_param(),
        "model_name": Param("", type="string", enum=["", *MODEL_NAMES],
                            description="Tag with this promoted model ('' = the most recently promoted one)."),
    },
)
def tagging_daily():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say which day it processes."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=2, dag=dag)

    @task.sensor(**SENSOR)
    def wait_for_drop(day: str) -> PokeReturnValue:
        """Wait (rescheduled, no slot held) until the day's drop has a file."""
        from pipelines.tagging import jobs

        return PokeReturnValue(is_done=jobs.drop_ready(day), xcom_value=day)

    @task(pool="duckdb")
    def validate(day: str, params=None) -> str:
        """Read the day's drop, quarantine bad rows, stage valid articles (the ingest contract)."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.tagging import jobs

        return fail_without_retry_on_rejection(jobs.validate)(day, params["max_bad_share"])["day"]

    @task(pool="ml_training")
    def segment(day: str) -> str:
        """Segment the day's articles the cache has not seen."""
        from pipelines.tagging import jobs

        return jobs.segment(day)["partition"]

    @task
    def tag(day: str, params=None) -> dict:
        """Tag every article of the day with the promoted model; upsert all rows in one transaction."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from pipelines.tagging import jobs

        try:
            return jobs.tag(day, params["model_name"] or None)
        except jobs.NoPromotedModelError as exc:  # before the first promotion: nothing to tag with
            raise AirflowSkipException(str(exc)) from exc
        except jobs.FeatureMismatchError as exc:  # retrying cannot help: retrain and promote
            raise AirflowFailException(str(exc)) from exc

    @task(trigger_rule="none_failed")
    def cleanup(tagged: dict | None = None) -> dict:
        """Remove staged runs no reader needs (the retention policy)."""
        from pipelines.tagging import jobs

        return jobs.cleanup()

    cleanup(tag(segment(validate(wait_for_drop(begin())))))


tagging_daily()

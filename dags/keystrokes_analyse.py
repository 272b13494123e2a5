"""
### Keystroke user identification: analyse a training set (seed 001's Analyse page)

Fill in the Trigger form with the **training data URL** and how many attempts to show (at most 1,000). The run
ingests the pages like the training DAG does (cached by URL, so training the same URL afterwards downloads
nothing; bad attempts quarantined with their reasons) and writes the first N attempts with their features,
a summary and a chart to `keystrokes/analyses/<partition>/` in the data root.

**Which day**: the `day` Param or the last whole day before the run started (only recorded in the registry).
**Rerun-safe**: the analysis folder is replaced as a whole.

**Bad Params** fail at once without retries (an unsupported URL scheme, an unknown model or version; the form
already refuses out-of-range numbers and unknown model types); a missing page is retried (late input), a page
still failing after the HTTP retries is retried by Airflow.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines.dagkit import day_param, default_args, overrun_alert, share_param


@dag(
    dag_id="keystrokes_analyse",
    schedule=None,
    start_date=pendulum.datetime(2017, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    dagrun_timeout=pendulum.duration(hours=2),
    deadline=overrun_alert(pendulum.duration(hours=1)),
    default_args=default_args("keystrokes", retries=1, retry_minutes=5, timeout_minutes=60),
    tags=["keystrokes", "analysis"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "data_url": Param(type="string", minLength=1, maxLength=2048, title="Training data URL",
                          description="First page of the paged training JSON (http(s)://, file:// or data root)."),
        "analyse_rows": Param(100, type="integer", minimum=1, maximum=1000, title="Display first N records"),
        "min_samples": Param(5, type="integer", minimum=2, maximum=1000),
        "max_bad_share": share_param(what="attempts"),
        "max_pages": Param(50_000, type="integer", minimum=1, maximum=1_000_000),
        "refresh": Param(False, type="boolean", description="Download again even if the URL is cached."),
    },
)
def keystrokes_analyse():
    @task
    def begin(params=None, dag_run=None, dag=None) -> str:
        """Check the run's conf and say which day it is recorded for."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, None, dag=dag)  # no schedule: the day comes from run_after

    @task
    def ingest(day: str, params=None) -> dict:
        """Crawl the pages (cached), quarantine bad attempts, stage the valid ones."""
        from pipelines.keystrokes import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.ingest_for_dag)("train", params, day)

    @task
    def analyse(ingested: dict, params=None) -> dict:
        """The first N attempts with their features, and an overview of the training set."""
        from pipelines.keystrokes import jobs

        return jobs.analyse_for_dag(ingested, params["analyse_rows"])

    analyse(ingest(begin()))


keystrokes_analyse()

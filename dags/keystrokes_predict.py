"""
### Keystroke user identification: predict a test document (seed 001's Predict and Export pages)

Fill in the Trigger form: the **test data URL** (`{"attempts": [...]}`, `http(s)://`, `file://` or a path in
the data root), the **model name** and optionally a **version** (empty: the promoted one). The run:

1. `ingest`: downloads the document (cached by URL), checks and replays every attempt; an invalid attempt keeps
   its place and is quarantined with its reason; past `max_bad_share` invalid attempts the run fails without
   retry;
2. `predict`: the model's top-3 users and probabilities for every valid attempt, written as
   `final_pred.json` (a list of user ids in test order, `"Invalid Input"` for an invalid attempt, as in the
   challenge) and `predictions.csv` (the export) under `keystrokes/predictions/<dataset>/<model>/<version>/`,
   and into `keystrokes_predictions` in one transaction; the log shows the first `show_rows` predictions.

**Rerun-safe**: the (dataset, model, version) rows are replaced in one transaction with identical rows (`as_of`
is the run's day, not the wall clock). Scoring refuses a model trained on another feature definition. Without a
version and without a promotion the run fails, saying how to promote.

**Bad Params** fail at once without retries (an unsupported URL scheme, an unknown model or version; the form
already refuses out-of-range numbers and unknown model types); a missing page is retried (late input), a page
still failing after the HTTP retries is retried by Airflow.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines.dagkit import day_param, default_args, overrun_alert, share_param


@dag(
    dag_id="keystrokes_predict",
    schedule=None,
    start_date=pendulum.datetime(2017, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    dagrun_timeout=pendulum.duration(hours=4),
    deadline=overrun_alert(pendulum.duration(hours=2)),
    default_args=default_args("keystrokes", retries=2, retry_minutes=5, timeout_minutes=90),
    tags=["keystrokes", "scoring"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "test_url": Param(type="string", minLength=1, maxLength=2048, title="Test data URL",
                          description='The test document {"attempts": [...]}: http(s)://..., file:///... or a '
                                      "path in the data root."),
        "model_name": Param("keystrokes", type="string", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
                            title="Model name"),
        "model_version": Param("", type="string", pattern=r"^(\d{8}-[0-9a-f]{8})?$", title="Model version",
                               description="YYYYMMDD-<hash> of a trained version; empty = the promoted one."),
        "show_rows": Param(20, type="integer", minimum=1, maximum=1000, title="Display first N rows"),
        "max_bad_share": share_param(0.2, what="test attempts"),
        "refresh": Param(False, type="boolean", description="Download again even if the URL is cached."),
    },
)
def keystrokes_predict():
    @task
    def begin(params=None, dag_run=None, dag=None) -> str:
        """Check the run's conf and say which day the predictions are as of."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, None, dag=dag)  # no schedule: the day comes from run_after

    @task
    def ingest(day: str, params=None) -> dict:
        """Download (cached) and check the test document; invalid attempts keep their place."""
        from pipelines.keystrokes import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.ingest_for_dag)("test", params, day)

    @task
    def predict(ingested: dict, params=None) -> dict:
        """Top-3 users per attempt: final_pred.json, the CSV and keystrokes_predictions in one transaction."""
        from pipelines.keystrokes import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.predict_for_dag)(ingested, dict(params))

    predict(ingest(begin()))


keystrokes_predict()

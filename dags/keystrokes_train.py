"""
### Keystroke user identification: train and compare (seed 001's Train page)

Fill in the Trigger form: the **training data URL** (the first page of the challenge's paged JSON, `http(s)://`,
`file://` or a path in the data root), the **holdout share**, the **model types** and a **model name**; budgets
are bounded numbers. The run then:

1. `ingest`: follows the pages (`next`) with retries and a cache in the data root (the same URL is not downloaded
   twice unless `refresh`), quarantines every bad attempt with its reason (`quarantine` table), drops users with
   fewer than `min_samples` valid attempts on purpose (quarantined as `too_few_samples`) and fails without retry
   past `max_bad_share`, or on a broken page (a loop, the page cap, not JSON, no `user_label`), naming the page;
2. `analyse`: seed 001's Analyse page: the first `analyse_rows` attempts with their features
   (`keystrokes/analyses/<partition>/analysis.csv`, `report.md`, a chart);
3. `train`: every model on the same stratified holdout beside chance, the majority user and, on generated
   data, the generator's oracle; one run-registry run per model (metrics, params, the model folder under
   `keystrokes/models/<model name>/<version>/`); the report (`keystrokes/reports/<model name>/<training id>/`:
   the comparison, `user_level_perf.csv`, per-user accuracy histograms and what per-user accuracy goes with);
4. `compare`: every past version re-evaluated on this holdout (never on attempts it trained on);
5. `promote`: only if the `promote` Param names a model type: promotion is explicit, never a side effect.

**Which day**: the run has no schedule; `begin` takes the `day` Param or the last whole day before the run
started (logged). It only prefixes version ids (`YYYYMMDD-<hash of data and Params>`).

**Reproducible and rerun-safe**: budgets are epochs/iterations with fixed seeds and threads (the time cap is a
reported safety net), so the same data and Params give the same metrics and the same version ids; a rerun
replaces the version's model folder and adds a registry run.

**Bad Params** fail at once without retries (an unsupported URL scheme, an unknown model or version; the form
already refuses out-of-range numbers and unknown model types); a missing page is retried (late input), a page
still failing after the HTTP retries is retried by Airflow.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from pipelines.dagkit import day_param, default_args, overrun_alert, share_param

MODELS = ["logreg", "linear_svm", "adaboost", "random_forest", "catboost", "gru", "embedding"]


@dag(
    dag_id="keystrokes_train",
    schedule=None,
    start_date=pendulum.datetime(2017, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=12),
    deadline=overrun_alert(pendulum.duration(hours=6)),
    default_args=default_args("keystrokes", retries=1, retry_minutes=5, timeout_minutes=240),
    tags=["keystrokes", "training"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "data_url": Param(type="string", minLength=1, maxLength=2048, title="Training data URL",
                          description="First page of the paged training JSON: http(s)://..., file:///... or a "
                                      "path in the data root (e.g. keystrokes/generated/<name>/pages/user_<id>.json)."),
        "holdout_share": Param(0.2, type="number", minimum=0.05, maximum=0.5, title="Holdout set size",
                               description="Share of each user's attempts held out for evaluation."),
        "models": Param(MODELS, type="array", items={"type": "string", "enum": MODELS}, minItems=1,
                        uniqueItems=True, title="Model types", description="Models to train and compare."),
        "model_name": Param("keystrokes", type="string", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", title="Model name",
                            description="The name the versions are kept and promoted under."),
        "min_samples": Param(5, type="integer", minimum=2, maximum=1000,
                             description="Users with fewer valid attempts are dropped (and quarantined)."),
        "seed": Param(42, type="integer", minimum=0, maximum=2_147_483_647),
        "logreg_max_iter": Param(300, type="integer", minimum=10, maximum=10_000),
        "linear_svm_c": Param(0.1, type="number", exclusiveMinimum=0, maximum=1000),
        "adaboost_estimators": Param(200, type="integer", minimum=1, maximum=5000),
        "random_forest_trees": Param(300, type="integer", minimum=1, maximum=5000),
        "catboost_iterations": Param(300, type="integer", minimum=1, maximum=20_000),
        "gru_epochs": Param(30, type="integer", minimum=1, maximum=1000),
        "embedding_epochs": Param(40, type="integer", minimum=1, maximum=1000),
        "time_cap_s": Param(3600, type="number", minimum=10, maximum=43_200,
                            description="Safety cap on each network's training time (the run says if it bit)."),
        "analyse_rows": Param(100, type="integer", minimum=1, maximum=1000, title="Display first N records"),
        "compare_versions": Param(20, type="integer", minimum=1, maximum=500,
                                  description="How many past versions to re-evaluate on this holdout."),
        "promote": Param("", type="string", enum=["", *MODELS],
                         description="'' = promote nothing; else promote this model type of this run."),
        "max_bad_share": share_param(what="attempts"),
        "max_pages": Param(50_000, type="integer", minimum=1, maximum=1_000_000),
        "refresh": Param(False, type="boolean", description="Download again even if the URL is cached."),
    },
)
def keystrokes_train():
    @task
    def begin(params=None, dag_run=None, dag=None) -> str:
        """Check the run's conf and say which day versions are named for."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, None, dag=dag)  # no schedule: the day comes from run_after

    @task
    def ingest(day: str, params=None) -> dict:
        """Crawl the pages (cached), quarantine bad attempts, stage the valid ones (the ingest contract)."""
        from pipelines.keystrokes import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.ingest_for_dag)("train", params, day)

    @task
    def analyse(ingested: dict, params=None) -> dict:
        """The first N attempts with their features, and an overview of the training set."""
        from pipelines.keystrokes import jobs

        return jobs.analyse_for_dag(ingested, params["analyse_rows"])

    @task(pool="ml_training")
    def train(ingested: dict, params=None) -> dict:
        """Fit every model, compare on held-out attempts, one registry run per model. Promotes nothing."""
        from pipelines.keystrokes import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.train_for_dag)(ingested, dict(params))

    @task(pool="ml_training")
    def compare(trained: dict, params=None) -> dict:
        """Every past version on this holdout (attempts it never trained on)."""
        from pipelines.keystrokes import jobs

        return jobs.compare_for_dag(trained, dict(params))

    @task
    def promote(trained: dict, compared: dict, params=None) -> dict:
        """Promote the model type the `promote` Param names (of this run), or nothing."""
        from pipelines.keystrokes import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        return fail_without_retry_on_rejection(jobs.promote_for_dag)(trained, params["promote"], "keystrokes_train")

    ingested = ingest(begin())
    analyse(ingested)
    trained = train(ingested)
    promote(trained, compare(trained))


keystrokes_train()

"""
### Socio-demographic training, weekly

Validates the targets (bad rows to the `quarantine` table, partition `targets`), rebuilds the user histories
in full as of the training day, trains and evaluates every model named in `models` on a held-out split (and,
on generated data, the exact Bayes oracle beside them), and records one registry run per model (metrics,
params, the model folder under `sociodemo/models/<version>/` and the report).

**Which day**: the run with logical date D covers [D 03:00, D+7 03:00); it trains as of the last accepted day
up to D+6, or up to the `day` Param when given. `begin`'s log names the day. The training version is
`YYYYMMDD-<hash of models and Params>`.

**Reproducible**: the same data and Params give the same metrics: DeepSets trains for a number of epochs (early
stopping on a validation loss), with one thread and fixed seeds; its wall-clock cap is a safety net only, and
its run records whether it bit.

**Promotion is explicit**: nothing is served until a model is promoted. Set the `promote` Param to a model name
to promote that model of this run after training, or promote later with `python -m pipelines registry promote
--pipeline sociodemo --model-name <name> --run-id <run>`. The daily DAG scores with the promoted model.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from pipelines.dagkit import day_param, default_args, overrun_alert, share_param

MODELS = ["topclass", "catboost", "deepsets"]


@dag(
    dag_id="sociodemo_train_weekly",
    schedule=CronDataIntervalTimetable("0 3 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 3, tz="UTC"),  # early, so historical weeks can be backfilled
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=12),
    deadline=overrun_alert(pendulum.duration(hours=6)),
    default_args=default_args("sociodemo", retries=1, retry_minutes=30, timeout_minutes=240),
    tags=["sociodemo", "training"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "models": Param(MODELS, type="array", items={"type": "string", "enum": MODELS},
                        description="Models to train and compare."),
        "catboost_iterations": Param(1000, type="integer", minimum=1, maximum=20000),
        "catboost_depth": Param(6, type="integer", minimum=1, maximum=16),
        "catboost_learning_rate": Param(0.05, type="number", exclusiveMinimum=0, maximum=1),
        "deepsets_max_epochs": Param(30, type="integer", minimum=1, maximum=1000,
                                     description="DeepSets training budget, in epochs (early stopping on the "
                                                 "validation loss may end it sooner)."),
        "deepsets_time_budget_s": Param(3600.0, type="number", exclusiveMinimum=0,
                                        description="Safety cap on DeepSets training time, seconds; when it "
                                                    "bites, the run says so (the result then depends on speed)."),
        "promote": Param("", type="string", enum=["", *MODELS],
                         description="'' = promote nothing; else promote this model of this run after training."),
        "max_bad_share": share_param(what="target rows"),
    },
)
def sociodemo_train_weekly():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say as of which day it trains."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=3, dag=dag)

    @task(pool="duckdb")
    def validate_targets(through: str, params=None) -> dict:
        """Stage the valid targets; quarantine the rest. Resolves the training day (last accepted day)."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.sociodemo import jobs

        as_of = jobs.latest_accepted_day(through)
        result = fail_without_retry_on_rejection(jobs.validate_targets)(params["max_bad_share"], as_of)
        return {"as_of": as_of, "rows_valid": result["rows_valid"], "run_id": result["run_id"]}

    @task(pool="duckdb")
    def update_histories(validated: dict) -> dict:
        """Rebuild the feature table and user sets as of the training day from the staged events."""
        from pipelines.sociodemo import jobs

        return jobs.update_histories(validated["as_of"], mode="full")

    @task(pool="ml_training")
    def train(histories: dict, params=None) -> dict:
        """Fit, compare on held-out users, one registry run per model. Promotes nothing."""
        from pipelines.sociodemo import jobs

        result = jobs.train(histories["day"], list(params["models"]), jobs.model_params(dict(params)))
        return {k: result[k] for k in ("version", "as_of", "uri", "runs")}

    @task
    def promote(trained: dict, params=None) -> dict:
        """Promote the model the `promote` Param names (this run's), or nothing."""
        from pipelines.sociodemo import jobs

        name = params["promote"]
        if not name:
            return {"promoted": None}
        if name not in trained["runs"]:
            raise ValueError(f"promote={name!r} was not trained in this run (models: {sorted(trained['runs'])})")
        return jobs.promote(name, trained["runs"][name], by="sociodemo_train_weekly")

    promote(train(update_histories(validate_targets(begin()))))


sociodemo_train_weekly()

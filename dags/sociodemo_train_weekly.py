"""
### Socio-demographic training, weekly

Validates the targets (bad rows to the `quarantine` table, partition `targets`), rebuilds the user histories
in full as of the training day, trains and evaluates every model named in `models` on a held-out split (and,
on generated data, the exact Bayes oracle beside them), and records one registry run per model (metrics,
params, the model folder under `sociodemo/models/<version>/` and the report).

**Which day**: the run with logical date D covers [D 03:00, D+7 03:00); it trains as of the last accepted day
up to D+6 (or the `as_of` Param). The training version is `YYYYMMDD-<hash of models and Params>`.

**Promotion is explicit**: nothing is served until a model is promoted. Set the `promote` Param to a model name
to promote that model of this run after training, or promote later with `python -m pipelines registry promote
--pipeline sociodemo --model-name <name> --run-id <run>`. The daily DAG scores with the promoted model.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "sociodemo",
    "retries": 1,
    "retry_delay": pendulum.duration(minutes=30),
}


@dag(
    dag_id="sociodemo_train_weekly",
    schedule=CronDataIntervalTimetable("0 3 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 3, tz="UTC"),  # early, so historical weeks can be backfilled
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["sociodemo", "training"],
    doc_md=__doc__,
    params={
        "models": Param(["topclass", "catboost", "deepsets"], type="array",
                        items={"type": "string", "enum": ["topclass", "catboost", "deepsets"]},
                        description="Models to train and compare."),
        "catboost_iterations": Param(1000, type="integer", minimum=1, maximum=20000),
        "catboost_depth": Param(6, type="integer", minimum=1, maximum=16),
        "catboost_learning_rate": Param(0.05, type="number", exclusiveMinimum=0, maximum=1),
        "deepsets_max_epochs": Param(30, type="integer", minimum=1, maximum=1000),
        "deepsets_time_budget_s": Param(600.0, type="number", exclusiveMinimum=0,
                                        description="Wall-clock budget of DeepSets training, seconds."),
        "promote": Param("", type="string", enum=["", "topclass", "catboost", "deepsets"],
                         description="'' = promote nothing; else promote this model of this run after training."),
        "as_of": Param("", type="string", description="Train as of this day (YYYY-MM-DD); '' = the interval's."),
        "max_bad_share": Param(0.05, type="number", minimum=0, maximum=1,
                               description="Fail when more than this share of target rows is bad."),
    },
)
def sociodemo_train_weekly():
    @task
    def validate_targets(data_interval_end=None, params=None) -> dict:
        """Stage the valid targets; quarantine the rest. Resolves the training day."""
        from pipelines.orchestration import fail_without_retry_on_rejection
        from pipelines.sociodemo import jobs

        through = params["as_of"] or (data_interval_end - pendulum.duration(days=1)).date().isoformat()
        as_of = jobs.latest_accepted_day(through)
        result = fail_without_retry_on_rejection(jobs.validate_targets)(params["max_bad_share"], as_of)
        return {"as_of": as_of, "rows_valid": result["rows_valid"], "run_id": result["run_id"]}

    @task
    def update_histories(validated: dict) -> dict:
        """Rebuild the feature table and user sets as of the training day from the staged events."""
        from pipelines.sociodemo import jobs

        return jobs.update_histories(validated["as_of"], mode="full")

    @task
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

    promote(train(update_histories(validate_targets())))


sociodemo_train_weekly()

"""
### Engagement: convert new historical files, then train and compare every model, weekly

First converts every historical export dropped under `engagement/raw/history/` that is new or changed since its
last conversion (one ingest partition per file, `file=<name>`; one mapped task per file, labelled with its
name: conversion shards by file, so more files spread over more workers). Then trains the models named in
`models` on a **time split** of all accepted posts (training months, then `valid_months` for early stopping
and learning curves, then `test_months` held out), beside the global-mean and per-author-mean baselines and,
on generated data, the oracle (the generator's planted expectation). One registry run per model; models and
the report (table, learning curves, calibration, drift) under `engagement/models/<version>/`.

**Which day**: the run with logical date D covers [D 04:00, D+7 04:00); it trains as of D+6 (posts up to the
end of that day), or as of the `day` Param when given. `begin`'s log names the day. The version is
`YYYYMMDD-<hash of models, Params and split>`.

**Reproducible**: budgets are epochs, iterations and sample sizes; seeds and torch threads are fixed, so the
same data and Params give the same metrics. The neural model's `neural_time_budget_s` is only a safety net,
reported when it bites.

**Promotion is explicit**: nothing is served until a model is promoted. Set `promote` to a model name to
promote that model of this run after training, or later with `python -m pipelines engagement promote --model
<name>`. A rejected historical file fails its mapped task without retry; it is not tried again until it
changes (or `reconvert` is set); training still runs on the accepted data, and `verdict` then fails the run
so the rejection is not missed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from pipelines.dagkit import day_param, default_args, overrun_alert, share_param

MODELS = ["linear", "catboost", "minilm", "neural"]
PROMOTABLE = ["mean", "author_mean", *MODELS]


@dag(
    dag_id="engagement_train_weekly",
    schedule=CronDataIntervalTimetable("0 4 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2005, 6, 6, tz="UTC"),  # early, so historical weeks can be backfilled
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=24),
    deadline=overrun_alert(pendulum.duration(hours=12)),
    default_args=default_args("engagement", retries=1, retry_minutes=30, timeout_minutes=600),
    tags=["engagement", "training"],
    doc_md=__doc__,
    params={
        "day": day_param(),
        "models": Param(MODELS, type="array", items={"type": "string", "enum": MODELS},
                        description="Models to train and compare (the baselines always are)."),
        "seed": Param(42, type="integer", minimum=0, maximum=2**31 - 1),
        "valid_months": Param(1, type="integer", minimum=1, maximum=24),
        "test_months": Param(1, type="integer", minimum=1, maximum=24),
        "train_months": Param(0, type="integer", minimum=0, maximum=1200,
                              description="Training window in months before validation; 0 = every month."),
        "eval_rows": Param(20000, type="integer", minimum=100, maximum=10_000_000,
                           description="Size of the test sample every model is judged on."),
        "valid_rows": Param(20000, type="integer", minimum=100, maximum=10_000_000),
        "linear_epochs": Param(2, type="integer", minimum=1, maximum=100),
        "catboost_iterations": Param(800, type="integer", minimum=1, maximum=20000),
        "catboost_sample_rows": Param(200000, type="integer", minimum=1000, maximum=20_000_000),
        "minilm_sample_rows": Param(20000, type="integer", minimum=100, maximum=2_000_000,
                                    description="Titles embedded for training (~300 a second per core)."),
        "neural_epochs": Param(2, type="integer", minimum=1, maximum=100),
        "neural_workers": Param(2, type="integer", minimum=0, maximum=32,
                                description="DataLoader worker processes (each row group read by one of them)."),
        "neural_time_budget_s": Param(3600.0, type="number", exclusiveMinimum=0,
                                      description="Safety cap on the neural model's training, seconds."),
        "promote": Param("", type="string", enum=["", *PROMOTABLE],
                         description="'' = promote nothing; else promote this model of this run after training."),
        "reconvert": Param(False, type="boolean", description="Convert every historical file again."),
        "max_bad_share": share_param(),
    },
)
def engagement_train_weekly():
    @task
    def begin(params=None, dag_run=None, data_interval_end=None, dag=None) -> str:
        """Check the run's conf and say as of which day it trains."""
        from pipelines.orchestration import begin

        return begin(params, dag_run, data_interval_end, interval_hour=4, dag=dag)

    @task
    def pending_files(day: str, params=None) -> list[str]:
        """Historical files new or changed since their last conversion."""
        from pipelines.engagement import jobs

        return jobs.pending_history_files(params["reconvert"])

    @task(pool="duckdb", map_index_template="{{ file_name }}")
    def convert_file(name: str, params=None) -> dict:
        """Stream one historical file to month Parquet; quarantine bad rows (the ingest contract)."""
        from airflow.sdk import get_current_context

        from pipelines.engagement import jobs
        from pipelines.orchestration import fail_without_retry_on_rejection

        get_current_context()["file_name"] = name
        return fail_without_retry_on_rejection(jobs.convert_file)(name, params["max_bad_share"])

    @task(trigger_rule="all_done")
    def conversions(pending: list[str]) -> dict:
        """Which of this run's files were accepted and which rejected, once every conversion has finished (a
        rejected file fails its own task, not the training on the accepted data)."""
        from pipelines.engagement import jobs

        return jobs.conversion_outcome(pending)

    @task(pool="ml_training")
    def train(day: str, converted: dict, params=None) -> dict:
        """Fit and compare every model on the time split; one registry run per model. Promotes nothing."""
        from pipelines.engagement import jobs

        result = jobs.train(day, list(params["models"]), jobs.model_params(dict(params)), seed=params["seed"],
                            valid_months=params["valid_months"], test_months=params["test_months"],
                            train_months=params["train_months"] or None, eval_rows=params["eval_rows"],
                            valid_rows=params["valid_rows"])
        return {k: result[k] for k in ("version", "as_of", "runs", "report")}

    @task
    def verdict(promoted: dict, converted: dict) -> dict:
        """Fail the run (after training) when one of this run's historical files was rejected."""
        from airflow.sdk.exceptions import AirflowFailException

        if converted["rejected"]:
            raise AirflowFailException(f"historical file(s) rejected in this run: {converted['rejected']}; the "
                                       "models were trained without them (see the convert_file logs and the "
                                       "quarantine table)")
        return {**promoted, **converted}

    @task
    def promote(trained: dict, params=None) -> dict:
        """Promote the model the `promote` Param names (this run's), or nothing."""
        from pipelines.engagement import jobs

        name = params["promote"]
        if not name:
            return {"promoted": None}
        if name not in trained["runs"]:
            raise ValueError(f"promote={name!r} was not trained in this run (models: {sorted(trained['runs'])})")
        return jobs.promote(name, trained["runs"][name], by="engagement_train_weekly")

    day = begin()
    pending = pending_files(day)
    summary = conversions(pending)
    convert_file.expand(name=pending) >> summary
    verdict(promote(train(day, summary)), summary)


engagement_train_weekly()

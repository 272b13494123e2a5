"""What every DAG file shares, cheap enough to import at a DAG file's top level (``airflow.sdk``, pendulum).

Every DAG of the platform:

* starts with a ``begin`` task calling :func:`pipelines.orchestration.begin`: it refuses a run whose conf names
  an unknown Param (with the list of valid ones), resolves which day the run processes (the ``day`` Param,
  else the data interval, else the last whole interval before ``run_after`` for a manual run without a logical
  date) and says so in its log;
* has a ``day`` Param (:func:`day_param`) so the Trigger form says which day will be processed and can name one;
* waits for late input with a sensor in ``reschedule`` mode (no worker slot held) with a timeout
  (:data:`SENSOR`), then fails clearly, instead of failing and retrying its first task;
* gives every task an ``execution_timeout`` and retries (:func:`default_args`), the DAG a ``dagrun_timeout``;
* runs heavy tasks in the pools of :data:`POOLS` (created by ``python -m pipelines airflow-setup``), so
  parallel runs and backfills cannot exhaust the machine;
* labels mapped tasks (``map_index_template``).

The rules are enforced by ``tests/dags/test_dag_integrity.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

#: Pools heavy tasks run in: name → (slots, what they protect). Sized for one 2-core, 24 GiB worker; raise
#: them with the workers (``airflow pools set`` or the ``PIPELINES_POOL_<NAME>`` environment variables read by
#: ``python -m pipelines airflow-setup``).
POOLS: dict[str, tuple[int, str]] = {
    "duckdb": (2, "out-of-core DuckDB validation and feature builds: 2 GB memory cap each"),
    "ml_training": (1, "model training (CatBoost, torch): uses every core"),
    "dynamodb_writes": (4, "DynamoDB batch writers: bounds the write capacity used at once"),
    "publish": (1, "switching what readers see (recommendation pointer, cleanup): one at a time"),
}

#: Late input is waited for by a sensor in reschedule mode: checked every ``poke_interval`` seconds, given up
#: after ``timeout`` seconds with a clear failure.
SENSOR = {"mode": "reschedule", "poke_interval": 120, "timeout": 6 * 3600 + 600}

DAY_PARAM_HELP = ("Day to process, YYYY-MM-DD. Empty: the run's data interval day (a scheduled run for the "
                  "interval [D hh:mm, D+1 hh:mm) processes D; a manual run without a logical date processes the "
                  "last whole interval before it starts). The first task's log says which day was chosen.")


def default_args(owner: str, *, retries: int = 2, retry_minutes: float = 5, timeout_minutes: float = 60,
                 **extra: Any) -> dict[str, Any]:
    """Task defaults: an owner, retries with exponential backoff, an execution timeout, and the failure alert
    (:class:`pipelines.ops.notify.PipelineAlertNotifier`: one ``alerts`` row and one message per task that fails
    for good, its retries exhausted or failed without retry)."""
    from pipelines.ops.notify import task_failure_notifier

    return {
        "owner": owner,
        "retries": retries,
        "retry_delay": timedelta(minutes=retry_minutes),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=timeout_minutes),
        "on_failure_callback": task_failure_notifier(),
        **extra,
    }


def overrun_alert(expected: timedelta):
    """``DAG(deadline=...)``: a ``dag_overrun`` alert when a run is still going ``expected`` after it was queued
    (an Airflow 3 Deadline Alert; its callback runs in the triggerer). Keep ``expected`` under ``dagrun_timeout``."""
    from pipelines.ops.notify import overrun_deadline

    return overrun_deadline(expected)


def without_deadlines(dags):
    """The DAGs (a DagBag's ``dags`` mapping, or one DAG) ready for ``dag.test()``: their deadline alerts removed.

    Airflow 3.3.2's ``dag.test()`` fails at the end of every successful run of a DAG with a deadline (its
    ``DagRun.update_state`` looks the DAG's alerts up by id and is handed something else: ``'dict' object has no
    attribute 'hex'``). Deadlines are the scheduler's business, and they are tested through a real scheduler and
    triggerer (``tests/e2e/test_ops_airflow.py``); the local ``dag.test()`` runs of the demo and the tests drop them.
    """
    for dag in dags.values() if isinstance(dags, dict) else [dags]:
        dag.deadline = None
    return dags


def day_param():
    """The ``day`` Param of every daily DAG: empty (the data interval's day) or an explicit ISO day."""
    from airflow.sdk import Param

    return Param("", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$", title="Day", description=DAY_PARAM_HELP)


def share_param(default: float = 0.05, what: str = "rows"):
    """The ``max_bad_share`` Param: past this share of bad input, the partition is rejected."""
    from airflow.sdk import Param

    return Param(default, type="number", minimum=0, maximum=1,
                 description=f"Reject the partition (fail without retry) when more than this share of {what} is bad.")

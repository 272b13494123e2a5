"""The Airflow side of alerting: the failure notifier every task carries, and the DAG overrun deadline.

Imported when DAG files are parsed (``pipelines.dagkit.default_args`` puts the notifier on every task), so
this module imports nothing but ``airflow.sdk`` at its top; the work happens in :mod:`pipelines.ops.alerts`,
imported when a callback runs.

* :class:`PipelineAlertNotifier` (``on_failure_callback``): Airflow calls it once when a task fails for good
  (its retries exhausted, or failed without retry); it records one ``alerts`` row and sends one message with
  the DAG, task, logical date, log link and the error's last lines. Retries in between are not alerts: the
  task may still succeed (they show in the Airflow UI).
* :func:`overrun_deadline`: an Airflow 3 Deadline Alert for a DAG: when a run is still going ``expected``
  after it was queued, the triggerer calls :func:`on_dag_overrun`, which raises a ``dag_overrun`` warning
  (the run keeps going; ``dagrun_timeout`` is what stops it).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

#: The deadline callback's import path (the triggerer imports it by name).
OVERRUN_CALLBACK = "pipelines.ops.notify.on_dag_overrun"


class PipelineAlertNotifier(BaseNotifier):
    """Record a failed task in the ``alerts`` table and send it to the configured target (webhook, e-mail)."""

    def notify(self, context: Any) -> None:
        from pipelines.ops.alerts import from_task_failure, raise_alert

        raised = raise_alert(from_task_failure(context))
        log.info("failure alert %s (new: %s, delivered: %s)", raised.alert_id, raised.new, raised.notified_ok)


def task_failure_notifier() -> PipelineAlertNotifier:
    """The ``on_failure_callback`` of every task (``pipelines.dagkit.default_args``)."""
    return PipelineAlertNotifier()


def _overrun(context: dict | None, expected_s: float | None) -> str:
    from pipelines.ops.alerts import from_overrun, raise_alert

    raised = raise_alert(from_overrun(context, expected_s))
    return (f"alert {raised.alert_id}: {'recorded' if raised.new else 'raised before, not sent again'}; "
            f"delivered: {raised.notified_ok}")


async def on_dag_overrun(context: dict | None = None, expected_s: float | None = None) -> str:
    """The deadline callback (runs in the triggerer): a ``dag_overrun`` alert for the late run.

    Returns a line of text: Airflow stores a callback's result in a text column, and in 3.3.2 anything else
    (a dict) fails that update and stops the triggerer.
    """
    return await asyncio.to_thread(_overrun, context, expected_s)


def overrun_deadline(expected: timedelta):
    """A Deadline Alert firing when a DAG run is still going ``expected`` after it was queued.

    Airflow 3's deadline alerts are evaluated by the scheduler and their callback runs in the triggerer; a run
    that finishes in time has its deadline removed. Give ``DAG(deadline=...)`` this, with ``expected`` well
    under the DAG's ``dagrun_timeout``.
    """
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    if expected <= timedelta(0):
        raise ValueError(f"the expected duration must be positive, got {expected}")
    expected = timedelta(seconds=expected.total_seconds())  # a plain timedelta: Airflow's serde refuses pendulum's
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=expected,
                         callback=AsyncCallback(OVERRUN_CALLBACK, kwargs={"expected_s": expected.total_seconds()}),
                         name=f"overrun after {expected}")

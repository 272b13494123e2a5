"""Glue between the pipelines and Airflow's task semantics (imported only inside tasks).

Every DAG's first task calls :func:`begin`: it refuses a run whose conf names an unknown Param (a typo would
otherwise run with defaults), resolves which day the run processes, and says so in the task log. The rules:

1. the ``day`` Param, when the operator gives one (the Trigger form);
2. else the run's data interval: the last day it covers, the day of ``data_interval_end - 1 day`` (a daily run
   for [D hh:mm, D+1 hh:mm) processes D; a weekly one for [D, D+7) trains as of D+6);
3. else (a manual run without a logical date has no data interval) the last whole day before the run's
   ``run_after``, days starting at the DAG's ``interval_hour`` (what the scheduler would have run).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from pipelines.errors import RunRejected

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)


def fail_without_retry_on_rejection(func: Callable[P, R]) -> Callable[P, R]:
    """Rejected input (too many bad rows, broken schema) fails the task at once: retrying cannot fix it.

    Everything else, e.g. :class:`~pipelines.errors.MissingPartitionError` for a late drop, keeps Airflow's
    retries.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RunRejected as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc

    return wrapper


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)


def check_conf(conf: Mapping[str, Any] | None, params: Mapping[str, Any]) -> None:
    """Fail (no retry) when the run's conf has keys that are not Params of the DAG."""
    unknown = sorted(set(conf or {}) - set(params))
    if unknown:
        _fail(f"unknown Param(s) {unknown} in the run's conf; valid Params: {sorted(params)}")


def resolve_day(day_param: str | None, data_interval_end: datetime | None, run_after: datetime | None,
                interval_hour: int = 0) -> tuple[date, str]:
    """``(day, where it came from)`` by the rules in the module docstring."""
    if day_param:
        try:
            return date.fromisoformat(str(day_param)[:10]), "the day Param"
        except ValueError:
            _fail(f"Param day={day_param!r} is not a date (YYYY-MM-DD)")
    if data_interval_end is not None:
        return (data_interval_end - timedelta(days=1)).date(), \
            f"the data interval ending {data_interval_end.isoformat()}"
    if run_after is None:
        _fail("the run has neither a day Param, a data interval nor a run_after time: name a day")
    day = (run_after - timedelta(days=1, hours=interval_hour)).date()
    return day, f"the last whole day before run_after {run_after.isoformat()} (the run has no logical date)"


def begin(params: Mapping[str, Any], dag_run: Any, data_interval_end: datetime | None,
          interval_hour: int = 0, dag: Any = None) -> str:
    """Check the run's conf against the DAG's declared Params (the run's ``params`` already hold every conf key,
    typos included), resolve its day and log it; returns the day as an ISO string (for XCom)."""
    declared = getattr(dag, "params", None) if dag is not None else None
    check_conf(getattr(dag_run, "conf", None), declared if declared is not None else params)
    day, source = resolve_day(params.get("day"), data_interval_end, getattr(dag_run, "run_after", None),
                              interval_hour)
    log.info("This run processes day %s (from %s).", day, source)
    return day.isoformat()


#: How long a run waits for late input: up to this long after its data interval ends (a scheduled run), but at
#: least :data:`GRACE` after it started (a manual run, a backfill of a long-past day, or the run unpausing a DAG
#: creates: those fail fast instead of holding a run slot for hours).
LATE_INPUT_WAIT = timedelta(hours=6)
GRACE = timedelta(minutes=3)


def input_deadline(data_interval_end: datetime | None, run_after: datetime | None,
                   started: datetime | None = None) -> datetime:
    """When a run stops waiting for its input (see :data:`LATE_INPUT_WAIT`)."""
    from datetime import UTC

    start = started or run_after or datetime.now(UTC)
    candidates = [start + GRACE]
    if data_interval_end is not None:
        candidates.append(data_interval_end + LATE_INPUT_WAIT)
    return max(candidates)


def poke_input(ready: bool, day: str, what: str, data_interval_end: datetime | None, dag_run: Any) -> bool:
    """A sensor's poke: True once the input is there; past the run's deadline, fail (no retry) saying so."""
    from datetime import UTC

    if ready:
        return True
    started = getattr(dag_run, "start_date", None)
    deadline = input_deadline(data_interval_end, getattr(dag_run, "run_after", None), started)
    now = datetime.now(UTC)
    if now >= deadline:
        _fail(f"{what} for {day} has not arrived; gave up waiting at {deadline.isoformat()} (a scheduled run waits "
              f"up to {LATE_INPUT_WAIT} after its interval, other runs {GRACE}). Drop the input, then clear the task.")
    log.info("%s for %s has not arrived yet; waiting until %s", what, day, deadline.isoformat())
    return False

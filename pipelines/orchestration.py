"""Glue between pipeline errors and Airflow's task semantics (imported only inside tasks)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from pipelines.errors import RunRejected

P = ParamSpec("P")
R = TypeVar("R")


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

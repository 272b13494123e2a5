"""Links from registry runs to the Airflow task that made them (the task's log), from Airflow's metadata.

The registry records the DAG and DAG run of every run it logs; the page runs inside Airflow's API server, which
holds the metadata database, so the task is the one of that DAG run whose execution covered the registry run's
start. When the metadata cannot be read (the app outside Airflow, a pruned run), the link is the DAG run's page,
which lists its tasks and their logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

log = logging.getLogger(__name__)


def task_of_runs(runs: Iterable[dict]) -> dict[str, dict]:
    """``{registry run id: {"task_id", "map_index", "try_number"}}`` for runs made by an Airflow task."""
    wanted = [r for r in runs if r.get("airflow_dag_id") and r.get("airflow_run_id") and r.get("started_at")]
    if not wanted:
        return {}
    try:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select, tuple_

        pairs = list({(r["airflow_dag_id"], r["airflow_run_id"]) for r in wanted})
        with create_session() as session:
            rows = session.execute(
                select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.try_number, TI.start_date, TI.end_date)
                .where(tuple_(TI.dag_id, TI.run_id).in_(pairs))).all()
    except Exception as exc:  # outside the API server, or the metadata is unreachable: DAG-run links only
        log.debug("task links unavailable: %s", exc)
        return {}
    by_run: dict[tuple[str, str], list] = {}
    for row in rows:
        by_run.setdefault((row.dag_id, row.run_id), []).append(row)
    out = {}
    for r in wanted:
        started: datetime = r["started_at"]
        candidates = [t for t in by_run.get((r["airflow_dag_id"], r["airflow_run_id"]), [])
                      if t.start_date is not None and t.start_date <= started
                      and (t.end_date is None or started <= t.end_date)]
        if candidates:
            best = max(candidates, key=lambda t: t.start_date)
            out[str(r["run_id"])] = {"task_id": best.task_id, "map_index": best.map_index,
                                     "try_number": best.try_number}
    return out

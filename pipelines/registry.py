"""The run registry every pipeline writes to: one row per ingest/train/score run, its metrics, its artifacts.

A run row is written when the run starts (status ``running``) on its own connection, so a crashed task still
leaves a trace, and closed as ``success``/``failed``/``rejected``. The registry is an append-only log of
attempts; the pipelines' output tables are what idempotency is about.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from pipelines import db
from pipelines.errors import RunRejected, UsageError
from pipelines.migrate import ensure_schema
from pipelines.settings import pg_dsn

log = logging.getLogger(__name__)


@cache
def code_version() -> str | None:
    """Git commit of the deployed code, if it is a checkout (or ``PIPELINES_CODE_VERSION``)."""
    if os.environ.get("PIPELINES_CODE_VERSION"):
        return os.environ["PIPELINES_CODE_VERSION"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


@dataclass
class Run:
    """Handle of an open run: add metrics, the artifact location and a summary while it runs."""

    run_id: uuid.UUID
    pipeline: str
    dsn: str
    summary: dict[str, Any] = field(default_factory=dict)
    artifact_uri: str | None = None

    def log_metrics(self, metrics: Mapping[str, float | None], segment: str = "") -> None:
        """Upsert metrics (name → value) for one segment ('' = overall)."""
        rows = [(str(self.run_id), name, segment, None if v is None else float(v)) for name, v in metrics.items()]
        with db.transaction(self.dsn) as cur:
            cur.executemany(
                "INSERT INTO run_metrics (run_id, name, segment, value) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (run_id, name, segment) DO UPDATE SET value = EXCLUDED.value",
                rows,
            )


def _airflow_context() -> tuple[str | None, str | None]:
    return os.environ.get("AIRFLOW_CTX_DAG_ID"), os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")


@contextlib.contextmanager
def track_run(
    pipeline: str,
    kind: str,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    params: Mapping[str, Any] | None = None,
    interval: tuple[datetime, datetime] | None = None,
    dsn: str | None = None,
) -> Iterator[Run]:
    """Record a run around a block of work; the block's exception marks it failed (or rejected)."""
    dsn = dsn or pg_dsn()
    ensure_schema(dsn)
    run = Run(run_id=uuid.uuid4(), pipeline=pipeline, dsn=dsn)
    dag_id, dag_run_id = _airflow_context()
    with db.transaction(dsn) as cur:
        cur.execute(
            """INSERT INTO runs (run_id, pipeline, kind, model_name, model_version, status, params,
                                 data_interval_start, data_interval_end, airflow_dag_id, airflow_run_id, code_version)
               VALUES (%s, %s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s)""",
            (str(run.run_id), pipeline, kind, model_name, model_version, json.dumps(params or {}, default=str),
             interval[0] if interval else None, interval[1] if interval else None, dag_id, dag_run_id,
             code_version()),
        )
    status, error = "success", None
    try:
        yield run
    except RunRejected as exc:
        status, error = "rejected", str(exc)
        raise
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with db.transaction(dsn) as cur:
            cur.execute(
                """UPDATE runs SET status = %s, error = %s, summary = %s, artifact_uri = %s, finished_at = now()
                   WHERE run_id = %s""",
                (status, error, json.dumps(run.summary, default=str), run.artifact_uri, str(run.run_id)),
            )
        from pipelines.ops.hooks import after_run  # operations: metric-drop alert vs the promoted version

        after_run(str(run.run_id), kind, status, dsn)


def list_runs(pipeline: str | None = None, limit: int = 20, dsn: str | None = None) -> list[dict]:
    """Latest runs, newest first, with their overall metrics folded in as a dict."""
    return db.query(
        """SELECT r.run_id, r.pipeline, r.kind, r.model_name, r.model_version, r.status, r.started_at,
                  r.finished_at, r.data_interval_start, r.artifact_uri, r.summary, r.error,
                  COALESCE(jsonb_object_agg(m.name, m.value) FILTER (WHERE m.name IS NOT NULL), '{}') AS metrics
           FROM runs r LEFT JOIN run_metrics m ON m.run_id = r.run_id AND m.segment = ''
           WHERE %(pipeline)s::text IS NULL OR r.pipeline = %(pipeline)s
           GROUP BY r.run_id ORDER BY r.started_at DESC LIMIT %(limit)s""",
        {"pipeline": pipeline, "limit": limit},
        dsn,
    )


def compare_models(pipeline: str, metric: str, segment: str = "", dsn: str | None = None) -> list[dict]:
    """One metric across every successful model version of a pipeline, best first."""
    return db.query(
        """SELECT r.model_name, r.model_version, r.run_id, r.finished_at, m.value
           FROM runs r JOIN run_metrics m USING (run_id)
           WHERE r.pipeline = %s AND r.status = 'success' AND m.name = %s AND m.segment = %s
           ORDER BY m.value DESC NULLS LAST""",
        (pipeline, metric, segment),
        dsn,
    )


def promote(pipeline: str, model_name: str, run_id: str, alias: str = "production", by: str | None = None,
            dsn: str | None = None) -> None:
    """Point ``alias`` at a successful run's model. Explicit by design: nothing promotes implicitly."""
    with db.transaction(dsn) as cur:
        cur.execute("SELECT status, model_name FROM runs WHERE run_id = %s AND pipeline = %s", (run_id, pipeline))
        row = cur.fetchone()
        if row is None or row[0] != "success" or row[1] != model_name:
            raise UsageError(f"run {run_id} is not a successful {pipeline}/{model_name} run")
        cur.execute(
            """INSERT INTO model_promotions (pipeline, model_name, alias, run_id, promoted_by)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (pipeline, model_name, alias)
               DO UPDATE SET run_id = EXCLUDED.run_id, promoted_at = now(), promoted_by = EXCLUDED.promoted_by""",
            (pipeline, model_name, alias, run_id, by or os.environ.get("USER")),
        )


def promoted_run(pipeline: str, model_name: str, alias: str = "production", dsn: str | None = None) -> dict | None:
    """The run currently behind ``alias``, or None."""
    rows = db.query(
        """SELECT r.* FROM model_promotions p JOIN runs r USING (run_id)
           WHERE p.pipeline = %s AND p.model_name = %s AND p.alias = %s""",
        (pipeline, model_name, alias),
        dsn,
    )
    return rows[0] if rows else None

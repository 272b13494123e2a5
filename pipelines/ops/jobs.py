"""Operations steps the DAGs and the command line call: run reports, a test alert, a streamed CSV export.

:func:`render_reports` is what a training task calls after training (``render_reports(result["runs"])``):
one self-contained HTML report per run, written beside its artifacts. A report that cannot be rendered is
logged and listed, never a failed training: the model and its metrics are already recorded.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipelines import db
from pipelines.migrate import ensure_schema
from pipelines.ops import catalog
from pipelines.settings import pg_dsn

log = logging.getLogger(__name__)


def _ids(runs: Iterable[str] | Mapping[str, str] | str) -> list[str]:
    if isinstance(runs, str):
        return [runs]
    if isinstance(runs, Mapping):
        return [str(v) for v in runs.values()]
    return [str(r) for r in runs]


def render_reports(runs: Iterable[str] | Mapping[str, str] | str) -> dict:
    """Write the HTML report of each run (ids, or a ``{model: run id}`` mapping as the trainings return);
    returns ``{"written": {run id: uri}, "failed": {run id: why}}``."""
    from pipelines.ops.report import write_run_report

    dsn = pg_dsn()
    ensure_schema(dsn)
    written, failed = {}, {}
    for run_id in _ids(runs):
        try:
            written[run_id] = write_run_report(run_id, dsn)
        except Exception as exc:  # a missing report must not fail the training that already succeeded
            log.exception("the report of run %s could not be written", run_id)
            failed[run_id] = f"{type(exc).__name__}: {exc}"
    log.info("run reports: %d written, %d failed", len(written), len(failed))
    return {"written": written, "failed": failed}


def runs_to_report(pipeline: str | None = None, missing_only: bool = True, limit: int = 500) -> list[str]:
    """Successful training/evaluation runs (of a pipeline), newest first; with ``missing_only``, those whose
    report is not in the data root yet."""
    from pipelines.ops.report import report_rel
    from pipelines.storage import DataRoot

    dsn = pg_dsn()
    ensure_schema(dsn)
    rows = db.query("""SELECT run_id::text AS run_id, pipeline, artifact_uri FROM runs
                       WHERE kind IN ('train', 'evaluate') AND status = 'success'
                         AND (%(p)s::text IS NULL OR pipeline = %(p)s)
                       ORDER BY started_at DESC LIMIT %(n)s""", {"p": pipeline, "n": limit}, dsn)
    if not missing_only:
        return [r["run_id"] for r in rows]
    root = DataRoot()
    return [r["run_id"] for r in rows if not root.exists(report_rel(r, root))]


def test_alert(message: str = "Test alert from python -m pipelines ops test-alert") -> dict:
    """Raise a ``test`` alert through the configured targets (checks the webhook / e-mail set-up end to end)."""
    import uuid

    from pipelines.ops.alerts import Alert, raise_alert

    dsn = pg_dsn()
    ensure_schema(dsn)
    raised = raise_alert(Alert(kind="test", severity="info", message=message, dedup_key=f"test:{uuid.uuid4()}"),
                         dsn)
    return {"alert_id": raised.alert_id, "targets": raised.targets, "notified_ok": raised.notified_ok,
            "error": raised.error}


def recent_alerts(pipeline: str | None = None, limit: int = 20) -> list[dict]:
    from pipelines.ops import queries

    dsn = pg_dsn()
    ensure_schema(dsn)
    with db.transaction(dsn) as cur:
        rows, _ = queries.alerts_page(cur, None, pipeline=pipeline, limit=limit)
    return rows


def export_predictions(pipeline: str, table: str | None, out: Path | None) -> dict:
    """A pipeline's serving table as CSV into ``out`` (``-``/None: stdout), streamed like the page's export."""
    from pipelines.errors import UsageError
    from pipelines.ops import queries

    item = catalog.CATALOG.get(pipeline)
    if item is None or not item.tables:
        raise UsageError(f"{pipeline!r} has no serving table (pipelines with one: "
                         f"{sorted(p for p, i in catalog.CATALOG.items() if i.tables)})")
    chosen = next((t for t in item.tables if t.table == table), None) if table else item.tables[0]
    if chosen is None:
        raise UsageError(f"{pipeline} has no table {table!r} (tables: {[t.table for t in item.tables]})")
    dsn = pg_dsn()
    written = 0
    stream = sys.stdout.buffer if out is None or str(out) == "-" else open(out, "wb")  # noqa: SIM115
    try:
        for chunk in queries.export_csv(dsn, chosen):
            stream.write(chunk)
            written += len(chunk)
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    return {"table": chosen.table, "bytes": written, "out": str(out or "-")}

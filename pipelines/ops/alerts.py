"""Alerts: recorded once in the ``alerts`` table, then sent to the configured targets.

Every alert carries a ``dedup_key`` (a failing task's DAG, run, task, map index and try; a partition's ingest
run; a model's registry run; an overrunning DAG run): raising the same alert twice records one row and sends
one message, so a callback that Airflow happens to run twice cannot page anyone twice. The row is written
first, so an alert is on the operations page even when every target is down; if PostgreSQL itself is down the
message is still sent (saying it could not be recorded).

Where alerts come from:

* :func:`from_task_failure`: the failure callback (:class:`pipelines.ops.notify.PipelineAlertNotifier`), for a
  task that failed for good: its retries exhausted, or failed without retry (rejected input);
* :func:`check_quarantine_share`: an accepted partition whose bad share passed its warning level (a fraction
  of ``max_bad_share``, :func:`pipelines.ops.config.quarantine_warn_ratio`), called by ``ingest.run_ingest``;
* :func:`check_metric_drop`: a successful train/evaluate run whose primary metric is worse than the promoted
  version's by more than the tolerance, called by ``registry.track_run`` when the run closes;
* :func:`from_overrun`: a DAG run still going past its expected time (the DAG's deadline alert).
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pipelines.ops import catalog, config

log = logging.getLogger(__name__)

KINDS = ("task_failed", "retries_exhausted", "quarantine_share", "metric_drop", "dag_overrun", "test")
SEVERITIES = ("info", "warning", "error", "critical")
#: How much of a failure's traceback a message carries.
ERROR_LINES = 20
ERROR_CHARS = 4000


@dataclass
class Alert:
    kind: str
    severity: str
    message: str
    dedup_key: str
    pipeline: str | None = None
    dag_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    run_id: str | None = None
    logical_date: datetime | None = None
    registry_run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r} (one of {KINDS})")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown alert severity {self.severity!r} (one of {SEVERITIES})")
        if self.pipeline is None:
            self.pipeline = catalog.pipeline_of_dag(self.dag_id)

    @property
    def subject(self) -> str:
        where = self.pipeline or self.dag_id or "platform"
        return f"[{self.severity.upper()}] {where}: {self.message.splitlines()[0][:150]}"

    def text(self) -> str:
        """The message people read: what, where, the links, and the error's last lines."""
        lines = [self.message]
        facts = [("pipeline", self.pipeline), ("DAG", self.dag_id), ("task", self.task_id),
                 ("map index", self.map_index if self.map_index is not None and self.map_index >= 0 else None),
                 ("try", self.try_number), ("DAG run", self.run_id),
                 ("logical date", self.logical_date.isoformat() if self.logical_date else None),
                 ("registry run", self.registry_run_id)]
        lines += [f"{name}: {value}" for name, value in facts if value not in (None, "")]
        for key in ("log_url", "page_url"):
            if self.details.get(key):
                lines.append(f"{'log' if key == 'log_url' else 'page'}: {self.details[key]}")
        if self.details.get("error"):
            lines += ["", "error (last lines):", self.details["error"]]
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["logical_date"] = self.logical_date.isoformat() if self.logical_date else None
        return {"text": f"{self.subject}\n{self.text()}", "alert": data}


@dataclass
class Raised:
    """What :func:`raise_alert` did: the row id (None when not recorded), whether it was new, and delivery."""

    alert_id: int | None
    new: bool
    notified_ok: bool | None = None
    targets: list[str] = field(default_factory=list)
    error: str | None = None


# ----------------------------------------------------------------------------------------------- record + send
def _record(alert: Alert, dsn: str | None) -> tuple[int | None, bool]:
    from pipelines import db

    with db.transaction(dsn) as cur:
        cur.execute(
            """INSERT INTO alerts (kind, severity, pipeline, dag_id, task_id, map_index, try_number, run_id,
                                   logical_date, registry_run_id, message, details, dedup_key)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (dedup_key) DO NOTHING RETURNING id""",
            (alert.kind, alert.severity, alert.pipeline, alert.dag_id, alert.task_id, alert.map_index,
             alert.try_number, alert.run_id, alert.logical_date, alert.registry_run_id,
             _clean(alert.message), json.dumps(alert.details, default=str).replace("\\u0000", "\u2400"),
             alert.dedup_key))
        row = cur.fetchone()
        if row is not None:
            return row[0], True
        cur.execute("SELECT id FROM alerts WHERE dedup_key = %s", (alert.dedup_key,))
        existing = cur.fetchone()
        return (existing[0] if existing else None), False


def _clean(text: str) -> str:
    """Text safe for PostgreSQL (no NUL) and for people (other control characters made visible)."""
    return "".join(c if c in "\t\n\r" or ord(c) >= 32 else "\u2400" for c in text)


def _send(alert: Alert, note: str | None = None) -> tuple[bool | None, list[str], str | None]:
    from pipelines.ops import targets as delivery

    try:
        found = delivery.configured_targets()
    except Exception as exc:  # a misconfigured target must not hide the alert: it stays recorded, with why
        return False, [], f"alert targets misconfigured: {exc}"
    if not found:
        return None, [], None
    text = alert.text() + (f"\n\n{note}" if note else "")
    payload = alert.payload()
    if note:
        payload["note"] = note
    errors = []
    for target in found:
        try:
            delivery.deliver(target, alert.subject, text, payload)
        except Exception as exc:  # every target gets its chance; the failures are recorded on the row
            log.warning("alert %s not delivered to %s: %s", alert.dedup_key, target.label, exc)
            errors.append(f"{target.label}: {exc}")
    return not errors, [t.label for t in found], "; ".join(errors) or None


def raise_alert(alert: Alert, dsn: str | None = None) -> Raised:
    """Record the alert (once per ``dedup_key``) and send it to every configured target; never raises.

    A duplicate is neither recorded nor sent again. When the row cannot be written, the message is still
    sent, saying so.
    """
    from pipelines import db

    try:
        alert_id, new = _record(alert, dsn)
    except Exception as exc:
        log.error("alert %s could not be recorded (%s); sending it anyway", alert.dedup_key, exc)
        ok, labels, error = _send(alert, note=f"(this alert could not be recorded in the alerts table: {exc})")
        return Raised(alert_id=None, new=True, notified_ok=ok, targets=labels, error=error)
    if not new:
        log.info("alert %s was raised before (id %s): not sent again", alert.dedup_key, alert_id)
        return Raised(alert_id=alert_id, new=False)
    log.warning("ALERT %s", alert.subject)
    ok, labels, error = _send(alert)
    try:
        with db.transaction(dsn) as cur:
            cur.execute("""UPDATE alerts SET notified_ok = %s, notified_at = CASE WHEN %s THEN now() END,
                               notify_targets = %s, notify_error = %s WHERE id = %s""",
                        (ok, bool(labels), labels or None, error, alert_id))
    except Exception as exc:
        log.error("alert %s: delivery outcome not recorded: %s", alert.dedup_key, exc)
    return Raised(alert_id=alert_id, new=True, notified_ok=ok, targets=labels, error=error)


# ----------------------------------------------------------------------------------------------- task failures
def error_tail(error: BaseException | str | None) -> str | None:
    """The error's last lines (its traceback when there is one), bounded."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
    else:
        lines = str(error).rstrip().splitlines()
    return _clean("\n".join(lines[-ERROR_LINES:])[-ERROR_CHARS:])


def _ti_value(ti: Any, name: str) -> Any:
    try:
        return getattr(ti, name, None)
    except Exception:  # a lazily loaded attribute of a detached instance
        return None


def from_task_failure(context: Mapping[str, Any]) -> Alert:
    """The alert of a task that failed for good (what ``on_failure_callback`` receives)."""
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    dag_id = _ti_value(ti, "dag_id") or getattr(context.get("dag"), "dag_id", None)
    task_id = _ti_value(ti, "task_id") or getattr(task, "task_id", None)
    run_id = _ti_value(ti, "run_id") or getattr(context.get("dag_run"), "run_id", None)
    map_index = _ti_value(ti, "map_index")
    try_number = _ti_value(ti, "try_number")
    retries = getattr(task, "retries", None)
    exhausted = bool(retries) and try_number is not None and try_number > retries
    logical_date = context.get("logical_date")
    error = context.get("exception")
    kind = "retries_exhausted" if exhausted else "task_failed"
    what = (f"failed after {try_number} tries (retries exhausted)" if exhausted
            else "failed without retry" if retries else "failed")
    label = f"{dag_id}.{task_id}" + (f"[{map_index}]" if map_index is not None and map_index >= 0 else "")
    tail = error_tail(error)
    first = tail.splitlines()[-1] if tail else "no error message"
    log_url = _ti_value(ti, "log_url")
    if not log_url and dag_id and run_id and task_id:
        log_url = (f"{config.airflow_base_url()}/dags/{dag_id}/runs/{quote(str(run_id), safe='')}/tasks/{task_id}"
                   + (f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""))
    return Alert(
        kind=kind, severity="error", message=f"Task {label} {what}: {first[:300]}",
        dedup_key=f"task:{dag_id}:{run_id}:{task_id}:{map_index if map_index is not None else -1}:{try_number}",
        dag_id=dag_id, task_id=task_id, map_index=map_index, try_number=try_number, run_id=run_id,
        logical_date=logical_date if isinstance(logical_date, datetime) else None,
        details={"log_url": log_url, "error": tail, "retries": retries,
                 "error_type": type(error).__name__ if isinstance(error, BaseException) else None})


# ----------------------------------------------------------------------------------------------- DAG overruns
def from_overrun(context: Mapping[str, Any] | None, expected_s: float | None = None) -> Alert:
    """The alert of a DAG run still going past its expected time (the deadline callback's context)."""
    context = context or {}
    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id, run_id = run.get("dag_id"), run.get("dag_run_id") or run.get("run_id")
    logical = run.get("logical_date")
    if isinstance(logical, str):
        logical = datetime.fromisoformat(logical.replace("Z", "+00:00"))
    expected = f"{expected_s / 60:.0f} min" if expected_s else "its expected time"
    url = f"{config.airflow_base_url()}/dags/{dag_id}/runs/{quote(str(run_id), safe='')}" if dag_id else None
    return Alert(
        kind="dag_overrun", severity="warning",
        message=f"DAG run {dag_id} / {run_id} is still {run.get('state') or 'running'} after {expected} "
                f"(queued at {run.get('queued_at') or run.get('start_date')})",
        dedup_key=f"overrun:{dag_id}:{run_id}:{deadline.get('id') or ''}", dag_id=dag_id, run_id=run_id,
        logical_date=logical if isinstance(logical, datetime) else None,
        details={"page_url": url, "expected_s": expected_s, "deadline_time": deadline.get("deadline_time"),
                 "queued_at": run.get("queued_at"), "start_date": run.get("start_date")})


# ----------------------------------------------------------------------------------------------- data quality
def _airflow_env() -> dict[str, str | None]:
    return {"dag_id": os.environ.get("AIRFLOW_CTX_DAG_ID"), "run_id": os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"),
            "task_id": os.environ.get("AIRFLOW_CTX_TASK_ID")}


def check_quarantine_share(result: Any, max_bad_share: float, share: float | None = None,
                           dsn: str | None = None) -> Raised | None:
    """Warn when an accepted partition's bad share reached its warning level (below the rejection threshold).

    ``result`` is an :class:`~pipelines.ingest.IngestResult`; ``share`` the bad share the decision used when a
    pipeline computes its own (default: the result's row share). A rejected partition fails its task (and that
    failure alerts); an accepted one with a bad share at or above ``ratio × max_bad_share`` raises a warning.
    """
    if not result.accepted or not max_bad_share or max_bad_share <= 0:
        return None
    share = result.bad_share if share is None else float(share)
    level = config.quarantine_warn_ratio() * max_bad_share
    if result.rows_bad == 0 or share < level:
        return None
    top = sorted(((n, r) for r, n in result.reasons.items() if r not in set(result.benign_reasons)), reverse=True)
    reasons = ", ".join(f"{r} {n}" for n, r in top[:5])
    env = _airflow_env()
    return raise_alert(Alert(
        kind="quarantine_share", severity="warning",
        message=f"{result.pipeline} {result.partition}: {share:.2%} of rows quarantined as bad "
                f"(warning level {level:.2%}, rejected past {max_bad_share:.2%}); top reasons: {reasons}",
        dedup_key=f"quarantine:{result.pipeline}:{result.partition}:{result.run_id}", pipeline=result.pipeline,
        dag_id=env["dag_id"], task_id=env["task_id"], run_id=env["run_id"], registry_run_id=result.run_id,
        details={"partition": result.partition, "rows_read": result.rows_read, "rows_valid": result.rows_valid,
                 "rows_bad": result.rows_bad, "bad_share": share, "warn_level": level,
                 "max_bad_share": max_bad_share, "reasons": dict(result.reasons),
                 "page_url": f"{config.airflow_base_url()}{config.URL_PREFIX}/pipelines/{result.pipeline}/quality"}),
        dsn)


# ----------------------------------------------------------------------------------------------- model quality
def _overall(cur, run_id: str, metric: str) -> float | None:
    cur.execute("SELECT value FROM run_metrics WHERE run_id = %s AND name = %s AND segment = ''", (run_id, metric))
    row = cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _reference_run(cur, item: catalog.PipelineInfo, run: Mapping[str, Any]) -> tuple[dict | None, str]:
    """The run a new one is compared with: the promoted run of its model, or (``compare_with="previous"``)
    its previous successful run of the same kind and model."""
    cur.execute("""SELECT r.run_id, r.model_version FROM model_promotions p JOIN runs r USING (run_id)
                   WHERE p.pipeline = %s AND p.model_name = %s AND p.alias = 'production'""",
                (run["pipeline"], run["model_name"]))
    row = cur.fetchone()
    if row is not None:
        return {"run_id": str(row[0]), "model_version": row[1]}, "promoted"
    if item.compare_with != "previous":
        return None, ""
    cur.execute("""SELECT run_id, model_version FROM runs
                   WHERE pipeline = %s AND kind = %s AND model_name IS NOT DISTINCT FROM %s AND status = 'success'
                     AND run_id <> %s AND started_at < %s
                   ORDER BY started_at DESC LIMIT 1""",
                (run["pipeline"], run["kind"], run["model_name"], run["run_id"], run["started_at"]))
    row = cur.fetchone()
    return ({"run_id": str(row[0]), "model_version": row[1]}, "previous") if row else (None, "")


def check_metric_drop(run_id: str, dsn: str | None = None) -> Raised | None:
    """Alert when a successful train/evaluate run's primary metric is worse than its reference (the promoted
    version of the same model) by more than the pipeline's tolerance, relative to the reference."""
    from pipelines import db

    with db.transaction(dsn) as cur:
        rows = db.fetch_dicts(cur, "SELECT run_id, pipeline, kind, model_name, model_version, status, started_at, "
                                   "airflow_dag_id, airflow_run_id FROM runs WHERE run_id = %s", (run_id,))
        if not rows or rows[0]["status"] != "success" or rows[0]["kind"] not in ("train", "evaluate"):
            return None
        run = rows[0]
        item = catalog.info(run["pipeline"])
        if not item.metric or not run["model_name"]:
            return None
        value = _overall(cur, run_id, item.metric)
        reference, why = _reference_run(cur, item, run)
        if value is None or reference is None or reference["run_id"] == str(run_id):
            return None
        baseline = _overall(cur, reference["run_id"], item.metric)
    if baseline is None:
        return None
    worse = (baseline - value) if item.higher_is_better else (value - baseline)
    tolerance = config.metric_tolerance(run["pipeline"])
    relative = worse / max(abs(baseline), 1e-12)
    if relative <= tolerance:
        return None
    direction = "higher" if item.higher_is_better else "lower"
    return raise_alert(Alert(
        kind="metric_drop", severity="warning",
        message=f"{run['pipeline']} {run['model_name']} {run['model_version']}: {item.metric} {value:.4g} is "
                f"{relative:.1%} worse than the {why} version {reference['model_version']} ({baseline:.4g}; "
                f"{direction} is better, tolerance {tolerance:.1%})",
        dedup_key=f"metric:{run_id}", pipeline=run["pipeline"], dag_id=run["airflow_dag_id"],
        run_id=run["airflow_run_id"], registry_run_id=str(run_id), task_id=_airflow_env()["task_id"],
        details={"metric": item.metric, "value": value, "reference": baseline, "reference_run": reference["run_id"],
                 "reference_version": reference["model_version"], "compared_with": why, "relative_drop": relative,
                 "tolerance": tolerance, "model_name": run["model_name"], "model_version": run["model_version"],
                 "page_url": f"{config.airflow_base_url()}{config.URL_PREFIX}/runs/{run_id}"}), dsn)

"""The operations page's reads: read-only, parameterised SQL over the registry, the ingest contract's tables,
the alerts and the serving tables, plus the CSV export streamed out of PostgreSQL with ``COPY ... TO STDOUT``.

Every function takes a cursor of a read-only transaction (:func:`connect_readonly`); identifiers (table and
column names) only ever come from the catalogue (:mod:`pipelines.ops.catalog`) or the database's own
information schema, quoted as identifiers, never from a request.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from pipelines import db
from pipelines.ops import catalog

log = logging.getLogger(__name__)

#: Row limits of the page (the seed's views cap a preview at 1,000 rows).
MAX_PREVIEW_ROWS = 1000
MAX_PAGE_ROWS = 500
#: Statement timeout of the page's queries: a slow query fails with a message instead of hanging the page.
STATEMENT_TIMEOUT_MS = 30_000


def connect_readonly(dsn: str, timeout_ms: int = STATEMENT_TIMEOUT_MS):
    """A connection whose transactions are read-only (PostgreSQL refuses any write) with a statement timeout."""
    import psycopg2

    return psycopg2.connect(dsn, application_name="ubm-ops-page",
                            options=f"-c default_transaction_read_only=on -c statement_timeout={int(timeout_ms)} "
                                    "-c TimeZone=UTC")


def existing_tables(cur, names: Iterable[str]) -> set[str]:
    """Which of these tables exist (pipelines still being built may not have theirs yet)."""
    names = list(dict.fromkeys(names))
    if not names:
        return set()
    cur.execute("SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL", (names,))
    return {r[0] for r in cur.fetchall()}


def schema_revision(cur) -> str | None:
    if not existing_tables(cur, ["pipelines_schema_version"]):
        return None
    cur.execute("SELECT version_num FROM pipelines_schema_version")
    row = cur.fetchone()
    return row[0] if row else None


# ----------------------------------------------------------------------------------------------- pipelines
def known_pipelines(cur) -> list[str]:
    """The catalogue's pipelines, then any other the registry has seen, in that order."""
    names = list(catalog.CATALOG)
    if "runs" in existing_tables(cur, ["runs"]):
        cur.execute("SELECT DISTINCT pipeline FROM runs ORDER BY 1")
        names += [r[0] for r in cur.fetchall() if r[0] not in catalog.CATALOG]
    return names


def pipeline_dags(cur, pipeline: str) -> list[str]:
    """The DAGs of a pipeline: the catalogue's and any other its runs were made by."""
    dags = list(catalog.info(pipeline).dags)
    cur.execute("SELECT DISTINCT airflow_dag_id FROM runs WHERE pipeline = %s AND airflow_dag_id IS NOT NULL",
                (pipeline,))
    return dags + sorted(r[0] for r in cur.fetchall() if r[0] not in dags)


def dags_by_pipeline(cur, pipelines: Sequence[str]) -> dict[str, list[str]]:
    """Every pipeline's DAGs in one query: the catalogue's and any other its runs were made by."""
    found = {p: list(catalog.info(p).dags) for p in pipelines}
    if "runs" in existing_tables(cur, ["runs"]):
        cur.execute("""SELECT pipeline, array_agg(DISTINCT airflow_dag_id) FROM runs
                       WHERE pipeline = ANY(%s) AND airflow_dag_id IS NOT NULL GROUP BY pipeline""", (list(pipelines),))
        for pipeline, dags in cur.fetchall():
            found[pipeline] += sorted(d for d in dags if d not in found[pipeline])
    return found


def overview(cur, pipelines: Sequence[str]) -> list[dict]:
    """One summary per pipeline: its last runs, promoted models, ingest health and recent alerts."""
    if not pipelines:
        return []
    have = existing_tables(cur, ["alerts", "ingest_partitions"])
    runs = {r["pipeline"]: r for r in db.fetch_dicts(cur, """
        SELECT pipeline, count(*) AS runs, max(started_at) AS last_run,
               count(*) FILTER (WHERE status = 'failed' AND started_at > now() - interval '7 days') AS failed_7d,
               count(*) FILTER (WHERE kind IN ('train', 'evaluate') AND status = 'success') AS model_runs
        FROM runs WHERE pipeline = ANY(%s) GROUP BY pipeline""", (list(pipelines),))}
    promoted: dict[str, list[dict]] = {}
    for r in db.fetch_dicts(cur, """
            SELECT p.pipeline, p.model_name, p.alias, p.promoted_at, r.model_version, r.run_id
            FROM model_promotions p JOIN runs r USING (run_id) WHERE p.pipeline = ANY(%s)
            ORDER BY p.promoted_at DESC""", (list(pipelines),)):
        promoted.setdefault(r["pipeline"], []).append(r)
    parts: dict[str, dict] = {}
    if "ingest_partitions" in have:
        parts = {r["pipeline"]: r for r in db.fetch_dicts(cur, """
            SELECT pipeline, count(*) FILTER (WHERE status = 'accepted') AS accepted,
                   count(*) FILTER (WHERE status = 'rejected') AS rejected,
                   count(*) FILTER (WHERE last_status = 'rejected' AND status = 'accepted') AS rejected_redrops,
                   max(partition_key) FILTER (WHERE status = 'accepted') AS last_accepted,
                   sum(rows_quarantined) AS rows_quarantined, sum(rows_read) AS rows_read
            FROM ingest_partitions WHERE pipeline = ANY(%s) GROUP BY pipeline""", (list(pipelines),))}
    alerts: dict[str, int] = {}
    if "alerts" in have:
        cur.execute("""SELECT pipeline, count(*) FROM alerts WHERE pipeline = ANY(%s)
                       AND created_at > now() - interval '7 days' GROUP BY pipeline""", (list(pipelines),))
        alerts = dict(cur.fetchall())
    out = []
    for name in pipelines:
        item = catalog.info(name)
        out.append({"name": name, "title": item.title, "metric": item.metric, "dags": list(item.dags),
                    "runs": runs.get(name, {}), "promoted": promoted.get(name, []),
                    "partitions": parts.get(name, {}), "alerts_7d": alerts.get(name, 0)})
    return out


# ----------------------------------------------------------------------------------------------- model versions
MODEL_RUN_COLUMNS = """r.run_id, r.pipeline, r.kind, r.model_name, r.model_version, r.status, r.params, r.summary,
    r.data_interval_start, r.data_interval_end, r.artifact_uri, r.airflow_dag_id, r.airflow_run_id, r.code_version,
    r.error, r.started_at, r.finished_at"""


def model_runs(cur, pipeline: str, limit: int = 200, kinds: Sequence[str] = ("train", "evaluate")) -> list[dict]:
    """A pipeline's training and evaluation runs, newest first, with their overall metrics and promotion."""
    return db.fetch_dicts(cur, f"""
        SELECT {MODEL_RUN_COLUMNS},
               COALESCE((SELECT jsonb_object_agg(m.name, m.value) FROM run_metrics m
                         WHERE m.run_id = r.run_id AND m.segment = ''), '{{}}'::jsonb) AS metrics,
               (SELECT array_agg(p.alias ORDER BY p.alias) FROM model_promotions p
                WHERE p.run_id = r.run_id AND p.pipeline = r.pipeline) AS promoted_as
        FROM runs r WHERE r.pipeline = %s AND r.kind = ANY(%s)
        ORDER BY r.started_at DESC LIMIT %s""", (pipeline, list(kinds), limit))


def segment_metrics(cur, run_ids: Sequence[str]) -> list[dict]:
    """Every metric of these runs for the segments that compare models: overall, ``model=<name>``, ``oracle``."""
    if not run_ids:
        return []
    return db.fetch_dicts(cur, """
        SELECT run_id::text AS run_id, segment, name, value FROM run_metrics
        WHERE run_id = ANY(%s::uuid[]) AND (segment = '' OR segment = 'oracle' OR segment LIKE 'model=%%')""",
                          (list(run_ids),))


def promotions(cur, pipeline: str) -> list[dict]:
    return db.fetch_dicts(cur, """
        SELECT p.model_name, p.alias, p.run_id::text AS run_id, p.promoted_at, p.promoted_by, r.model_version,
               r.finished_at AS trained_at
        FROM model_promotions p JOIN runs r USING (run_id) WHERE p.pipeline = %s
        ORDER BY p.model_name, p.alias""", (pipeline,))


def run_detail(cur, run_id: str) -> dict | None:
    rows = db.fetch_dicts(cur, f"""
        SELECT {MODEL_RUN_COLUMNS},
               (SELECT array_agg(p.alias ORDER BY p.alias) FROM model_promotions p
                WHERE p.run_id = r.run_id) AS promoted_as
        FROM runs r WHERE r.run_id = %s""", (run_id,))
    if not rows:
        return None
    run = rows[0]
    run["segments"] = {}
    for m in db.fetch_dicts(cur, "SELECT segment, name, value FROM run_metrics WHERE run_id = %s "
                                 "ORDER BY segment, name", (run_id,)):
        run["segments"].setdefault(m["segment"], {})[m["name"]] = m["value"]
    return run


def _model_of_segment(segment: str) -> str | None:
    if segment == "oracle":
        return "oracle"
    if segment.startswith("model="):
        return segment[len("model="):]
    return None


@dataclass
class Comparison:
    """Each training (a model version, or a pipeline's own training id) with every model's metrics beside
    its baselines and the oracle, oldest first: what the comparison chart and table show."""

    metric: str | None
    higher_is_better: bool
    trainings: list[dict] = field(default_factory=list)  # {"key", "started_at", "models": {name: {metric: v}}}
    models: list[str] = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)

    def series(self, metric: str | None = None) -> dict[str, list[float | None]]:
        metric = metric or self.metric
        return {m: [t["models"].get(m, {}).get(metric) for t in self.trainings] for m in self.models}


def build_comparison(item: catalog.PipelineInfo, runs: Sequence[dict], metrics: Sequence[dict],
                     last: int = 12) -> Comparison:
    """Fold runs and their segment metrics into trainings × models. A run's overall metrics belong to its own
    model; its ``model=<name>`` segments to the baselines and peers evaluated beside it, ``oracle`` to the
    ceiling. A model's own run wins over another run's view of it."""
    by_run: dict[str, dict[str, dict[str, float]]] = {}
    for m in metrics:
        by_run.setdefault(m["run_id"], {}).setdefault(m["segment"], {})[m["name"]] = m["value"]
    trainings: dict[str, dict] = {}
    own: dict[tuple[str, str], bool] = {}
    for run in sorted((r for r in runs if r["status"] == "success"), key=lambda r: r["started_at"]):
        params = run.get("params") or {}
        key = (params.get(item.training_param) if item.training_param else None) or run["model_version"] \
            or f"{run['kind']}-{str(run['run_id'])[:8]}"
        label = (params.get(item.model_param) if item.model_param else None) or run["model_name"] or run["kind"]
        entry = trainings.setdefault(key, {"key": key, "started_at": run["started_at"], "models": {},
                                           "runs": {}, "kind": run["kind"]})
        entry["started_at"] = max(entry["started_at"], run["started_at"])
        segments = by_run.get(str(run["run_id"]), {})
        for segment, values in segments.items():
            model = label if segment == "" else _model_of_segment(segment)
            if model is None:
                continue
            mine = segment == ""
            if mine and own.get((key, model)):  # another run of the same model and training (e.g. fit, evaluate)
                entry["models"][model].update(values)
            elif mine or not own.get((key, model)):
                entry["models"][model] = dict(values)
                own[(key, model)] = own.get((key, model), False) or mine
            if mine:
                entry["runs"][model] = str(run["run_id"])
    ordered = sorted(trainings.values(), key=lambda t: t["started_at"])[-last:]
    models: list[str] = []
    names: set[str] = set()
    for t in ordered:
        for model, values in t["models"].items():
            if model not in models:
                models.append(model)
            names |= {k for k, v in values.items() if v is not None}
    models = [m for m in models if m != "oracle"] + (["oracle"] if "oracle" in models else [])
    metric = item.metric if item.metric in names else (sorted(names)[0] if names else None)
    return Comparison(metric=metric, higher_is_better=item.higher_is_better, trainings=ordered, models=models,
                      metric_names=sorted(names))


# ----------------------------------------------------------------------------------------------- data quality
def ingest_runs(cur, pipeline: str, limit: int = 120) -> list[dict]:
    """Every ingest run (each DAG run's attempt at a partition), newest first: rows read, valid (staged) and
    quarantined, the bad share, the reasons, and the DAG run that made it."""
    rows = db.fetch_dicts(cur, """
        SELECT r.run_id::text AS run_id, r.status, r.error, r.started_at, r.finished_at, r.airflow_dag_id,
               r.airflow_run_id, r.params->>'partition' AS partition_key,
               (r.params->>'max_bad_share')::float AS max_bad_share,
               COALESCE((SELECT jsonb_object_agg(m.name, m.value) FROM run_metrics m
                         WHERE m.run_id = r.run_id AND m.segment = ''), '{}'::jsonb) AS metrics,
               COALESCE((SELECT jsonb_object_agg(substr(m.name, 13), m.value) FROM run_metrics m
                         WHERE m.run_id = r.run_id AND m.segment LIKE 'partition=%%'
                           AND m.name LIKE 'quarantined\\_%%'), '{}'::jsonb) AS reasons
        FROM runs r WHERE r.pipeline = %s AND r.kind = 'ingest'
        ORDER BY r.started_at DESC LIMIT %s""", (pipeline, limit))
    for r in rows:
        m = r["metrics"]
        r.update({k: m.get(k) for k in ("rows_read", "rows_valid", "rows_quarantined", "rows_bad", "bad_share")})
        r["top_reasons"] = sorted(r["reasons"].items(), key=lambda kv: -kv[1])[:3]
    return rows


def partitions(cur, pipeline: str, limit: int = 120) -> list[dict]:
    """The ingest contract's partition rows (what readers see), newest key first."""
    if "ingest_partitions" not in existing_tables(cur, ["ingest_partitions"]):
        return []
    return db.fetch_dicts(cur, """
        SELECT partition_key, status, run_id::text AS run_id, files, rows_read, rows_valid, rows_quarantined,
               bad_share, reasons, error, last_status, last_run_id::text AS last_run_id, last_error,
               last_attempt_at, updated_at, staged_uri
        FROM ingest_partitions WHERE pipeline = %s ORDER BY partition_key DESC LIMIT %s""", (pipeline, limit))


def quarantine_reasons(cur, pipeline: str) -> list[str]:
    """The reasons a pipeline's partitions carry (from the small partitions table, not the quarantine)."""
    if "ingest_partitions" not in existing_tables(cur, ["ingest_partitions"]):
        return []
    cur.execute("""SELECT DISTINCT k FROM ingest_partitions, jsonb_object_keys(reasons) AS k
                   WHERE pipeline = %s ORDER BY 1""", (pipeline,))
    return [r[0] for r in cur.fetchall()]


def quarantine_page(cur, pipeline: str, reason: str | None = None, partition: str | None = None,
                    before_id: int | None = None, limit: int = 50) -> tuple[list[dict], int | None]:
    """One page of quarantined rows, newest first (keyset paging on ``id``); returns the rows and the id to
    continue before (None on the last page)."""
    rows = db.fetch_dicts(cur, """
        SELECT id, partition_key, source, reason, detail, record::text AS record, run_id::text AS run_id,
               quarantined_at
        FROM quarantine
        WHERE pipeline = %(p)s AND (%(reason)s::text IS NULL OR reason = %(reason)s)
          AND (%(part)s::text IS NULL OR partition_key = %(part)s)
          AND (%(before)s::bigint IS NULL OR id < %(before)s)
        ORDER BY id DESC LIMIT %(n)s""",
                          {"p": pipeline, "reason": reason, "part": partition, "before": before_id, "n": limit + 1})
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


# ----------------------------------------------------------------------------------------------- alerts
def alerts_page(cur, pipelines: Sequence[str] | None, dags: Sequence[str] | None = None, kind: str | None = None,
                severity: str | None = None, pipeline: str | None = None, before_id: int | None = None,
                limit: int = 50) -> tuple[list[dict], int | None]:
    """Alerts newest first, restricted to what the viewer may see: the given pipelines, or alerts of the
    given DAGs (``None`` = no restriction on that side)."""
    if "alerts" not in existing_tables(cur, ["alerts"]):
        return [], None
    rows = db.fetch_dicts(cur, """
        SELECT id, kind, severity, pipeline, dag_id, task_id, map_index, try_number, run_id, logical_date,
               registry_run_id::text AS registry_run_id, message, details, created_at, notified_ok, notified_at,
               notify_targets, notify_error
        FROM alerts
        WHERE (%(visible)s::text[] IS NULL OR pipeline = ANY(%(visible)s) OR dag_id = ANY(%(dags)s))
          AND (%(kind)s::text IS NULL OR kind = %(kind)s)
          AND (%(severity)s::text IS NULL OR severity = %(severity)s)
          AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
          AND (%(before)s::bigint IS NULL OR id < %(before)s)
        ORDER BY id DESC LIMIT %(n)s""",
                          {"visible": None if pipelines is None else list(pipelines), "dags": list(dags or []),
                           "kind": kind, "severity": severity, "pipeline": pipeline, "before": before_id,
                           "n": limit + 1})
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


# ----------------------------------------------------------------------------------------------- serving tables
def table_columns(cur, table: str) -> list[tuple[str, str]]:
    """``(column, type)`` of a table, in order (empty when it does not exist)."""
    cur.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                   WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
                   ORDER BY a.attnum""", (table,))
    return [(r[0], r[1]) for r in cur.fetchall()]


def _order(table: catalog.ServingTable, columns: Sequence[str]) -> sql.Composable:
    keys = [c for c in table.order if c in columns] or [columns[0]]
    return sql.SQL(", ").join(sql.Identifier(c) for c in keys)


def serving_rows(cur, table: catalog.ServingTable, search: Any = None,
                 limit: int = 50) -> tuple[list[str], list[tuple]]:
    """The first rows of a serving table in key order, or the rows whose key equals ``search`` (for a text key,
    also the rows whose key starts with it). ``search`` is already validated and typed by the caller."""
    cols = [c for c, _ in table_columns(cur, table.table)]
    if not cols:
        return [], []
    query = sql.SQL("SELECT {cols} FROM {table} {where} ORDER BY {order} LIMIT %(n)s")
    where = sql.SQL("")
    params: dict[str, Any] = {"n": min(int(limit), MAX_PREVIEW_ROWS)}
    if search is not None and table.key in cols:
        if table.key_type == "text":
            where = sql.SQL("WHERE {k} = %(v)s OR {k} LIKE %(prefix)s").format(k=sql.Identifier(table.key))
            escaped = str(search).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.update(v=search, prefix=escaped + "%")
        else:
            where = sql.SQL("WHERE {k} = %(v)s").format(k=sql.Identifier(table.key))
            params["v"] = search
    cur.execute(query.format(cols=sql.SQL(", ").join(map(sql.Identifier, cols)), table=sql.Identifier(table.table),
                             where=where, order=_order(table, cols)), params)
    return cols, cur.fetchall()


def serving_count(cur, table: str) -> int | None:
    """The planner's row estimate (instant on any size; exact counts of large tables are not)."""
    cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (table,))
    row = cur.fetchone()
    return None if row is None or row[0] < 0 else int(row[0])


class _Sink:
    """What ``copy_expert`` writes into (one row per write): rows are gathered into chunks of about
    ``chunk_bytes`` that go to a bounded queue (back-pressure: COPY waits while the client is slow); a
    cancelled export makes the next write raise, which aborts the COPY."""

    def __init__(self, chunks: queue.Queue, cancelled: threading.Event, chunk_bytes: int = 64 * 1024) -> None:
        self.chunks, self.cancelled, self.chunk_bytes = chunks, cancelled, chunk_bytes
        self.buffer = bytearray()

    def write(self, data: bytes | str) -> int:
        self.buffer += data if isinstance(data, bytes) else data.encode()
        if len(self.buffer) >= self.chunk_bytes:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self.buffer:
            return
        chunk, self.buffer = bytes(self.buffer), bytearray()
        while True:
            if self.cancelled.is_set():
                raise OSError("export cancelled by the client")
            try:
                self.chunks.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue


_DONE = object()


def export_csv(dsn: str, table: catalog.ServingTable, max_queued: int = 8) -> Iterator[bytes]:
    """Every row of a serving table as CSV (a header, then rows in key order), streamed from PostgreSQL.

    ``COPY (SELECT ...) TO STDOUT`` runs in a thread writing 64 KB chunks into a queue of at most
    ``max_queued`` of them: memory stays flat (well under 1 MB in flight) whatever the table's size. Closing the
    iterator early (the client went away) cancels the COPY.
    """
    chunks: queue.Queue = queue.Queue(maxsize=max_queued)
    cancelled = threading.Event()
    failure: list[BaseException] = []

    conn = connect_readonly(dsn, timeout_ms=0)  # an export of a large table may take longer than a page query
    with conn.cursor() as cur:
        cols = [c for c, _ in table_columns(cur, table.table)]
    if not cols:
        conn.close()
        raise LookupError(f"table {table.table} does not exist")
    statement = sql.SQL(
        "COPY (SELECT {cols} FROM {table} ORDER BY {order}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)), table=sql.Identifier(table.table),
        order=_order(table, cols)).as_string(conn)

    def produce() -> None:
        try:
            sink = _Sink(chunks, cancelled)
            with conn.cursor() as cur:
                cur.copy_expert(statement, sink, size=64 * 1024)
            sink.flush()
            conn.rollback()
        except BaseException as exc:  # handed to the consumer, which raises it
            if not cancelled.is_set():
                failure.append(exc)
        finally:
            conn.close()
            while True:
                try:
                    chunks.put(_DONE, timeout=0.5)
                    break
                except queue.Full:
                    if cancelled.is_set():
                        break

    worker = threading.Thread(target=produce, name=f"ops-export-{table.table}", daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is _DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        cancelled.set()
        while worker.is_alive():  # drain so a blocked writer sees the cancellation
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
            worker.join(timeout=0.1)

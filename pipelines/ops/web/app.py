"""The operations page: a FastAPI app the Airflow plugin mounts in Airflow's own API server.

Pages (HTML, server-rendered, charts as inline SVG) and the same data as JSON under ``/api``:

==============================================  ===========================================================
``/``                                           every pipeline: last runs, promoted models, ingest health
``/pipelines/{p}``                              model versions (metrics, Params, interval, DAG run, task log,
                                                report, promotion) and every training's models side by side
``/pipelines/{p}/quality``                      rows read, valid and quarantined per DAG run, bad days marked
``/pipelines/{p}/quarantine``                   the quarantine browser (reason, raw record, day), paged
``/pipelines/{p}/data``                         seed 001's *Analyse*: a data set's first rows (≤ 1,000)
``/pipelines/{p}/predictions``                  seed 001's *Evaluate*: latest predictions, search, CSV export
``/runs/{run_id}``, ``/runs/{run_id}/report``   one run, and its self-contained HTML report
``/alerts``                                     every alert, what was sent where
==============================================  ===========================================================

Every route depends on Airflow's authentication (:mod:`pipelines.ops.web.auth`); every query runs in a
read-only transaction (:func:`pipelines.ops.queries.connect_readonly`); every path and query parameter is
validated before it reaches SQL (4xx with the reason otherwise).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from pipelines.ops import catalog, config, datasets, queries, svg
from pipelines.ops.templating import STATIC, render
from pipelines.ops.web.auth import Viewer, current_viewer

log = logging.getLogger(__name__)

PARTITION_RE = re.compile(r"^[A-Za-z0-9_.:=-]{1,100}$")
_DSN_CACHE: dict[str, tuple[float, str | None]] = {}


# ----------------------------------------------------------------------------------------------- database
def ops_dsn() -> str:
    """The pipelines' database: ``PIPELINES_PG_DSN`` / ``AIRFLOW_CONN_PIPELINES_POSTGRES``, else the connection
    ``pipelines_postgres`` as Airflow's API server knows it (metadata DB or secrets backend; cached a minute),
    else, in development mode only, the embedded server."""
    from pipelines.settings import PG_CONN_ID, _postgres_uri_from_conn, configured_pg_dsn, pg_dsn

    dsn = configured_pg_dsn()
    if dsn:
        return dsn
    cached = _DSN_CACHE.get(PG_CONN_ID)
    if cached is None or time.monotonic() - cached[0] > 60:
        found = None
        try:
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(PG_CONN_ID)
            found = _postgres_uri_from_conn({"uri": conn.get_uri()})
        except Exception as exc:  # not defined: fall through to development mode (or a clear 503)
            log.debug("connection %s not found in Airflow: %s", PG_CONN_ID, exc)
        cached = _DSN_CACHE[PG_CONN_ID] = (time.monotonic(), found)
    return cached[1] or pg_dsn()


def db_cursor() -> Iterator[Any]:
    try:
        conn = queries.connect_readonly(ops_dsn())
    except Exception as exc:
        log.error("operations page: the pipelines database is unreachable: %s", exc)
        raise HTTPException(503, f"the pipelines database is unreachable ({type(exc).__name__}); "
                                 "check PIPELINES_PG_DSN or the Airflow connection pipelines_postgres") from exc
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------- helpers
def _visible(cur, viewer: Viewer) -> list[str]:
    names = queries.known_pipelines(cur)
    dags = queries.dags_by_pipeline(cur, names)
    return [p for p in names if viewer.can_see(dags[p])]


def _pipeline(cur, viewer: Viewer, pipeline: str) -> catalog.PipelineInfo:
    """The requested pipeline; 404 for a malformed, unknown or invisible one (indistinguishable on purpose)."""
    if not catalog.valid_name(pipeline) or pipeline not in _visible(cur, viewer):
        raise HTTPException(404, f"no pipeline {pipeline[:80]!r} (or you may not read any of its DAGs)")
    return catalog.info(pipeline)


def _run_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise HTTPException(422, f"{text[:80]!r} is not a run id (a UUID)") from None


def _roots(request: Request) -> tuple[str, str]:
    """(this app's root path, Airflow's root path) as the browser sees them."""
    base = (request.scope.get("root_path") or "").rstrip("/")
    airflow = base[: -len(config.URL_PREFIX)] if base.endswith(config.URL_PREFIX) else ""
    return base, airflow


def _links(airflow: str):
    def dag(dag_id: str | None) -> str | None:
        return f"{airflow}/dags/{quote(dag_id, safe='')}" if dag_id else None

    def dag_run(dag_id: str | None, run_id: str | None) -> str | None:
        return f"{dag(dag_id)}/runs/{quote(run_id, safe='')}" if dag_id and run_id else None

    def task(dag_id: str | None, run_id: str | None, task: dict | None) -> str | None:
        if not task or not dag_run(dag_id, run_id):
            return None
        mapped = f"/mapped/{task['map_index']}" if task.get("map_index") not in (None, -1) else ""
        return f"{dag_run(dag_id, run_id)}/tasks/{quote(task['task_id'], safe='')}{mapped}"

    return {"dag": dag, "dag_run": dag_run, "task": task}


def _page(request: Request, viewer: Viewer, cur, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    base, airflow = _roots(request)
    html = render(template, base=base, airflow=airflow, link=_links(airflow), viewer=viewer,
                  nav=_visible(cur, viewer) if cur is not None else [], catalog=catalog, request_path=request.url.path,
                  qs=lambda **kw: urlencode({k: v for k, v in kw.items() if v not in (None, "")}), **ctx)
    return HTMLResponse(html, status_code=status_code)


def _json(data: Any) -> JSONResponse:
    return JSONResponse(jsonable_encoder(data))


def _search_value(table: catalog.ServingTable, q: str | None) -> Any:
    """A searched key, typed for its column (a clear 422 otherwise)."""
    if q is None or q.strip() == "":
        return None
    q = q.strip()
    if any(ord(c) < 32 for c in q):
        raise HTTPException(422, "the search may not contain control characters")
    if table.key_type == "bigint":
        if not re.fullmatch(r"-?\d{1,19}", q):
            raise HTTPException(422, f"{table.label} must be an integer, got {q[:40]!r}")
        return int(q)
    if table.key_type == "date":
        try:
            return date.fromisoformat(q)
        except ValueError:
            raise HTTPException(422, f"{table.label} must be a day (YYYY-MM-DD), got {q[:40]!r}") from None
    if len(q) > 200:
        raise HTTPException(422, "the search is longer than 200 characters")
    return q


def _serving_table(cur, item: catalog.PipelineInfo, name: str | None) -> tuple[list, catalog.ServingTable | None]:
    present = queries.existing_tables(cur, [t.table for t in item.tables])
    tables = [t for t in item.tables if t.table in present]
    if name:
        chosen = next((t for t in tables if t.table == name), None)
        if chosen is None:
            raise HTTPException(404, f"{item.name} has no serving table {name[:80]!r}"
                                     + (" yet" if any(t.table == name for t in item.tables) else ""))
        return tables, chosen
    return tables, (tables[0] if tables else None)


# ----------------------------------------------------------------------------------------------- view models
def models_view(cur, item: catalog.PipelineInfo, metric: str | None, training: str | None,
                limit: int = 200) -> dict[str, Any]:
    from pipelines.ops.web.airflow_meta import task_of_runs

    runs = queries.model_runs(cur, item.name, limit)
    ids = [str(r["run_id"]) for r in runs if r["status"] == "success"][:120]
    comparison = queries.build_comparison(item, runs, queries.segment_metrics(cur, ids))
    if metric is not None and metric not in comparison.metric_names:
        raise HTTPException(422, f"{item.name} recorded no metric {metric[:80]!r}; known: "
                                 f"{', '.join(comparison.metric_names[:30]) or 'none yet'}")
    metric = metric or comparison.metric
    keys = [t["key"] for t in comparison.trainings]
    if training is not None and training not in keys:
        raise HTTPException(404, f"no training {training[:80]!r} among the last {len(keys)} of {item.name}")
    selected = next((t for t in comparison.trainings if t["key"] == training), None) if training else \
        (comparison.trainings[-1] if comparison.trainings else None)
    series = comparison.series(metric)
    oracle = series.pop("oracle", None)
    chart = svg.grouped_bars(keys, series, ceiling=oracle, y_label=metric or "",
                             title=f"{item.title}: {metric or 'no metric'} of every model per training "
                                   f"({'higher' if item.higher_is_better else 'lower'} is better)") if metric else ""
    table_columns = [metric, *[m for m in comparison.metric_names if m != metric][:14]] if metric else []
    table_rows = []
    if selected:
        oracle_value = selected["models"].get("oracle", {}).get(metric)
        for model in comparison.models:
            values = selected["models"].get(model)
            if values is None:
                continue
            value = values.get(metric)
            share = value / oracle_value if value is not None and oracle_value and model != "oracle" \
                and item.higher_is_better else None
            table_rows.append({"model": model, "values": values, "share": share,
                               "run_id": selected["runs"].get(model)})
    return {"runs": runs, "comparison": comparison, "metric": metric, "chart": chart, "selected": selected,
            "table_columns": table_columns, "table_rows": table_rows, "promotions": queries.promotions(cur, item.name),
            "tasks": task_of_runs(runs)}


def quality_view(cur, item: catalog.PipelineInfo, limit: int = 200) -> dict[str, Any]:
    from pipelines.ops.web.airflow_meta import task_of_runs

    ingests = queries.ingest_runs(cur, item.name, limit)
    ratio = config.quarantine_warn_ratio()
    latest: dict[str, dict] = {}
    for r in ingests:  # newest first: the first seen is a partition's latest attempt
        if r["partition_key"] and r["partition_key"] not in latest:
            latest[r["partition_key"]] = r
    keys = sorted(latest)[-90:]
    valid, bad, benign, flags, shares = [], [], [], [], []
    for k in keys:
        r = latest[k]
        read, good = r["rows_read"] or 0, r["rows_valid"] or 0
        quarantined, bad_rows = r["rows_quarantined"] or 0, r["rows_bad"] or 0
        valid.append(good)
        bad.append(bad_rows)
        benign.append(max(quarantined - bad_rows, 0))
        share = r["bad_share"]
        limit_share = r["max_bad_share"]
        warn = share is not None and limit_share and share >= ratio * limit_share and bad_rows > 0
        flags.append("rejected" if r["status"] == "rejected" else "failed" if r["status"] == "failed"
                     else "warning" if warn else None)
        shares.append(share if read else None)
        r["flag"] = flags[-1]
    limits = [latest[k]["max_bad_share"] for k in keys if latest[k]["max_bad_share"] is not None]
    threshold = limits[-1] if limits else None
    for r in ingests:
        r["warn"] = (r["bad_share"] is not None and r["max_bad_share"] and r["rows_bad"]
                     and r["bad_share"] >= ratio * r["max_bad_share"] and r["status"] == "success")
    return {"ingests": ingests, "partitions": queries.partitions(cur, item.name), "warn_ratio": ratio,
            "rows_chart": svg.stacked_rows(keys, valid, bad, benign, flags,
                                           title=f"{item.title}: rows per partition (latest attempt)"),
            "share_chart": svg.share_line(keys, shares, warn=threshold * ratio if threshold else None,
                                          limit=threshold, title="Bad share per partition"),
            "tasks": task_of_runs(ingests)}


# ----------------------------------------------------------------------------------------------- parameters
ViewerDep = Annotated[Viewer, Depends(current_viewer)]
Cursor = Annotated[Any, Depends(db_cursor)]
KindQ = Annotated[str | None, Query(pattern="^(" + "|".join(
    ("task_failed", "retries_exhausted", "quarantine_share", "metric_drop", "dag_overrun", "test")) + ")$")]
SeverityQ = Annotated[str | None, Query(pattern="^(info|warning|error|critical)$")]
NameQ = Annotated[str | None, Query(pattern=catalog.NAME_RE.pattern)]
BeforeQ = Annotated[int | None, Query(ge=1)]
MetricQ = Annotated[str | None, Query(pattern=catalog.NAME_RE.pattern)]
PartitionQ = Annotated[str | None, Query(max_length=100)]
RowsQ = Annotated[int, Query(ge=1, le=datasets.MAX_ROWS)]
FileQ = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_.=-]+$")]
DatasetQ = Annotated[str | None, Query(max_length=140)]
TableQ = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
SearchQ = Annotated[str | None, Query(max_length=200)]


# ----------------------------------------------------------------------------------------------- the app
def create_app() -> FastAPI:
    """The app the plugin mounts at :data:`pipelines.ops.config.URL_PREFIX`."""

    app = FastAPI(title="Pipelines operations", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(current_viewer)])

    def _wants_html(request: Request) -> bool:
        return not request.url.path.startswith(f"{_roots(request)[0]}/api") and \
            "text/html" in request.headers.get("accept", "")

    @app.exception_handler(HTTPException)
    async def _errors(request: Request, exc: HTTPException) -> Response:
        if not _wants_html(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        base, airflow = _roots(request)
        html = render("error.html", base=base, airflow=airflow, status=exc.status_code, detail=exc.detail)
        return HTMLResponse(html, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if not _wants_html(request):
            return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
        base, airflow = _roots(request)
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
        return HTMLResponse(render("error.html", base=base, airflow=airflow, status=422, detail=detail),
                            status_code=422)

    @app.get("/static/ops.css", include_in_schema=False)
    def stylesheet() -> FileResponse:
        return FileResponse(STATIC / "ops.css", media_type="text/css", headers={"Cache-Control": "max-age=300"})

    # -- overview and alerts ---------------------------------------------------------------------------------
    def _targets() -> dict[str, Any]:
        try:
            from pipelines.ops.targets import configured_targets

            return {"targets": [t.label for t in configured_targets()], "error": None}
        except Exception as exc:
            return {"targets": [], "error": str(exc)}

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request, viewer: ViewerDep, cur: Cursor) -> HTMLResponse:
        visible = _visible(cur, viewer)
        alerts, _ = queries.alerts_page(cur, visible, limit=10)
        return _page(request, viewer, cur, "overview.html", pipelines=queries.overview(cur, visible), alerts=alerts,
                     revision=queries.schema_revision(cur), targets=_targets())

    @app.get("/api/pipelines")
    def api_overview(viewer: ViewerDep, cur: Cursor) -> JSONResponse:
        return _json({"pipelines": queries.overview(cur, _visible(cur, viewer)), "targets": _targets()})

    def _alerts(cur, viewer: Viewer, kind, severity, pipeline, before, limit):
        visible = _visible(cur, viewer)
        if pipeline is not None and pipeline not in visible:
            raise HTTPException(404, f"no pipeline {pipeline[:80]!r} (or you may not read any of its DAGs)")
        other_dags = []
        if "alerts" in queries.existing_tables(cur, ["alerts"]):
            cur.execute("SELECT DISTINCT dag_id FROM alerts WHERE pipeline IS NULL AND dag_id IS NOT NULL")
            other_dags = [r[0] for r in cur.fetchall() if viewer.can_read_dag(r[0])]
        return queries.alerts_page(cur, visible, other_dags, kind, severity, pipeline, before, limit)


    @app.get("/alerts", response_class=HTMLResponse)
    def alerts(request: Request, viewer: ViewerDep, cur: Cursor, kind: KindQ = None, severity: SeverityQ = None,
               pipeline: NameQ = None, before: BeforeQ = None,
               limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_ROWS)] = 50) -> HTMLResponse:
        rows, next_before = _alerts(cur, viewer, kind, severity, pipeline, before, limit)
        return _page(request, viewer, cur, "alerts.html", alerts=rows, next_before=next_before, kind=kind,
                     severity=severity, pipeline=pipeline, limit=limit, targets=_targets(),
                     has_table="alerts" in queries.existing_tables(cur, ["alerts"]))

    @app.get("/api/alerts")
    def api_alerts(viewer: ViewerDep, cur: Cursor, kind: KindQ = None, severity: SeverityQ = None,
                   pipeline: NameQ = None, before: BeforeQ = None,
                   limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_ROWS)] = 50) -> JSONResponse:
        rows, next_before = _alerts(cur, viewer, kind, severity, pipeline, before, limit)
        return _json({"alerts": rows, "next_before": next_before})

    # -- models -----------------------------------------------------------------------------------------------

    @app.get("/pipelines/{pipeline}", response_class=HTMLResponse)
    def models(request: Request, pipeline: str, viewer: ViewerDep, cur: Cursor, metric: MetricQ = None,
               training: MetricQ = None) -> HTMLResponse:
        item = _pipeline(cur, viewer, pipeline)
        view = models_view(cur, item, metric, training)
        return _page(request, viewer, cur, "models.html", item=item, tab="models", **view)

    @app.get("/api/pipelines/{pipeline}/versions")
    def api_versions(pipeline: str, viewer: ViewerDep, cur: Cursor,
                     limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_ROWS)] = 200) -> JSONResponse:
        item = _pipeline(cur, viewer, pipeline)
        runs = queries.model_runs(cur, item.name, limit)
        return _json({"pipeline": item.name, "metric": item.metric, "higher_is_better": item.higher_is_better,
                      "promotions": queries.promotions(cur, item.name), "versions": runs})

    @app.get("/api/pipelines/{pipeline}/comparison")
    def api_comparison(pipeline: str, viewer: ViewerDep, cur: Cursor, metric: MetricQ = None,
                       training: MetricQ = None) -> JSONResponse:
        item = _pipeline(cur, viewer, pipeline)
        view = models_view(cur, item, metric, training)
        c = view["comparison"]
        return _json({"pipeline": item.name, "metric": view["metric"], "higher_is_better": item.higher_is_better,
                      "models": c.models, "metrics": c.metric_names,
                      "trainings": [{"key": t["key"], "started_at": t["started_at"], "models": t["models"],
                                     "runs": t["runs"]} for t in c.trainings]})

    # -- data quality and quarantine ---------------------------------------------------------------------------
    @app.get("/pipelines/{pipeline}/quality", response_class=HTMLResponse)
    def quality(request: Request, pipeline: str, viewer: ViewerDep, cur: Cursor) -> HTMLResponse:
        item = _pipeline(cur, viewer, pipeline)
        return _page(request, viewer, cur, "quality.html", item=item, tab="quality", **quality_view(cur, item))

    @app.get("/api/pipelines/{pipeline}/quality")
    def api_quality(pipeline: str, viewer: ViewerDep, cur: Cursor,
                    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_ROWS)] = 200) -> JSONResponse:
        item = _pipeline(cur, viewer, pipeline)
        return _json({"pipeline": item.name, "warn_ratio": config.quarantine_warn_ratio(),
                      "ingest_runs": queries.ingest_runs(cur, item.name, limit),
                      "partitions": queries.partitions(cur, item.name, limit)})

    def _quarantine(cur, viewer, pipeline, reason, partition, before, limit):
        item = _pipeline(cur, viewer, pipeline)
        if partition is not None and not PARTITION_RE.match(partition):
            raise HTTPException(422, f"partition {partition[:80]!r} is not a partition key")
        rows, next_before = queries.quarantine_page(cur, item.name, reason, partition, before, limit)
        return item, rows, next_before


    @app.get("/pipelines/{pipeline}/quarantine", response_class=HTMLResponse)
    def quarantine(request: Request, pipeline: str, viewer: ViewerDep, cur: Cursor, reason: NameQ = None,
                   partition: PartitionQ = None, before: BeforeQ = None,
                   limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_ROWS)] = 50) -> HTMLResponse:
        partition = partition or None
        item, rows, next_before = _quarantine(cur, viewer, pipeline, reason, partition, before, limit)
        return _page(request, viewer, cur, "quarantine.html", item=item, tab="quarantine", rows=rows,
                     next_before=next_before, reasons=queries.quarantine_reasons(cur, item.name), reason=reason,
                     partition=partition, limit=limit, before=before)

    @app.get("/api/pipelines/{pipeline}/quarantine")
    def api_quarantine(pipeline: str, viewer: ViewerDep, cur: Cursor, reason: NameQ = None,
                       partition: PartitionQ = None, before: BeforeQ = None,
                       limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE_ROWS)] = 50) -> JSONResponse:
        item, rows, next_before = _quarantine(cur, viewer, pipeline, reason, partition or None, before, limit)
        return _json({"pipeline": item.name, "rows": rows, "next_before": next_before})

    # -- analyse: data sets -------------------------------------------------------------------------------------

    def _dataset(cur, item, dataset_id: str | None, file: str | None, rows: int):
        from pipelines.storage import DataRoot

        root = DataRoot()
        found = datasets.list_datasets(cur, item.name, root)
        if dataset_id is not None and not datasets.valid_id(dataset_id):
            raise HTTPException(422, f"{dataset_id[:80]!r} is not a data set id (partition:<key> or run:<uuid>)")
        chosen = next((d for d in found if d.id == dataset_id), None) if dataset_id else (found[0] if found else None)
        if dataset_id and chosen is None:
            raise HTTPException(404, f"{item.name} has no data set {dataset_id[:80]!r}")
        files, shown, error = [], None, None
        if chosen is not None:
            try:
                files = datasets.files_of(chosen, root)
                name = file or (files[0] if files else None)
                if file is not None and file not in files:
                    raise HTTPException(404, f"{file[:80]!r} is not a file of {chosen.id}")
                shown = datasets.preview(chosen, name, root, rows) if name else None
            except HTTPException:
                raise
            except Exception as exc:  # files pruned by a retention policy, unreadable Parquet: say so
                error = f"{type(exc).__name__}: {exc}"
                name = file
        else:
            name = None
        return found, chosen, files, name, shown, error


    @app.get("/pipelines/{pipeline}/data", response_class=HTMLResponse)
    def data(request: Request, pipeline: str, viewer: ViewerDep, cur: Cursor, dataset: DatasetQ = None,
             file: FileQ = None, rows: RowsQ = 50) -> HTMLResponse:
        item = _pipeline(cur, viewer, pipeline)
        found, chosen, files, name, shown, error = _dataset(cur, item, dataset, file, rows)
        return _page(request, viewer, cur, "data.html", item=item, tab="data", datasets=found, chosen=chosen,
                     files=files, file=name, preview=shown, error=error, rows=rows)

    @app.get("/api/pipelines/{pipeline}/data")
    def api_data(pipeline: str, viewer: ViewerDep, cur: Cursor, dataset: DatasetQ = None, file: FileQ = None,
                 rows: RowsQ = 50) -> JSONResponse:
        item = _pipeline(cur, viewer, pipeline)
        found, chosen, files, name, shown, error = _dataset(cur, item, dataset, file, rows)
        return _json({"datasets": [d.__dict__ for d in found], "dataset": chosen.id if chosen else None,
                      "files": files, "file": name, "preview": shown, "error": error})

    # -- evaluate: predictions ------------------------------------------------------------------------------------

    def _predictions(cur, item, table, q, rows):
        tables, chosen = _serving_table(cur, item, table)
        if chosen is None:
            return tables, None, [], [], None, None
        value = _search_value(chosen, q)
        columns, records = queries.serving_rows(cur, chosen, value, rows)
        return tables, chosen, columns, records, value, queries.serving_count(cur, chosen.table)

    @app.get("/pipelines/{pipeline}/predictions", response_class=HTMLResponse)
    def predictions(request: Request, pipeline: str, viewer: ViewerDep, cur: Cursor, table: TableQ = None,
                    q: SearchQ = None, rows: RowsQ = 50) -> HTMLResponse:
        item = _pipeline(cur, viewer, pipeline)
        tables, chosen, columns, records, value, total = _predictions(cur, item, table, q, rows)
        return _page(request, viewer, cur, "predictions.html", item=item, tab="predictions", tables=tables,
                     chosen=chosen, columns=columns, records=records, q=q or "", searched=value is not None,
                     total=total, rows=rows)

    @app.get("/api/pipelines/{pipeline}/predictions")
    def api_predictions(pipeline: str, viewer: ViewerDep, cur: Cursor, table: TableQ = None, q: SearchQ = None,
                        rows: RowsQ = 50) -> JSONResponse:
        item = _pipeline(cur, viewer, pipeline)
        tables, chosen, columns, records, _, total = _predictions(cur, item, table, q, rows)
        return _json({"tables": [t.table for t in tables], "table": chosen.table if chosen else None,
                      "columns": columns, "rows": [list(r) for r in records], "estimated_total": total})

    @app.get("/pipelines/{pipeline}/predictions/{table}.csv")
    def export(pipeline: str, table: str, viewer: ViewerDep, cur: Cursor) -> StreamingResponse:
        item = _pipeline(cur, viewer, pipeline)
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", table):
            raise HTTPException(422, f"{table[:80]!r} is not a table name")
        _, chosen = _serving_table(cur, item, table)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return StreamingResponse(queries.export_csv(ops_dsn(), chosen), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{chosen.table}-{stamp}.csv"',
                                          "Cache-Control": "no-store"})

    # -- runs and reports -----------------------------------------------------------------------------------------
    def _run(cur, viewer: Viewer, run_id: str) -> dict:
        from pipelines.ops.report import siblings

        run = queries.run_detail(cur, _run_id(run_id))
        if run is None or not catalog.valid_name(run["pipeline"]) or run["pipeline"] not in _visible(cur, viewer):
            raise HTTPException(404, f"no run {run_id[:40]} (or you may not read its pipeline's DAGs)")
        run["siblings"] = siblings(cur, run, catalog.info(run["pipeline"]))
        return run

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, viewer: ViewerDep, cur: Cursor) -> HTMLResponse:
        from pipelines.ops.report import comparison_rows
        from pipelines.ops.web.airflow_meta import task_of_runs

        run = _run(cur, viewer, run_id)
        item = catalog.info(run["pipeline"])
        columns, rows = comparison_rows(run, item)
        return _page(request, viewer, cur, "run.html", item=item, run=run, columns=columns, rows=rows,
                     task=task_of_runs([run]).get(str(run["run_id"])), tab="models")

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str, viewer: ViewerDep, cur: Cursor) -> JSONResponse:
        return _json(_run(cur, viewer, run_id))

    @app.get("/runs/{run_id}/report", response_class=HTMLResponse)
    def run_report(run_id: str, viewer: ViewerDep, cur: Cursor,
                   fresh: Annotated[bool, Query(description="render now instead of serving the stored report")]
                   = False) -> HTMLResponse:
        from pipelines.ops import report
        from pipelines.storage import DataRoot

        run = _run(cur, viewer, run_id)
        root = DataRoot()
        rel = report.report_rel(run, root)
        if not fresh and root.exists(rel):
            return HTMLResponse(root.read_bytes(rel).decode("utf-8"), headers={"X-Report": "stored"})
        reference = report.reference_run(cur, run, catalog.info(run["pipeline"]))
        html = report.render_run_report(str(run["run_id"]), root=root, run=run, reference=reference)
        return HTMLResponse(html, headers={"X-Report": "rendered"})

    return app

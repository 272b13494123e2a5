"""One self-contained HTML report per training or evaluation run, written into the data root beside the run's
artifacts (``<artifact folder>/run_report_<run id>.html``) and linked from the operations page.

The report is everything a reviewer needs without the platform: the run (pipeline, model, version, Params,
data interval, DAG run, code version), its metrics, every model evaluated beside it (baselines, peers, the
oracle ceiling) with each metric's share of the oracle, the other segments it recorded, and the pipeline's
own ``report.md`` and PNG charts with the images embedded as data URIs: one file, no network, no platform.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pipelines import db
from pipelines.ops import catalog, config, queries
from pipelines.ops.templating import render, stylesheet
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

REPORT_KINDS = ("train", "evaluate")
MAX_IMAGES = 24
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_MARKDOWN_BYTES = 512 * 1024
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


@dataclass
class ReportFiles:
    """The pipeline's own report material found for a run: markdown texts and PNGs (data-root relative)."""

    markdown: list[tuple[str, str]] = field(default_factory=list)  # (rel path, text)
    images: dict[str, bytes] = field(default_factory=dict)  # rel path → PNG bytes


def relative_to_root(uri: str | None, root: DataRoot) -> str | None:
    """The data-root-relative path of a URI under the root, else None (never a path outside it)."""
    if not uri:
        return None
    prefix = root.uri.rstrip("/") + "/"
    uri = uri.removeprefix("file://")
    if not uri.startswith(prefix):
        return None
    rel = uri[len(prefix):].strip("/")
    if not rel or any(part in ("..", ".") for part in rel.split("/")):
        return None
    return rel


def _folder_of(rel: str) -> str:
    return str(PurePosixPath(rel).parent) if _FILE_SUFFIX.search(rel) else rel


def candidate_folders(run: dict, root: DataRoot) -> list[str]:
    """Where a run's report material may lie: the folders of ``summary.report`` and of the artifact, and the
    ``report/`` folder beside the artifact (the layout of the pipelines' model folders)."""
    folders: list[str] = []
    reported = (run.get("summary") or {}).get("report")
    for uri in [reported] if isinstance(reported, str) else (reported or []):
        rel = relative_to_root(uri if isinstance(uri, str) else None, root)
        if rel:
            folders.append(_folder_of(rel))
    artifact = relative_to_root(run.get("artifact_uri"), root)
    if artifact:
        folder = _folder_of(artifact)
        folders += [folder, f"{folder}/report"]
        parent = str(PurePosixPath(folder).parent)
        if parent not in (".", ""):
            folders.append(f"{parent}/report")
    return list(dict.fromkeys(folders))


def collect_files(run: dict, root: DataRoot) -> ReportFiles:
    found = ReportFiles()
    for folder in candidate_folders(run, root):
        try:
            names = root.list(folder)
        except OSError:
            continue
        for rel in names:
            lower = rel.lower()
            try:
                if lower.endswith(".png") and len(found.images) < MAX_IMAGES and rel not in found.images:
                    data = root.read_bytes(rel)
                    if len(data) <= MAX_IMAGE_BYTES and data[:8] == b"\x89PNG\r\n\x1a\n":
                        found.images[rel] = data
                elif lower.endswith(".md") and all(rel != r for r, _ in found.markdown):
                    data = root.read_bytes(rel)[:MAX_MARKDOWN_BYTES]
                    found.markdown.append((rel, data.decode("utf-8", errors="replace")))
            except OSError as exc:
                log.warning("report material %s unreadable: %s", rel, exc)
    return found


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_html(text: str, folder: str, images: dict[str, bytes], used: set[str]) -> str:
    """A pipeline's report.md as HTML (raw HTML in it is escaped), its images embedded as data URIs."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or []:
            if child.type != "image":
                continue
            src = str(child.attrGet("src") or "")
            rel = str(PurePosixPath(folder) / src) if src and "://" not in src and not src.startswith("/") else src
            if rel in images:
                child.attrSet("src", data_uri(images[rel]))
                used.add(rel)
            else:  # never a broken reference out of a self-contained report: say what is missing
                child.type, child.tag, child.children = "text", "", None
                child.content, child.attrs = f"(image {src} not found beside the report)", {}
        if token.type == "link_open":  # links out of a self-contained report are plain text references
            token.attrSet("rel", "noopener")
    return md.renderer.render(tokens, md.options, {})


def _airflow_links(run: dict) -> dict[str, str]:
    base = config.airflow_base_url()
    if not run.get("airflow_dag_id"):
        return {}
    from urllib.parse import quote

    dag = quote(run["airflow_dag_id"], safe="")
    links = {"dag": f"{base}/dags/{dag}"}
    if run.get("airflow_run_id"):
        links["run"] = f"{base}/dags/{dag}/runs/{quote(run['airflow_run_id'], safe='')}"
    return links


def _label(run: dict, item: catalog.PipelineInfo) -> str:
    return ((run.get("params") or {}).get(item.model_param) if item.model_param else None) \
        or run.get("model_name") or "this run"


def comparison_rows(run: dict, item: catalog.PipelineInfo) -> tuple[list[str], list[dict]]:
    """Rows (one per model: this run's own, its sibling runs of the same training, the ones evaluated beside
    it, the oracle) × metric columns."""
    segments = run.get("segments") or {}
    label = _label(run, item)
    rows: dict[str, dict] = {}
    if segments.get(""):
        rows[label] = {"model": label, "own": True, "metrics": segments[""]}
    for sibling in run.get("siblings") or []:
        name = _label(sibling, item)
        if name not in rows and sibling.get("metrics"):
            rows[name] = {"model": name, "own": False, "metrics": sibling["metrics"]}
    for segment, values in sorted(segments.items()):
        model = "oracle" if segment == "oracle" else segment[6:] if segment.startswith("model=") else None
        if model and model not in rows:
            rows[model] = {"model": model, "own": False, "metrics": values}
    if not rows:
        return [], []
    names = sorted({k for r in rows.values() for k in r["metrics"]})
    if item.metric in names:
        names.remove(item.metric)
        names.insert(0, item.metric)
    oracle = rows.get("oracle", {}).get("metrics", {}).get(item.metric)
    ordered = [r for m, r in rows.items() if m != "oracle"] + ([rows["oracle"]] if "oracle" in rows else [])
    for r in ordered:
        value = r["metrics"].get(item.metric)
        r["share_of_oracle"] = (value / oracle if value is not None and oracle not in (None, 0)
                                and item.higher_is_better else None)
    return (names if len(names) <= 40 else names[:40]), ordered


def build_context(run: dict, root: DataRoot, reference: dict | None = None) -> dict[str, Any]:
    item = catalog.info(run["pipeline"])
    files = collect_files(run, root)
    used: set[str] = set()
    sections = [{"name": rel, "html": markdown_html(text, str(PurePosixPath(rel).parent), files.images, used)}
                for rel, text in files.markdown]
    charts = [{"name": PurePosixPath(rel).name, "src": data_uri(png)} for rel, png in files.images.items()
              if rel not in used]
    columns, rows = comparison_rows(run, item)
    other = {s: v for s, v in (run.get("segments") or {}).items()
             if s and s != "oracle" and not s.startswith("model=")}
    other_columns = sorted({k for v in other.values() for k in v})[:30]
    return {"run": run, "item": item, "links": _airflow_links(run), "columns": columns, "rows": rows,
            "other": dict(list(sorted(other.items()))[:300]), "other_columns": other_columns,
            "sections": sections, "charts": charts, "css": stylesheet(), "reference": reference,
            "promote": item.promote_command(run["model_name"], str(run["run_id"])) if run.get("model_name") else None}


def reference_run(cur, run: dict, item: catalog.PipelineInfo) -> dict | None:
    """The promoted run of the same model (what a new version is judged against), with its primary metric."""
    if not run.get("model_name") or not item.metric:
        return None
    rows = db.fetch_dicts(cur, """
        SELECT r.run_id::text AS run_id, r.model_version, m.value FROM model_promotions p JOIN runs r USING (run_id)
        LEFT JOIN run_metrics m ON m.run_id = r.run_id AND m.segment = '' AND m.name = %s
        WHERE p.pipeline = %s AND p.model_name = %s AND p.alias = 'production'""",
                          (item.metric, run["pipeline"], run["model_name"]))
    return rows[0] if rows else None


def siblings(cur, run: dict, item: catalog.PipelineInfo) -> list[dict]:
    """The other successful runs of the same training (same version, or the pipeline's training id): the
    models trained beside this one, e.g. the baselines that have runs of their own."""
    key = (run.get("params") or {}).get(item.training_param) if item.training_param else None
    if key is None and not run.get("model_version"):
        return []
    return db.fetch_dicts(cur, """
        SELECT r.run_id::text AS run_id, r.model_name, r.model_version, r.params,
               COALESCE((SELECT jsonb_object_agg(m.name, m.value) FROM run_metrics m
                         WHERE m.run_id = r.run_id AND m.segment = ''), '{}'::jsonb) AS metrics
        FROM runs r
        WHERE r.pipeline = %(p)s AND r.kind = %(kind)s AND r.status = 'success' AND r.run_id <> %(run)s
          AND CASE WHEN %(key)s::text IS NULL THEN r.model_version = %(version)s
                   ELSE r.params->>%(param)s = %(key)s END
        ORDER BY r.model_name""",
                          {"p": run["pipeline"], "kind": run["kind"], "run": str(run["run_id"]), "key": key,
                           "param": item.training_param or "", "version": run.get("model_version")})


def load_run(run_id: str, dsn: str | None = None) -> tuple[dict, dict | None]:
    with db.transaction(dsn) as cur:
        run = queries.run_detail(cur, run_id)
        if run is None:
            raise LookupError(f"no run {run_id} in the registry")
        item = catalog.info(run["pipeline"])
        run["siblings"] = siblings(cur, run, item)
        return run, reference_run(cur, run, item)


def render_run_report(run_id: str, dsn: str | None = None, root: DataRoot | None = None,
                      run: dict | None = None, reference: dict | None = None) -> str:
    """The HTML report of any registry run (training and evaluation runs carry the comparison)."""
    if run is None:
        run, reference = load_run(run_id, dsn)
    return render("report.html", **build_context(run, root or DataRoot(), reference))


def report_rel(run: dict, root: DataRoot) -> str:
    """Where a run's report is written: beside its artifacts, or under ``ops/reports/<pipeline>/``."""
    artifact = relative_to_root(run.get("artifact_uri"), root)
    folder = _folder_of(artifact) if artifact else f"ops/reports/{run['pipeline']}"
    return f"{folder}/run_report_{run['run_id']}.html"


def write_run_report(run_id: str, dsn: str | None = None, root: DataRoot | None = None) -> str:
    """Render a run's report and publish it into the data root (atomically); returns its URI."""
    root = root or DataRoot()
    run, reference = load_run(run_id, dsn)
    html = render_run_report(run_id, root=root, run=run, reference=reference)
    return root.put_bytes(html.encode("utf-8"), report_rel(run, root))

"""The engagement pipeline's steps, as the DAGs' tasks and the CLI call them.

Daily (``engagement_daily``): ``convert_day`` (the day's drop → month Parquet + quarantine, on the ingest
contract) → ``score`` the day's posts with the promoted model into ``engagement_predictions`` → ``prune``.
Weekly (``engagement_train_weekly``): ``pending_history_files`` → ``convert_file`` per new historical file
(mapped) → ``train`` every model on a time split (one registry run each) → ``promote`` one only when asked.

Data root layout (besides :mod:`~pipelines.engagement.schema`'s)::

    engagement/generated/spec.json          the generator's spec: its presence marks the data as generated
    engagement/generated/truth/*.parquet    the generator's truth per raw file (the oracle)
    engagement/models/VERSION/MODEL/        one trained model (what ``load_model`` reads)
    engagement/models/VERSION/report/       the comparison: report.md, PNG charts, metrics.csv
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipelines import db, ingest, registry
from pipelines.days import as_day as _day
from pipelines.days import day_interval as _interval
from pipelines.engagement import schema
from pipelines.errors import MissingPartitionError, UsageError
from pipelines.migrate import ensure_schema
from pipelines.settings import get_settings, pg_dsn
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

PIPELINE = schema.PIPELINE
SPEC_REL = f"{schema.GENERATED_REL}/spec.json"
TRUTH_REL = f"{schema.GENERATED_REL}/truth"
DEFAULT_MODELS = ("linear", "catboost", "minilm", "neural")
PREDICTION_COLUMNS = ["post_id", "predicted_up_votes", "predicted_log1p", "model_name", "model_version", "as_of",
                      "scored_at", "run_id"]


class NoPromotedModelError(MissingPartitionError):
    """Scoring needs a promoted model, and promotion is explicit: someone has to promote one first (the CLI
    answers it with exit code 4, "not there yet"; the daily DAG skips scoring)."""


def _threshold(max_bad_share: float | None) -> float:
    return get_settings().max_bad_share if max_bad_share is None else float(max_bad_share)


# -- generate -----------------------------------------------------------------------------------------------

def generate(*, start: date = date(2016, 1, 1), days: int = 180, history_days: int | None = None,
             posts_per_day: float = 250.0, n_authors: int = 4_000, seed: int = 42, bad_row_rate: float = 0.0,
             history_name: str = "history.csv", eol: str = "\n", bom: bool = False, truth: bool = True,
             progress: bool = False) -> dict:
    """Write generated posts into the (local) data root: the first ``history_days`` days as one historical
    file, the others as daily drops; the spec (and, unless ``truth=False``, the truth) beside them."""
    from pipelines.engagement.generate import EngagementSpec, write_day, write_history, write_spec

    root = DataRoot()
    if root.is_s3:
        raise UsageError("generate writes to a local data root; upload the files yourself for S3")
    spec = EngagementSpec(seed=seed, start=_day(start), days=days, posts_per_day=posts_per_day,
                          n_authors=n_authors, bad_row_rate=bad_row_rate)
    history_days = days if history_days is None else history_days
    if not 0 <= history_days <= days:
        raise UsageError(f"history_days {history_days} must be between 0 and days {days}")
    written = []
    if history_days:
        written.append(write_history(spec, root.base, history_name, spec.start,
                                     spec.start + timedelta(days=history_days - 1), eol=eol, bom=bom, truth=truth,
                                     progress=progress))
    for i in range(history_days, days):
        written.append(write_day(spec, root.base, spec.start + timedelta(days=i), eol=eol, bom=bom, truth=truth))
    write_spec(spec, root.base)
    bad: dict[str, int] = {}
    for w in written:
        for k, v in w["bad"].items():
            bad[k] = bad.get(k, 0) + v
    return {"files": len(written), "rows": sum(w["rows"] for w in written),
            "posts": sum(w["clean"] for w in written), "bytes": sum(w["bytes"] for w in written), "bad": bad,
            "history_days": history_days, "daily_days": days - history_days, "first_day": spec.start.isoformat(),
            "last_day": spec.end.isoformat()}


def truth_paths(root: DataRoot | None = None) -> list[Path]:
    """The generator's truth files, when the data root holds generated data (else none: no oracle)."""
    root = root or DataRoot()
    if not root.exists(SPEC_REL):
        return []
    folder = root.local_dir(TRUTH_REL)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


# -- ingest -------------------------------------------------------------------------------------------------

def posts_ready(day: str | date) -> bool:
    """Whether the day's drop has arrived (what ``wait_for_posts`` pokes)."""
    return ingest.drop_ready(DataRoot(), schema.raw_day_dir(_day(day)))


def convert_day(day: str | date, max_bad_share: float | None = None, progress: bool = False) -> dict:
    """Convert a day's drop under the ingest contract (accepted or rejected, quarantine committed last)."""
    from pipelines.engagement.convert import day_validator

    day = _day(day)
    threshold = _threshold(max_bad_share)
    root = DataRoot()
    result = ingest.run_ingest(PIPELINE, day.isoformat(), day_validator(day, root, progress=progress),
                               max_bad_share=threshold,
                               params={"day": day}, interval=_interval(day), root=root,
                               benign_reasons=schema.BENIGN_REASONS)
    return {**_brief(result), "day": day.isoformat()}


def _brief(result: ingest.IngestResult) -> dict:
    extra = result.extra
    return {"partition": result.partition, "status": result.status, "run_id": result.run_id,
            "rows_read": result.rows_read, "rows_valid": result.rows_valid, "reasons": result.reasons,
            "files": result.files, "months": extra.get("months", {}), "mb_per_s": extra.get("mb_per_s")}


def _fingerprint(root: DataRoot, rel: str) -> dict:
    """What identifies a raw file's content cheaply: its size and modification time (ETag on S3)."""
    if root.is_s3:
        head = root._s3().head_object(Bucket=root.bucket, Key=root._key(rel))
        return {"size": int(head["ContentLength"]), "etag": head.get("ETag")}
    stat = (root.base / rel).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def history_files(root: DataRoot | None = None) -> list[str]:
    root = root or DataRoot()
    return [Path(r).name for r in root.list(schema.HISTORY_DIR) if not Path(r).name.startswith((".", "_"))]


def _last_fingerprint(root: DataRoot, partition: str) -> dict | None:
    """The fingerprint of the file the partition's last attempt converted (accepted or rejected)."""
    row = ingest.partition_status(PIPELINE, partition)
    if row is None or not row.get("last_run_id"):
        return None
    rel = f"{ingest.staged_rel(PIPELINE, partition, str(row['last_run_id']))}/summary.json"
    if not root.exists(rel):
        return None
    return json.loads(root.read_bytes(rel)).get("extra", {}).get("fingerprint")


def pending_history_files(reconvert: bool = False) -> list[str]:
    """Historical files not converted yet, or changed since their last conversion (accepted or rejected: a
    rejected file waits for a new version, ``reconvert`` forces every file through again)."""
    ensure_schema(pg_dsn())
    root = DataRoot()
    pending = []
    for name in history_files(root):
        try:
            partition = schema.file_partition(name)
        except ValueError as exc:
            log.warning("skipping %s: %s", name, exc)
            continue
        current = _fingerprint(root, f"{schema.HISTORY_DIR}/{name}")
        last = _last_fingerprint(root, partition)
        if reconvert or last != current:
            pending.append(name)
        else:
            status = ingest.partition_status(PIPELINE, partition) or {}
            if status.get("last_status") == "rejected":
                log.warning("%s was rejected and has not changed since; fix it (or pass reconvert) to retry: %s",
                            name, status.get("last_error"))
    return pending


def history_status() -> dict:
    """Every historical file's partition: accepted, or rejected with why (what the weekly DAG reports)."""
    ensure_schema(pg_dsn())
    rows = db.query("SELECT partition_key, status, last_status, rows_valid, last_error FROM ingest_partitions "
                    "WHERE pipeline = %s AND partition_key LIKE %s ORDER BY partition_key",
                    (PIPELINE, schema.FILE_PARTITION_PREFIX + "%"))
    out: dict = {"accepted": [], "rejected": []}
    for r in rows:
        name = r["partition_key"][len(schema.FILE_PARTITION_PREFIX):]
        if r["status"] == "accepted":
            out["accepted"].append({"file": name, "rows": r["rows_valid"], "last_attempt": r["last_status"]})
        else:
            out["rejected"].append({"file": name, "error": r["last_error"]})
    for item in out["rejected"]:
        log.warning("historical file %s is rejected: %s", item["file"], item["error"])
    return out


def conversion_outcome(names: list[str]) -> dict:
    """Of the historical files ``names`` (a run's pending list), which are now accepted and which rejected."""
    status = history_status()
    rejected = {r["file"] for r in status["rejected"]}
    accepted = {a["file"]: a for a in status["accepted"] if a["last_attempt"] == "accepted"}
    return {"converted": sorted(n for n in names if n in accepted),
            "rejected": sorted(n for n in names if n in rejected or (n not in accepted))}


def convert_file(name: str, max_bad_share: float | None = None, progress: bool = False) -> dict:
    """Convert one historical file under the ingest contract (partition ``file=<name>``); ``progress`` shows a
    bar of the bytes read (the CLI)."""
    from pipelines.engagement.convert import file_validator

    partition = schema.file_partition(name)
    root = DataRoot()
    rel = f"{schema.HISTORY_DIR}/{name}"
    if not root.exists(rel):
        raise MissingPartitionError(f"no historical file {root.join(rel)}")
    fingerprint = _fingerprint(root, rel)
    validate = file_validator(rel, root, progress=progress)

    def validate_and_mark(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        validate(staging, result)
        result.extra["fingerprint"] = fingerprint

    result = ingest.run_ingest(PIPELINE, partition, validate_and_mark, max_bad_share=_threshold(max_bad_share),
                               params={"file": name, "fingerprint": fingerprint}, root=root,
                               benign_reasons=schema.BENIGN_REASONS)
    return {**_brief(result), "file": name}


def latest_accepted_day(through: str | date | None = None) -> str:
    """The last day of posts in the accepted data up to ``through`` (what training can be as of)."""
    from pipelines.engagement.dataset import accepted_month_files

    files = accepted_month_files()
    if not files:
        raise MissingPartitionError("no accepted engagement posts: convert a historical file or a day first")
    import duckdb

    bound = None if through in (None, "") else int(datetime.combine(_day(through) + timedelta(days=1),
                                                                    datetime.min.time(), tzinfo=UTC).timestamp())
    con = duckdb.connect()
    try:
        paths = [str(f.path) for f in files]
        latest = con.sql("SELECT max(time_created) FROM read_parquet(?) WHERE ?::BIGINT IS NULL OR time_created < ?",
                         params=[paths, bound, bound]).fetchall()[0][0]
    finally:
        con.close()
    if latest is None:
        raise MissingPartitionError(f"no accepted engagement posts up to {through}")
    return datetime.fromtimestamp(int(latest), tz=UTC).date().isoformat()


def prune(keep_attempts: int = 1) -> dict:
    """Staging retention: remove staged runs no reader needs. Every partition keeps its accepted run (training
    reads every accepted month, and conversion is done once) and its newest other attempt (for inspection, and
    the fingerprint that stops a rejected historical file from being retried unchanged)."""
    return ingest.prune_staging(PIPELINE, keep_attempts)


def prune_models(root: DataRoot | None = None, keep: int | None = None) -> dict:
    """Remove trained model versions that are neither promoted nor among the newest ``keep``
    (``PIPELINES_KEEP_MODEL_VERSIONS``)."""
    root = root or DataRoot()
    keep = get_settings().keep_model_versions if keep is None else keep
    promoted = {r["model_version"] for r in db.query(
        "SELECT r.model_version FROM model_promotions p JOIN runs r USING (run_id) WHERE p.pipeline = %s",
        (PIPELINE,))}
    versions = sorted(root.list_dirs(schema.MODELS_REL), reverse=True)  # YYYYMMDD-hash: newest first
    doomed = [v for v in versions[keep:] if v not in promoted]
    for version in doomed:
        root.remove_dir(f"{schema.MODELS_REL}/{version}")
    if doomed:
        log.info("engagement retention: removed model versions %s (kept %s and the promoted %s)", doomed,
                 versions[:keep], sorted(promoted))
    return {"removed": doomed, "promoted": sorted(promoted)}


# -- training -----------------------------------------------------------------------------------------------

def model_params(flat: dict) -> dict:
    """The weekly DAG's flat Params (``linear_epochs``, ``catboost_sample_rows``, ...) as per-model constructor
    arguments (``{"linear": {"epochs": ...}}``); other keys are ignored."""
    nested: dict[str, dict] = {}
    for key, value in flat.items():
        for name in ("linear", "catboost", "minilm", "neural"):
            if key.startswith(f"{name}_") and value is not None:
                nested.setdefault(name, {})[key[len(name) + 1:]] = value
    return nested


def version_id(as_of: date, models: list[str], params: dict, settings: dict) -> str:
    """``YYYYMMDD-<hash of models, Params and split>``: the same training asks reuse the id."""
    digest = hashlib.sha1(json.dumps({"models": sorted(models), "params": params, "settings": settings},
                                     sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{as_of:%Y%m%d}-{digest}"


def _numbers(row: dict) -> dict:
    return {k: (None if v is None or v != v else float(v)) for k, v in row.items() if isinstance(v, int | float)
            or v is None}


def train(as_of: str | date | None = None, models: list[str] | tuple[str, ...] = DEFAULT_MODELS,
          params: dict | None = None, *, seed: int = 42, valid_months: int = 1, test_months: int = 1,
          train_months: int | None = None, eval_rows: int = 20_000, valid_rows: int = 20_000) -> dict:
    """Train and evaluate ``models`` (and the baselines) as of ``as_of`` on a time split of the accepted
    posts; one registry run per model, its own metrics overall and every model's (and the oracle's) under
    ``segment="model=<name>"``. Models and report under ``engagement/models/<version>/``. Promotes nothing."""
    from pipelines.engagement.dataset import accepted_month_files
    from pipelines.engagement.models.registry import BASELINES
    from pipelines.engagement.models.train import train_and_evaluate

    ensure_schema(pg_dsn())
    as_of = _day(as_of or latest_accepted_day())
    models = [m for m in models if m not in BASELINES]
    params = params or {}
    settings = {"seed": seed, "valid_months": valid_months, "test_months": test_months,
                "train_months": train_months, "eval_rows": eval_rows, "valid_rows": valid_rows}
    root = DataRoot()
    files = accepted_month_files(root)
    if not files:
        raise MissingPartitionError("no accepted engagement posts: convert a historical file or a day first")
    version = version_id(as_of, models, params, settings)
    rel_dir = f"{schema.MODELS_REL}/{version}"
    names = [*BASELINES, *models]
    with contextlib.ExitStack() as stack:
        runs = {name: stack.enter_context(registry.track_run(
            PIPELINE, "train", model_name=name, model_version=version, interval=_interval(as_of),
            params={"as_of": as_of, "models": names, **settings, **params.get(name, {})})) for name in names}
        with tempfile.TemporaryDirectory(prefix="engagement-train-") as tmp:
            out_dir = Path(tmp) / version
            result = train_and_evaluate(files, as_of, out_dir, models=models, params=params, seed=seed,
                                        valid_months=valid_months, test_months=test_months,
                                        train_months=train_months, eval_rows=eval_rows, valid_rows=valid_rows,
                                        truth_paths=truth_paths(root), workdir=Path(tmp) / "work")
            (out_dir / "training.json").write_text(json.dumps(
                {"version": version, "as_of": as_of.isoformat(), "table": result["table"], "split": result["split"],
                 "rows": result["rows"], "params": params, "settings": settings,
                 "fit": {k: v["fit"] for k, v in result["models"].items()}}, indent=2, default=str))
            uri = root.put_tree(out_dir, rel_dir)
        table = result["table"]
        for name, run in runs.items():
            run.artifact_uri = root.join(rel_dir, name)
            run.log_metrics({**_numbers(table[name]), "valid_rmse_log1p": result["valid_rmse"].get(name)})
            for other, row in table.items():
                run.log_metrics(_numbers(row), segment=f"model={other}")
            fit = result["models"][name]["fit"]
            run.summary = {"version": version, "split": result["split"], "rows": result["rows"],
                           "fit": {k: v for k, v in fit.items() if k not in ("curve", "iterations_curve")},
                           "report": root.join(rel_dir, "report", "report.md")}
    from pipelines.ops.jobs import render_reports

    run_ids = {name: str(run.run_id) for name, run in runs.items()}
    reports = render_reports(run_ids)  # one HTML report per run, beside its artifacts (never fails training)
    pruned = prune_models(root)["removed"]
    return {"version": version, "as_of": as_of.isoformat(), "uri": uri, "table": table, "split": result["split"],
            "rows": result["rows"], "runs": run_ids, "report": root.join(rel_dir, "report", "report.md"),
            "reports": reports["written"], "pruned_versions": pruned}


# -- promotion ------------------------------------------------------------------------------------------------

def promote(model_name: str, run_id: str | None = None, by: str | None = None) -> dict:
    """Serve ``model_name`` from ``run_id`` (default: its latest successful training run). Always explicit."""
    ensure_schema(pg_dsn())
    if not run_id:
        rows = db.query("SELECT run_id FROM runs WHERE pipeline = %s AND kind = 'train' AND model_name = %s "
                        "AND status = 'success' ORDER BY finished_at DESC LIMIT 1", (PIPELINE, model_name))
        if not rows:
            raise UsageError(f"no successful engagement training run of {model_name!r} to promote")
        run_id = str(rows[0]["run_id"])
    registry.promote(PIPELINE, model_name, str(run_id), by=by)
    run = registry.promoted_run(PIPELINE, model_name)
    log.info("promoted engagement %s version %s (run %s)", model_name, run["model_version"], run_id)
    return {"model_name": model_name, "model_version": run["model_version"], "run_id": str(run_id),
            "artifact_uri": run["artifact_uri"]}


def serving_model(model_name: str | None = None) -> dict:
    """The promoted run scoring uses: ``model_name``'s, or the most recently promoted model's."""
    ensure_schema(pg_dsn())
    rows = db.query(
        """SELECT r.run_id, r.model_name, r.model_version, r.artifact_uri, p.promoted_at
           FROM model_promotions p JOIN runs r USING (run_id)
           WHERE p.pipeline = %s AND p.alias = 'production' AND (%s::text IS NULL OR p.model_name = %s)
           ORDER BY p.promoted_at DESC LIMIT 1""",
        (PIPELINE, model_name, model_name))
    if not rows:
        which = f"model {model_name!r}" if model_name else "model"
        raise NoPromotedModelError(
            f"no promoted engagement {which}: train one (DAG engagement_train_weekly) and promote it explicitly, "
            "with the weekly DAG's `promote` Param, `python -m pipelines engagement promote --model <name>` or "
            "`python -m pipelines registry promote --pipeline engagement --model-name <name> --run-id <run>`")
    return rows[0]


# -- scoring --------------------------------------------------------------------------------------------------

def _day_posts(day: date, root: DataRoot) -> list[Path]:
    """The day's accepted posts (a rejected or missing drop is never scored: MissingPartitionError)."""
    ensure_schema(pg_dsn())
    return sorted(ingest.accepted_dir(PIPELINE, day.isoformat(), root).glob("posts-*.parquet"))


def score(day: str | date, model_name: str | None = None, batch_rows: int = 50_000) -> dict:
    """Predict the up-votes of the day's accepted posts with the promoted model and upsert them, all in one
    transaction. ``scored_at`` is the end of the day's interval (a rerun writes the same rows), and a row
    is only replaced by a score of the same or a later day."""
    import numpy as np

    from pipelines.engagement.dataset import iter_batches
    from pipelines.engagement.models.base import load_model

    day = _day(day)
    dsn = pg_dsn()
    model = serving_model(model_name)
    root = DataRoot()
    paths = _day_posts(day, root)
    interval = _interval(day)
    with registry.track_run(PIPELINE, "score", model_name=model["model_name"], model_version=model["model_version"],
                            params={"day": day, "promoted_run": str(model["run_id"])}, interval=interval) as run:
        predictor = load_model(root.local_tree(root.rel_of(model["artifact_uri"])))
        with tempfile.TemporaryDirectory(prefix="engagement-score-") as tmp:
            csv_path = Path(tmp) / "scores.csv"
            n, total = 0, 0.0
            with open(csv_path, "w", encoding="utf-8") as out:
                out.write(",".join(PREDICTION_COLUMNS) + "\n")
                for batch in iter_batches(paths, None, batch_rows):
                    import pyarrow as pa

                    table = pa.Table.from_batches([batch])
                    pred = predictor.predict(table)
                    votes = np.expm1(np.maximum(pred, 0.0))
                    ids = table["post_id"].to_numpy()
                    for pid, v, p in zip(ids.tolist(), votes.tolist(), pred.tolist(), strict=True):
                        out.write(f"{pid},{v!r},{p!r},{model['model_name']},{model['model_version']},"
                                  f"{day.isoformat()},{interval[1].isoformat()},{run.run_id}\n")
                    n += len(ids)
                    total += float(votes.sum())
            written = _upsert(csv_path, model, day, interval[1], str(run.run_id), n, dsn)
        run.artifact_uri = str(ingest.accepted(PIPELINE, day.isoformat())["staged_uri"])
        run.log_metrics({"posts": n, "upserted": written, "mean_predicted_up_votes": total / n if n else None})
        run.summary = {"posts": n, "upserted": written, "model_run": str(model["run_id"]),
                       "scored_at": interval[1].isoformat()}
    return {"day": day.isoformat(), "posts": n, "upserted": written, "model_name": model["model_name"],
            "model_version": model["model_version"], "run_id": str(run.run_id)}


def _upsert(csv_path: Path, model: dict, day: date, scored_at: datetime, run_id: str, n: int, dsn: str) -> int:
    """Every row in one transaction: COPY into a temp table, then one INSERT ... ON CONFLICT that never lets an
    older day's score replace a newer one; the day's bookkeeping row in the same transaction."""
    with db.transaction(dsn) as cur, open(csv_path, encoding="utf-8") as stream:
        db.advisory_xact_lock(cur, "engagement.predictions")
        cur.execute("CREATE TEMP TABLE engagement_scores_stage (LIKE engagement_predictions) ON COMMIT DROP")
        db.copy_csv(cur, "engagement_scores_stage", PREDICTION_COLUMNS, stream)
        cur.execute(
            """INSERT INTO engagement_predictions AS p SELECT * FROM engagement_scores_stage
               ON CONFLICT (post_id) DO UPDATE SET
                   predicted_up_votes = EXCLUDED.predicted_up_votes, predicted_log1p = EXCLUDED.predicted_log1p,
                   model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version,
                   as_of = EXCLUDED.as_of, scored_at = EXCLUDED.scored_at, run_id = EXCLUDED.run_id
               WHERE EXCLUDED.as_of >= p.as_of""")
        written = cur.rowcount
        cur.execute(
            """INSERT INTO engagement_scoring_runs (as_of, model_name, model_version, posts, upserted, run_id,
                                                   scored_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (as_of) DO UPDATE SET model_name = EXCLUDED.model_name,
                   model_version = EXCLUDED.model_version, posts = EXCLUDED.posts, upserted = EXCLUDED.upserted,
                   run_id = EXCLUDED.run_id, scored_at = EXCLUDED.scored_at""",
            (day, model["model_name"], model["model_version"], n, written, run_id, scored_at))
    return written


# -- everything, without Airflow ------------------------------------------------------------------------------

def run_day(day: str | date, max_bad_share: float | None = None, model_name: str | None = None) -> dict:
    """What one daily DAG run does, in one process: convert, then score (skipped before any promotion)."""
    converted = convert_day(day, max_bad_share)
    try:
        scored = score(day, model_name)
    except NoPromotedModelError as exc:
        scored = {"skipped": str(exc)}
    return {"convert": converted, "score": scored}


def comparison(limit_versions: int = 1) -> list[dict]:
    """The latest training version's comparison (every model, the baselines and the oracle) from the registry."""
    ensure_schema(pg_dsn())
    return db.query(
        """WITH latest AS (
               SELECT model_version FROM runs WHERE pipeline = %s AND kind = 'train' AND status = 'success'
               GROUP BY model_version ORDER BY max(finished_at) DESC LIMIT %s)
           SELECT r.model_version AS version, replace(m.segment, 'model=', '') AS model,
                  round(max(m.value) FILTER (WHERE m.name = 'rmse_log1p')::numeric, 4) AS rmse_log1p,
                  round(max(m.value) FILTER (WHERE m.name = 'mae_log1p')::numeric, 4) AS mae_log1p,
                  round(max(m.value) FILTER (WHERE m.name = 'mae_votes')::numeric, 2) AS mae_votes,
                  round(max(m.value) FILTER (WHERE m.name = 'spearman')::numeric, 3) AS spearman,
                  round(max(m.value) FILTER (WHERE m.name = 'precision_top_decile')::numeric, 3) AS top_decile_prec,
                  round(max(m.value) FILTER (WHERE m.name = 'share_of_oracle_gain')::numeric, 3) AS oracle_gain
           FROM runs r JOIN run_metrics m USING (run_id)
           WHERE r.pipeline = %s AND r.kind = 'train' AND r.model_version IN (SELECT model_version FROM latest)
             AND m.segment LIKE 'model=%%' AND r.model_name = 'mean'
           GROUP BY 1, 2 ORDER BY 1 DESC, 3""", (PIPELINE, limit_versions, PIPELINE))

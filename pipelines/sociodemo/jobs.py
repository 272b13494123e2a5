"""The socio-demographic pipeline's steps, as the DAGs' tasks and the CLI call them.

Daily (``sociodemo_daily``): ``validate`` a day's events (quarantine to Postgres) → ``update_histories`` (the
feature table and user sets as of the day) → ``score`` every user with the promoted model into
``sociodemo_predictions``. Weekly (``sociodemo_train_weekly``): ``validate_targets`` → ``update_histories``
(full) → ``train`` every model (one registry run each) → optionally ``promote`` one, by name: promotion is always
explicit, never a side effect of training.

Data root layout (besides what :mod:`~pipelines.sociodemo.schema` lists)::

    sociodemo/generated/spec.json           the generator's spec, written by :func:`generate`; its presence
                                            marks the data as generated, so training reports the exact oracle
    sociodemo/models/VERSION/MODEL/         one trained model (what ``load_model`` reads)
    sociodemo/models/VERSION/...            the training report (tables, plots) beside them
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, fields
from datetime import date, datetime
from pathlib import Path

from pipelines import db, ingest, registry
from pipelines.days import as_day as _day
from pipelines.days import day_interval as _interval
from pipelines.errors import MissingPartitionError, PipelineError
from pipelines.migrate import ensure_schema
from pipelines.settings import get_settings, pg_dsn
from pipelines.sociodemo import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

PIPELINE = schema.PIPELINE
SPEC_REL = "sociodemo/generated/spec.json"
MODELS_REL = "sociodemo/models"
TARGETS_PARTITION = "targets"
#: Items per user set, the same for training and scoring (set models see what they were trained on).
SET_MAX_ITEMS = 128
DEFAULT_MODELS = ("topclass", "catboost", "deepsets")
PREDICTION_COLUMNS = ["user_id", "sex_proba", "age_class", "age_class_proba", "model_name", "model_version",
                      "as_of", "scored_at"]


class NoPromotedModelError(PipelineError):
    """Scoring needs a promoted model, and promotion is explicit: someone has to promote one first."""


# -- generate -----------------------------------------------------------------------------------------------

def generate(**spec) -> dict:
    """Write a generated dataset into the (local) data root, and its spec beside it (so the oracle is known)."""
    from pipelines.sociodemo.generate import SociodemoSpec, write_dataset

    root = DataRoot()
    if root.is_s3:
        raise ValueError("generate writes to a local data root; upload the files yourself for S3")
    values = {k: v for k, v in spec.items() if v is not None}
    if "start" in values:
        values["start"] = _day(values["start"])
    gen_spec = SociodemoSpec(**values)
    result = write_dataset(gen_spec, root.base)
    root.put_bytes(json.dumps(asdict(gen_spec), default=str, indent=2).encode(), SPEC_REL)
    return {**result, "spec": {k: str(v) for k, v in asdict(gen_spec).items()}}


def generated_spec(root: DataRoot | None = None):
    """The generator's spec if the data root holds a generated dataset (``sociodemo/generated/spec.json``)."""
    from pipelines.sociodemo.generate import SociodemoSpec

    root = root or DataRoot()
    if not root.exists(SPEC_REL):
        return None
    raw = json.loads(root.read_bytes(SPEC_REL))
    known = {f.name for f in fields(SociodemoSpec)}
    values = {k: v for k, v in raw.items() if k in known}
    values["start"] = _day(values["start"])
    return SociodemoSpec(**values)


# -- validation (the platform's ingest contract: quarantine and status committed last) --------------------------

def events_ready(day: str | date) -> bool:
    """Whether the day's event drop has arrived (what ``wait_for_events`` pokes)."""
    return ingest.drop_ready(DataRoot(), schema.raw_events_rel_dir(_day(day)))


def validate(day: str | date, max_bad_share: float | None = None) -> dict:
    """Validate and stage a day's events; bad rows to the quarantine table; past the threshold, raise."""
    from pipelines.sociodemo.validate import validate_day

    day = _day(day)
    threshold = get_settings().max_bad_share if max_bad_share is None else max_bad_share
    result = validate_day(day, DataRoot(), threshold)
    return {**result.as_dict(), "day": day.isoformat()}


def validate_targets(max_bad_share: float | None = None, through: str | date | None = None) -> dict:
    """Validate and stage the targets; bad rows to the quarantine table under partition ``targets``."""
    from pipelines.sociodemo.validate import validate_targets as run_validation

    threshold = get_settings().max_bad_share if max_bad_share is None else max_bad_share
    through = None if through in (None, "") else _day(through)
    return run_validation(DataRoot(), threshold, through).as_dict()


def latest_accepted_day(through: str | date | None = None) -> str:
    """The last day up to ``through`` whose events were accepted: what weekly training can be as of."""
    from pipelines.sociodemo.validate import accepted_days

    ensure_schema(pg_dsn())
    days = accepted_days(DataRoot(), None if through in (None, "") else _day(through))
    if not days:
        raise MissingPartitionError(f"no accepted sociodemo day up to {through}: run the daily DAG (or "
                                    "`sociodemo run --no-score`) first")
    return days[-1].isoformat()


# -- histories ------------------------------------------------------------------------------------------------

def update_histories(day: str | date, mode: str = "incremental") -> dict:
    """The feature table and the user sets as of ``day``; the feature schema goes to the registry."""
    from pipelines.sociodemo.history import build_features
    from pipelines.sociodemo.housekeeping import prune_history
    from pipelines.sociodemo.user_sets import build_user_sets

    day = _day(day)
    root = DataRoot()
    with registry.track_run(PIPELINE, "transform", params={"day": day, "mode": mode, "max_items": SET_MAX_ITEMS},
                            interval=_interval(day)) as run:
        built = build_features(day, root, mode=mode)
        sets_uri = build_user_sets(day, root, SET_MAX_ITEMS)
        run.artifact_uri = built.uri
        pruned = prune_history(day, root)
        run.summary = {"schema": built.schema(), "build": built.as_dict(), "user_sets": sets_uri,
                       "pruned": len(pruned["removed"])}
        run.log_metrics({"users": built.rows, "columns": len(built.columns), "seconds": built.seconds})
    return {"day": day.isoformat(), "features": built.uri, "user_sets": sets_uri, "users": built.rows,
            "config_hash": built.config_hash, "run_id": str(run.run_id)}


def _inputs(day: date) -> tuple[str, str]:
    """The feature table and user sets as of ``day`` (built by :func:`update_histories`), as local paths/URIs."""
    from pipelines.sociodemo.features import load_config

    root = DataRoot()
    features_rel = f"{schema.features_rel_dir(day, load_config().config_hash)}/features.parquet"
    sets_rel = f"{schema.user_sets_rel_dir(day, SET_MAX_ITEMS, None)}/user_sets.parquet"
    for rel in (features_rel, sets_rel):
        if not root.exists(rel):
            raise MissingPartitionError(f"{root.join(rel)} is missing: run update_histories for {day} first")
    return root.join(features_rel), root.join(sets_rel)


# -- training -------------------------------------------------------------------------------------------------

def model_params(flat: dict) -> dict:
    """The weekly DAG's flat Params (``catboost_iterations``, ``deepsets_time_budget_s``, ...) as per-model
    constructor arguments (``{"catboost": {"iterations": ...}}``); other keys are ignored."""
    nested: dict[str, dict] = {}
    for key, value in flat.items():
        name, _, arg = key.partition("_")
        if name in ("catboost", "deepsets", "topclass") and arg and value is not None:
            nested.setdefault(name, {})[arg] = value
    return nested


def version_id(as_of: date, models: list[str], params: dict) -> str:
    """``YYYYMMDD-<hash of models and params>``: retraining the same day with the same settings reuses the id."""
    digest = hashlib.sha1(json.dumps({"models": sorted(models), "params": params}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:8]
    return f"{as_of:%Y%m%d}-{digest}"


def _oracle_fn(root: DataRoot, as_of: date):
    """The generator's exact posterior as a predictor, when the data is generated (else None)."""
    spec = generated_spec(root)
    if spec is None:
        return None
    from pipelines.sociodemo.generate import oracle_probabilities
    from pipelines.sociodemo.models.base import Predictions

    through = min(as_of, spec.end)

    def oracle(uids):
        p_male, p_age = oracle_probabilities(spec, uids, through=through)
        return Predictions(uids=uids, p_male=p_male, p_age=p_age)

    return oracle


def read_targets(root: DataRoot | None = None):
    """The accepted (valid) targets as a DataFrame."""
    import pandas as pd

    from pipelines.sociodemo.validate import staged_targets_path

    return pd.read_parquet(staged_targets_path(root or DataRoot()))


def train(as_of: str | date, models: list[str] | tuple[str, ...] = DEFAULT_MODELS, params: dict | None = None,
          seed: int = 42) -> dict:
    """Train and evaluate ``models`` on the features as of ``as_of``; one registry run per model. No promotion.

    ``params`` maps a model name to its parameters (e.g. ``{"catboost": {"iterations": 300}}``). When the data
    root holds a generated dataset (``sociodemo/generated/spec.json``), the exact Bayes oracle is evaluated
    beside the models and recorded in each run at segment ``oracle``.
    """
    from pipelines.sociodemo.features import load_config
    from pipelines.sociodemo.models.train import train_and_evaluate

    as_of = _day(as_of)
    models = list(models)
    params = params or {}
    root = DataRoot()
    features, sets = _inputs(as_of)
    config_hash = load_config().config_hash
    targets = read_targets(root)
    version = version_id(as_of, models, params)
    rel_dir = f"{MODELS_REL}/{version}"
    oracle = _oracle_fn(root, as_of)
    with contextlib.ExitStack() as stack:
        runs = {name: stack.enter_context(registry.track_run(
            PIPELINE, "train", model_name=name, model_version=version, interval=_interval(as_of),
            params={"as_of": as_of, "models": models, "seed": seed, **params.get(name, {})})) for name in models}
        with tempfile.TemporaryDirectory(prefix="sociodemo-train-") as tmp:
            out_dir = Path(tmp) / version
            out_dir.mkdir()
            result = train_and_evaluate(_local(features), _local(sets), targets, out_dir, models=tuple(models),
                                        params=params, oracle_fn=oracle, seed=seed)
            report_dir = out_dir / "report"
            reports = []
            for path in map(Path, result.get("report", [])):
                if path.is_file() and out_dir not in path.parents:
                    report_dir.mkdir(exist_ok=True)
                    shutil.copy(path, report_dir / path.name)
                    path = report_dir / path.name
                reports.append(path.relative_to(out_dir).as_posix() if out_dir in path.parents else path.name)
            folders = {name: Path(info["folder"]).resolve().relative_to(out_dir.resolve()).as_posix()
                       for name, info in result["models"].items()}
            (out_dir / "training.json").write_text(json.dumps(
                {"version": version, "as_of": as_of.isoformat(), "table": result["table"], "folders": folders,
                 "n_train": result.get("n_train"), "n_test": result.get("n_test"), "params": params},
                indent=2, default=str))
            uri = root.put_tree(out_dir, rel_dir)
        table = result["table"]
        for name, run in runs.items():
            run.artifact_uri = root.join(rel_dir, folders[name])
            run.log_metrics(table.get(name, {}))
            if "oracle" in table:
                run.log_metrics(table["oracle"], segment="oracle")
            run.summary = {"version": version, "config_hash": config_hash, "fit": result["models"][name].get("fit", {}),
                           "features": features, "user_sets": sets, "n_train": result.get("n_train"),
                           "n_test": result.get("n_test"), "report": [root.join(rel_dir, r) for r in reports]}
    from pipelines.ops.jobs import render_reports
    from pipelines.sociodemo.housekeeping import prune_models

    run_ids = {name: str(run.run_id) for name, run in runs.items()}
    reports = render_reports(run_ids)  # one HTML report per run, beside its artifacts (never fails training)
    pruned = prune_models(root)
    return {"version": version, "as_of": as_of.isoformat(), "uri": uri, "table": table, "runs": run_ids,
            "reports": reports["written"], "pruned_models": pruned["removed"]}


def _local(uri: str) -> str:
    """A local path for a data-root URI: files under an S3 root are mirrored into the local cache first (the
    models read local Parquet; an S3 endpoint such as MinIO or moto is known only to the data root)."""
    root = DataRoot()
    if root.is_s3 and uri.startswith(root.uri + "/"):
        folder, _, name = uri[len(root.uri) + 1:].rpartition("/")
        return str(root.local_dir(folder) / name)
    return uri.removeprefix("file://")


# -- promotion ------------------------------------------------------------------------------------------------

def promote(model_name: str, run_id: str | None = None, by: str | None = None) -> dict:
    """Serve ``model_name`` from ``run_id`` (default: its latest successful training run). Always explicit."""
    ensure_schema(pg_dsn())
    if not run_id:
        rows = db.query("SELECT run_id FROM runs WHERE pipeline = %s AND kind = 'train' AND model_name = %s "
                        "AND status = 'success' ORDER BY finished_at DESC LIMIT 1", (PIPELINE, model_name))
        if not rows:
            raise ValueError(f"no successful sociodemo training run of {model_name!r} to promote")
        run_id = str(rows[0]["run_id"])
    registry.promote(PIPELINE, model_name, str(run_id), by=by)
    run = registry.promoted_run(PIPELINE, model_name)
    log.info("promoted sociodemo %s version %s (run %s)", model_name, run["model_version"], run_id)
    return {"model_name": model_name, "model_version": run["model_version"], "run_id": str(run_id),
            "artifact_uri": run["artifact_uri"]}


def serving_model(model_name: str | None = None) -> dict:
    """The promoted run scoring uses: ``model_name``'s, or the most recently promoted model's."""
    ensure_schema(pg_dsn())
    rows = db.query(
        """SELECT r.run_id, r.model_name, r.model_version, r.artifact_uri, r.summary, p.promoted_at
           FROM model_promotions p JOIN runs r USING (run_id)
           WHERE p.pipeline = %s AND p.alias = 'production' AND (%s::text IS NULL OR p.model_name = %s)
           ORDER BY p.promoted_at DESC LIMIT 1""",
        (PIPELINE, model_name, model_name))
    if not rows:
        which = f"model {model_name!r}" if model_name else "model"
        raise NoPromotedModelError(
            f"no promoted sociodemo {which}: train one (DAG sociodemo_train_weekly) and promote it explicitly, "
            "with the weekly DAG's `promote` Param, `python -m pipelines registry promote --pipeline sociodemo "
            "--model-name <model> --run-id <training run>` or pipelines.sociodemo.jobs.promote(<model>)")
    return rows[0]


# -- scoring --------------------------------------------------------------------------------------------------

def _prediction_rows(preds, model: dict, as_of: date, scored_at: datetime):
    """The rows to upsert, as a DataFrame of :data:`PREDICTION_COLUMNS` (built column-wise, not per user).

    ``sex_proba`` stays float64 and ``age_class`` int64 (for the run's metrics); ``age_class_proba`` is the
    Postgres array literal ``{a,b,c,d}`` of each probability's shortest round-trip text; the rest are constants.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    p_male, p_age = np.asarray(preds.p_male, dtype=np.float64), np.asarray(preds.p_age, dtype=np.float64)
    if not (np.isfinite(p_male).all() and np.isfinite(p_age).all()):
        raise ValueError("the model returned non-finite probabilities")
    if (p_male < 0).any() or (p_male > 1).any() or not np.allclose(p_age.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("the model returned probabilities outside [0, 1] or age rows not summing to 1")
    uids = np.asarray(preds.uids)
    if len(uids) != len(p_male) or len(p_age) != len(p_male):
        raise ValueError(f"predictions are misaligned: {len(uids)} uids, {len(p_male)} sex and {len(p_age)} age "
                         "probability rows")
    n = len(p_male)
    # Arrow formats floats in their shortest round-trip form (``0.25``, ``0.000001``) in C++: ~10x faster than
    # repr per value at 1M users, and the same doubles once Postgres parses them.
    texts = [pc.cast(pa.array(p_age[:, k]), pa.string()) for k in range(p_age.shape[1])]
    literal = pc.binary_join_element_wise("{", pc.binary_join_element_wise(*texts, ","), "}", "")

    def constant(value: str) -> pd.arrays.ArrowExtensionArray:
        return pd.arrays.ArrowExtensionArray(pa.repeat(pa.scalar(value, pa.string()), n))

    return pd.DataFrame({
        "user_id": uids.astype(np.int64),
        "sex_proba": p_male,
        "age_class": p_age.argmax(axis=1).astype(np.int64) if n else np.zeros(0, dtype=np.int64),
        "age_class_proba": pd.arrays.ArrowExtensionArray(literal),
        "model_name": constant(model["model_name"]),
        "model_version": constant(model["model_version"]),
        "as_of": constant(as_of.isoformat()),
        "scored_at": constant(scored_at.isoformat()),
    }, columns=PREDICTION_COLUMNS)


def _write_csv(rows, path: Path) -> None:
    """``rows`` (from :func:`_prediction_rows`) as the CSV the COPY reads: a header, strings quoted."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.Table.from_pandas(rows, preserve_index=False), path)


def _upsert(rows, model: dict, as_of: date, scored_at: datetime, run_id: str, dsn: str) -> int:
    """Every row in one transaction: COPY into a temp table, then one INSERT ... ON CONFLICT."""
    with tempfile.TemporaryDirectory(prefix="sociodemo-score-") as tmp:
        path = Path(tmp) / "scores.csv"
        _write_csv(rows, path)
        with db.transaction(dsn) as cur, open(path) as stream:
            db.advisory_xact_lock(cur, "sociodemo.predictions")
            cur.execute("CREATE TEMP TABLE sociodemo_scores_stage (LIKE sociodemo_predictions) ON COMMIT DROP")
            n = db.copy_csv(cur, "sociodemo_scores_stage", PREDICTION_COLUMNS, stream)
            cur.execute(
                """INSERT INTO sociodemo_predictions AS p
                   SELECT * FROM sociodemo_scores_stage
                   ON CONFLICT (user_id) DO UPDATE SET
                       sex_proba = EXCLUDED.sex_proba, age_class = EXCLUDED.age_class,
                       age_class_proba = EXCLUDED.age_class_proba, model_name = EXCLUDED.model_name,
                       model_version = EXCLUDED.model_version, as_of = EXCLUDED.as_of,
                       scored_at = EXCLUDED.scored_at
                   WHERE EXCLUDED.as_of >= p.as_of""")  # a backfilled older day never replaces newer scores
            cur.execute(
                """INSERT INTO sociodemo_scoring_runs (as_of, model_name, model_version, users, run_id, status,
                                                      scored_at)
                   VALUES (%s, %s, %s, %s, %s, 'success', %s)
                   ON CONFLICT (as_of) DO UPDATE SET model_name = EXCLUDED.model_name,
                       model_version = EXCLUDED.model_version, users = EXCLUDED.users, run_id = EXCLUDED.run_id,
                       status = EXCLUDED.status, scored_at = EXCLUDED.scored_at""",
                (as_of, model["model_name"], model["model_version"], n, run_id, scored_at))
    return n


def score(day: str | date, model_name: str | None = None, chunk_users: int = 200_000) -> dict:
    """Score every user of the features as of ``day`` with the promoted model; upsert them in one transaction.

    Users are read and predicted ``chunk_users`` at a time, so memory does not grow with the user count (only
    the predictions, five numbers a user, are gathered). ``scored_at`` is the end of the day's interval, not the
    wall clock, so rerunning a day writes the same rows.
    """
    import numpy as np

    from pipelines.sociodemo.features import load_config
    from pipelines.sociodemo.models.base import Predictions, iter_datasets, load_model

    day = _day(day)
    dsn = pg_dsn()
    model = serving_model(model_name)
    trained_on = (model.get("summary") or {}).get("config_hash")
    current = load_config().config_hash
    if trained_on and trained_on != current:
        raise PipelineError(
            f"the promoted {model['model_name']} {model['model_version']} was trained on feature config "
            f"{trained_on}, but today's histories use {current}: retrain (sociodemo_train_weekly) and promote "
            "a model of the current features before scoring")
    root = DataRoot()
    features, sets = _inputs(day)
    interval = _interval(day)
    with registry.track_run(PIPELINE, "score", model_name=model["model_name"], model_version=model["model_version"],
                            params={"day": day, "promoted_run": model["run_id"]}, interval=interval) as run:
        predictor = load_model(root.local_tree(root.rel_of(model["artifact_uri"])))
        parts = [predictor.predict(chunk) for chunk in iter_datasets(_local(features), _local(sets), chunk_users)]
        preds = Predictions(uids=np.concatenate([p.uids for p in parts]) if parts else np.array([], dtype=np.int64),
                            p_male=np.concatenate([p.p_male for p in parts]) if parts else np.zeros(0),
                            p_age=np.concatenate([p.p_age for p in parts]) if parts else np.zeros((0, 4)))
        rows = _prediction_rows(preds, model, day, interval[1])
        n = _upsert(rows, model, day, interval[1], str(run.run_id), dsn)
        run.artifact_uri = features
        counts = rows["age_class"].value_counts()
        share = {f"age_class_{k}_share": int(counts.get(k, 0)) / max(n, 1) for k in range(4)}
        run.log_metrics({"users": n, "mean_sex_proba": float(rows["sex_proba"].sum()) / max(n, 1), **share})
        run.summary = {"users": n, "model_run": str(model["run_id"]), "scored_at": interval[1].isoformat()}
    return {"day": day.isoformat(), "users": n, "model_name": model["model_name"],
            "model_version": model["model_version"], "run_id": str(run.run_id)}


# -- everything, without Airflow ------------------------------------------------------------------------------

def run_day(day: str | date, max_bad_share: float | None = None, model_name: str | None = None) -> dict:
    """What one daily DAG run does, in one process: validate → update_histories → score."""
    validated = validate(day, max_bad_share)
    histories = update_histories(day)
    return {"validate": validated, "update_histories": histories, "score": score(day, model_name)}

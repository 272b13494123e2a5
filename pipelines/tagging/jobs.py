"""The tagging pipeline's steps, as the DAGs' tasks and the CLI call them. Each is idempotent per partition.

Weekly (``tagging_train_weekly``): ``validate_corpus`` → ``segment("corpus")`` → ``train`` (every model on every
view, one registry run each, a report) → ``promote`` (only when the ``promote`` Param names a model, or
``best``); beside them ``segmentation_quality`` (pycantonese against HKCanCor's gold words).
Daily (``tagging_daily``): ``validate`` a day's drop → ``segment(day)`` → ``tag`` the day's articles with the
promoted model into ``tagging_article_tags``.

Data root layout (besides :mod:`~pipelines.tagging.schema`'s input folders)::

    tagging/staged/<partition>/run=<id>/        a validation run's articles.parquet and quarantine
    tagging/segments/segmenter=<version>/       the segmentation cache (Parquet parts, by content hash)
    tagging/models/<version>/models/<model>/    one trained model (model.joblib + meta.json)
    tagging/models/<version>/report/            the training report: report.md, PNG charts, CSV lists
    tagging/reports/segmentation/<segmenter>/   the segmentation-quality report
    tagging/generated/                          the generator's spec and truth (its presence enables the oracle)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pipelines import db, registry
from pipelines.days import as_day as _day
from pipelines.days import day_interval as _interval
from pipelines.errors import MissingPartitionError, PipelineError, RunRejected, UsageError
from pipelines.migrate import ensure_schema
from pipelines.settings import get_settings, pg_dsn
from pipelines.storage import DataRoot
from pipelines.tagging import schema

log = logging.getLogger(__name__)

PIPELINE = schema.PIPELINE
TRUTH_REL = f"{schema.GENERATED_REL}/truth.parquet"
SPEC_REL = f"{schema.GENERATED_REL}/spec.json"
TAG_COLUMNS = ["article_id", "tag", "probability", "rank", "model_name", "model_version", "content_hash", "as_of",
               "tagged_at"]


class NoPromotedModelError(MissingPartitionError):
    """Tagging needs a promoted model, and promotion is explicit: someone has to promote one first (the CLI
    exits 4, "input missing"; the daily DAG skips tagging)."""


class FeatureMismatchError(RunRejected):
    """The promoted model was trained on text prepared differently (another segmenter or text rules): retrying
    cannot help, retraining does."""


# -- generate ---------------------------------------------------------------------------------------------------

def generate(**spec: Any) -> dict:
    """Write generated articles (corpus, daily drops, truth) into the data root (local, or S3 through a temporary
    folder); ``files`` in the answer are the data root's addresses."""
    from pipelines.tagging.generate import TaggingSpec, write_dataset

    root = DataRoot()
    values = {k: v for k, v in spec.items() if v is not None}
    if "start" in values:
        values["start"] = _day(values["start"])
    if not root.is_s3:
        return write_dataset(TaggingSpec(**values), root.base)
    with tempfile.TemporaryDirectory(prefix="tagging-gen-") as tmp:
        made = write_dataset(TaggingSpec(**values), Path(tmp))
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                root.put_file(path, path.relative_to(tmp).as_posix())
    files = [root.join(Path(f).relative_to(tmp).as_posix()) for f in made["files"]]
    return {**made, "files": files}


def generated_truth(root: DataRoot | None = None) -> dict[str, dict] | None:
    """The generator's truth by article id (``content_hash``, ``clean_tags``, ``topic_words``), if generated."""
    import pyarrow.parquet as pq

    root = root or DataRoot()
    if not root.exists(TRUTH_REL):
        return None
    table = pq.read_table(root.local_dir(schema.GENERATED_REL) / "truth.parquet",
                          columns=["id", "content_hash", "clean_tags", "topic_words"])
    return {row["id"]: row for row in table.to_pylist()}


# -- validation -------------------------------------------------------------------------------------------------

def drop_ready(day: str | date) -> bool:
    """Whether the day's drop has a file (what ``wait_for_drop`` pokes)."""
    from pipelines import ingest

    return ingest.drop_ready(DataRoot(), schema.raw_rel_dir(_day(day).isoformat()))


def corpus_ready() -> bool:
    """Whether the labelled corpus folder has a file (what ``wait_for_corpus`` pokes)."""
    from pipelines import ingest

    return ingest.drop_ready(DataRoot(), schema.raw_rel_dir(schema.CORPUS_PARTITION))


def _threshold(max_bad_share: float | None) -> float:
    return get_settings().max_bad_share if max_bad_share is None else float(max_bad_share)


def validate(day: str | date, max_bad_share: float | None = None) -> dict:
    """Validate and stage a day's drop (the ingest contract); past the threshold, record why and raise."""
    from pipelines.tagging.ingest import validate_partition

    day = _day(day)
    result = validate_partition(day.isoformat(), DataRoot(), _threshold(max_bad_share), interval=_interval(day))
    return {**result.as_dict(), "day": day.isoformat()}


def validate_corpus(max_bad_share: float | None = None, training_params: dict[str, Any] | None = None) -> dict:
    """Validate and stage the labelled corpus (partition ``corpus``). With ``training_params`` (the weekly DAG's
    Params), they are checked first, so a typo in the grid fails before any work is done."""
    from pipelines.tagging.ingest import validate_partition

    if training_params is not None:
        training_config(training_params)
    result = validate_partition(schema.CORPUS_PARTITION, DataRoot(), _threshold(max_bad_share))
    return result.as_dict()


# -- segmentation -----------------------------------------------------------------------------------------------

def _articles(partition: str):
    from pipelines.tagging.ingest import accepted_articles, read_articles

    ensure_schema(pg_dsn())
    return read_articles(accepted_articles(partition))


def _words(frame, workers: int | None = None, progress: bool = False):
    from pipelines.tagging.segment import SegmentCache, words_for
    from pipelines.tagging.text import article_text

    texts = [article_text(t, b) for t, b in zip(frame["title"], frame["body"], strict=True)]
    return words_for(list(frame["content_hash"]), texts, SegmentCache(DataRoot()), workers, progress)


def segment(partition: str | date, workers: int | None = None, progress: bool = False) -> dict:
    """Segment a partition's accepted articles into the cache (only those never segmented before)."""
    from pipelines.tagging.segment import segmenter_version

    partition = partition if partition == schema.CORPUS_PARTITION else _day(partition).isoformat()
    interval = None if partition == schema.CORPUS_PARTITION else _interval(_day(partition))
    with registry.track_run(PIPELINE, "transform", model_name="segmenter", model_version=segmenter_version(),
                            params={"partition": partition, "workers": workers}, interval=interval) as run:
        frame = _articles(partition)
        _, stats = _words(frame, workers, progress)
        seconds = stats.seconds_segment
        metrics = {"articles": stats.articles, "cached": stats.cached, "segmented": stats.segmented,
                   "segment_seconds": seconds, "articles_per_second": stats.segmented / seconds if seconds else None}
        run.log_metrics(metrics)
        run.summary = stats.as_dict()
    return {"partition": partition, **stats.as_dict(), "run_id": str(run.run_id)}


def segmentation_quality(progress: bool = False) -> dict:
    """pycantonese against HKCanCor's gold words beside honest baselines (and, on generated data, the share of
    planted topic words kept whole); recorded as an ``evaluate`` run with a report."""
    from pipelines.tagging import segquality
    from pipelines.tagging.segment import segmenter_version

    root = DataRoot()
    version = segmenter_version()
    rel = f"{schema.REPORTS_REL}/segmentation/{version}"
    with registry.track_run(PIPELINE, "evaluate", model_name="segmenter", model_version=version,
                            params={"heldout_share": 0.2, "seed": 0}) as run:
        result = segquality.evaluate()
        planted = _planted_word_recall(root)
        with tempfile.TemporaryDirectory(prefix="tagging-segq-") as tmp:
            files = segquality.write_report(Path(tmp) / "report", result, planted)
            (Path(tmp) / "report" / "segmentation.json").write_text(json.dumps({**result, "planted": planted},
                                                                                 default=str, indent=2))
            uri = root.put_dir(Path(tmp) / "report", rel)
        table = result["table"]
        run.log_metrics({k: v for k, v in table[segquality.IN_SAMPLE].items() if isinstance(v, int | float)})
        for name, row in table.items():
            run.log_metrics({k: v for k, v in row.items() if isinstance(v, int | float)}, segment=f"model={name}")
        if planted:
            run.log_metrics({"planted_words_kept_whole": planted["kept_whole"]}, segment="generated")
        run.artifact_uri = uri
        run.summary = {"utterances": result["utterances"], "report": [root.join(rel, f.name) for f in files],
                       "planted": planted}
    return {"table": table, "utterances": result["utterances"], "planted": planted, "uri": uri,
            "run_id": str(run.run_id)}


def _planted_word_recall(root: DataRoot) -> dict | None:
    """On a generated, accepted and segmented corpus: planted topic words kept whole by the segmentation."""
    from pipelines import ingest
    from pipelines.tagging import segquality
    from pipelines.tagging.segment import SegmentCache

    truth = generated_truth(root)
    if truth is None or ingest.accepted(PIPELINE, schema.CORPUS_PARTITION) is None:
        return None
    frame = _articles(schema.CORPUS_PARTITION)
    rows = [truth[i] for i, h in zip(frame["id"], frame["content_hash"], strict=True)
            if i in truth and truth[i]["content_hash"] == h]
    words = SegmentCache(root).lookup([r["content_hash"] for r in rows])
    rows = [r for r in rows if r["content_hash"] in words]
    if not rows:
        return None
    return segquality.planted_word_recall([words[r["content_hash"]] for r in rows], [r["topic_words"] for r in rows])


# -- training ---------------------------------------------------------------------------------------------------

def version_id(as_of: date, config: dict, corpus_run: str, feature_version: str) -> str:
    """``YYYYMMDD-<hash>`` of the Params, the corpus run and the feature definition: retraining the same day
    with the same settings on the same data reuses the id (and replaces the same folder)."""
    digest = hashlib.sha1(json.dumps({"config": config, "corpus": corpus_run, "features": feature_version},
                                     sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{as_of:%Y%m%d}-{digest}"


def training_frame(progress: bool = False):
    """The accepted corpus with its words (segmenting what the cache lacks): the models' training input."""
    import pandas as pd

    from pipelines.tagging.features import feature_frame

    frame = _articles(schema.CORPUS_PARTITION)
    words, _ = _words(frame, progress=progress)
    features = feature_frame(list(frame["title"]), list(frame["body"]), list(frame["content_hash"]), words)
    return pd.concat([frame.reset_index(drop=True), features], axis=1)


def train_config(families=None, views=None, grid=None, params=None, cv_folds: int = 5, holdout_share: float = 0.2,
                 seed: int = 42, threshold: float | None = None, n_jobs: int | None = None):
    """A :class:`~pipelines.tagging.models.train.TrainConfig` from Params (None = the defaults), checked.
    ``n_jobs``: processes fitting CV folds at once (``PIPELINES_TAGGING_TRAIN_JOBS``, else the cores); it
    changes the speed, never the result."""
    import os

    from pipelines.tagging.models.train import TrainConfig

    if n_jobs is None:
        n_jobs = int(os.environ.get("PIPELINES_TAGGING_TRAIN_JOBS") or os.cpu_count() or 1)

    defaults = TrainConfig()
    config = TrainConfig(families=tuple(families or defaults.families), views=tuple(views or defaults.views),
                         grid=defaults.grid if grid is None else dict(grid), params=dict(params or {}),
                         cv_folds=int(cv_folds), holdout_share=float(holdout_share), seed=int(seed),
                         threshold=defaults.threshold if threshold is None else float(threshold), n_jobs=int(n_jobs))
    config.check()
    return config


def train(as_of: str | date, config=None, progress: bool = False) -> dict:
    """Train, cross-validate and hold out every model of ``config`` on the accepted corpus; one registry run per
    model (held-out metrics overall, every other model and the oracle as ``model=<name>`` segments, per-tag
    scores as ``tag=<tag>``). Promotes nothing."""
    from pipelines import ingest
    from pipelines.tagging.models.report import write_report
    from pipelines.tagging.models.train import train_and_evaluate
    from pipelines.tagging.segment import feature_version, segmenter_version

    as_of = _day(as_of)
    config = config or train_config()
    root = DataRoot()
    ensure_schema(pg_dsn())
    corpus = ingest.accepted(PIPELINE, schema.CORPUS_PARTITION)
    if corpus is None:
        raise MissingPartitionError("tagging has no accepted corpus: validate tagging/raw/corpus first "
                                    "(`python -m pipelines tagging validate --corpus`)")
    features = feature_version()
    params = config.as_dict()
    version = version_id(as_of, params, str(corpus["run_id"]), features)
    rel_dir = f"{schema.MODELS_REL}/{version}"
    names = config.model_names()
    with contextlib.ExitStack() as stack:
        runs = {name: stack.enter_context(registry.track_run(
            PIPELINE, "train", model_name=name, model_version=version, interval=_interval(as_of),
            params={"as_of": as_of, "corpus_run": str(corpus["run_id"]), "feature_version": features,
                    **params})) for name in names}
        data = training_frame(progress)
        truth = generated_truth(root)
        clean = None
        if truth is not None:
            hashes = dict(zip(data["id"], data["content_hash"], strict=True))
            if all(i in truth and truth[i]["content_hash"] == h for i, h in hashes.items()):
                clean = {i: list(truth[i]["clean_tags"]) for i in hashes}
        tags = [t for t in schema.known_tags() if any(t in row for row in data["tags"])]
        with tempfile.TemporaryDirectory(prefix="tagging-train-") as tmp:
            out = Path(tmp) / version
            result = train_and_evaluate(data, out, config, tags, features, clean, progress)
            extra = _segmentation_section(root)
            files = write_report(out / "report", result, f"Cantonese article tagging: training {version}", extra)
            public = {k: v for k, v in result.items() if not k.startswith("_")}
            public["folders"] = {n: Path(f).relative_to(out).as_posix() for n, f in result["folders"].items()}
            public.update({"version": version, "as_of": as_of.isoformat(), "segmenter": segmenter_version(),
                           "corpus_run": str(corpus["run_id"])})
            (out / "training.json").write_text(json.dumps(public, indent=2, default=str, ensure_ascii=False))
            uri = root.put_tree(out, rel_dir)
        report_uris = [root.join(rel_dir, "report", f.name) for f in files[:1]]
        table = result["table"]
        for name, run in runs.items():
            run.artifact_uri = root.join(rel_dir, public["folders"][name])
            run.log_metrics({k: v for k, v in table[name].items() if isinstance(v, int | float)})
            for other, row in table.items():
                if other != name:
                    run.log_metrics({k: row[k] for k in ("accuracy", "macro_f1", "top1_accuracy")},
                                    segment=f"model={other}")
            if result["oracle"]:
                run.log_metrics({k: v for k, v in result["oracle"].items() if isinstance(v, int | float)},
                                segment="model=oracle")
            per_tag = _per_tag(result, name)
            for tag, row in per_tag.items():
                run.log_metrics(row, segment=f"tag={tag}")
            run.summary = {"version": version, "report": report_uris, "best": result["best"],
                           "n_train": result["n_train"], "n_holdout": result["n_holdout"], "tags": tags,
                           "search": result["searches"].get(name)}
    from pipelines.ops.jobs import render_reports

    log.info("tagging %s trained %d models; best %s", version, len(names), result["best"])
    run_ids = {n: str(r.run_id) for n, r in runs.items()}
    reports = render_reports(run_ids)  # one HTML report per run, beside its artifacts (never fails training)
    return {"version": version, "as_of": as_of.isoformat(), "uri": uri, "best": result["best"],
            "report": report_uris[0], "runs": run_ids, "reports": reports["written"],
            "table": {n: {k: table[n][k] for k in ("accuracy", "top1_accuracy", "macro_f1", "cv_accuracy_mean",
                                                     "cv_macro_f1_mean", "cv_misclassified")} for n in table},
            "oracle": result["oracle"], "comparisons": result["comparisons"]}


def _per_tag(result: dict, name: str) -> dict[str, dict[str, float]]:
    from pipelines.tagging.models import evaluate

    frame = evaluate.per_tag(result["_Y_test"], result["_holdout_proba"][name], result["tags"],
                             result["config"]["threshold"])
    return {tag: {k: float(v) for k, v in row.items()} for tag, row in frame.iterrows()}


def _segmentation_section(root: DataRoot) -> list[str]:
    """The latest segmentation-quality table for the training report (when it was measured)."""
    from pipelines.tagging.segment import segmenter_version

    rel = f"{schema.REPORTS_REL}/segmentation/{segmenter_version()}/segmentation.json"
    if not root.exists(rel):
        return ["## Segmentation", "", "Not measured yet (`python -m pipelines tagging segmentation-quality`).", ""]
    data = json.loads(root.read_bytes(rel))
    lines = ["## Segmentation quality (held-out HKCanCor files)", "",
             "| segmenter | boundary F1 | word F1 | OOV recall |", "|---|---:|---:|---:|"]
    for name, row in data["table"].items():
        note = " (in-sample)" if name == data["in_sample"] else ""
        lines.append(f"| {name}{note} | {row['boundary_f1']:.3f} | {row['word_f1']:.3f} | {row['oov_recall']:.3f} |")
    if data.get("planted"):
        lines += ["", f"Planted topic words kept whole by pycantonese: {data['planted']['kept_whole']:.1%}."]
    return [*lines, ""]


def training_config(params: dict[str, Any]):
    """The weekly DAG's Params (``models``, ``views``, ``grid``, ``cv_folds``, ``holdout_share``, ``seed``,
    ``threshold``, ``catboost_iterations``) as a checked config (:class:`UsageError` on nonsense)."""
    catboost = {"iterations": int(params["catboost_iterations"])} if params.get("catboost_iterations") else {}
    return train_config(families=params.get("models"), views=params.get("views"), grid=params.get("grid"),
                        params={"catboost": catboost} if catboost else None,
                        cv_folds=params.get("cv_folds", 5), holdout_share=params.get("holdout_share", 0.2),
                        seed=params.get("seed", 42), threshold=params.get("threshold"))


def train_weekly(as_of: str | date, params: dict[str, Any]) -> dict:
    """The weekly DAG's training: its Params as a config (:func:`training_config`), then :func:`train`.
    Returns what XCom needs."""
    result = train(as_of, training_config(params))
    return {k: result[k] for k in ("version", "as_of", "uri", "best", "report", "runs")}


def promote_trained(trained: dict, choice: str, by: str | None = None) -> dict:
    """The weekly DAG's promotion: nothing (``""``), the best held-out model of this training (``"best"``), or the
    named model of this training."""
    if not choice:
        return {"promoted": None}
    if choice == "best":
        return promote("best", version=trained["version"], by=by)
    if choice not in trained["runs"]:
        raise UsageError(f"promote={choice!r} was not trained in this run (models: {sorted(trained['runs'])})")
    return promote(choice, trained["runs"][choice], by=by)


def cleanup(keep_attempts: int = 2) -> dict:
    """The retention policy: staged runs no reader needs are removed (each partition keeps its accepted run and
    its newest ``keep_attempts`` other attempts)."""
    from pipelines import ingest

    return ingest.prune_staging(PIPELINE, keep_attempts)


# -- promotion --------------------------------------------------------------------------------------------------

def promote(model_name: str, run_id: str | None = None, version: str | None = None, by: str | None = None) -> dict:
    """Serve ``model_name`` (a ``<family>_<view>`` name) from ``run_id`` (default: its latest successful training
    run, or the one of ``version``). ``model_name="best"`` picks the trained model with the best held-out macro
    F1 of ``version`` (required then). Always explicit: training never promotes."""
    ensure_schema(pg_dsn())
    if model_name == "best":
        if not version:
            raise UsageError("promote best needs the training version whose best model to promote")
        rows = db.query("""SELECT r.run_id, r.model_name FROM runs r JOIN run_metrics m USING (run_id)
                           WHERE r.pipeline = %s AND r.kind = 'train' AND r.status = 'success'
                             AND r.model_version = %s AND r.model_name <> 'majority'
                             AND m.segment = '' AND m.name = 'macro_f1'
                           ORDER BY m.value DESC NULLS LAST, r.model_name LIMIT 1""", (PIPELINE, version))
        if not rows:
            raise UsageError(f"no successful tagging training runs in version {version}")
        model_name, run_id = rows[0]["model_name"], str(rows[0]["run_id"])
    if not run_id:
        rows = db.query("""SELECT run_id FROM runs WHERE pipeline = %s AND kind = 'train' AND model_name = %s
                             AND status = 'success' AND (%s::text IS NULL OR model_version = %s)
                           ORDER BY finished_at DESC LIMIT 1""", (PIPELINE, model_name, version, version))
        if not rows:
            raise UsageError(f"no successful tagging training run of {model_name!r} to promote")
        run_id = str(rows[0]["run_id"])
    registry.promote(PIPELINE, model_name, str(run_id), by=by)
    run = registry.promoted_run(PIPELINE, model_name)
    log.info("promoted tagging %s version %s (run %s)", model_name, run["model_version"], run_id)
    return {"model_name": model_name, "model_version": run["model_version"], "run_id": str(run_id),
            "artifact_uri": run["artifact_uri"]}


def serving_model(model_name: str | None = None) -> dict:
    """The promoted run tagging uses: ``model_name``'s, or the most recently promoted model's."""
    ensure_schema(pg_dsn())
    rows = db.query(
        """SELECT r.run_id, r.model_name, r.model_version, r.artifact_uri, p.promoted_at
           FROM model_promotions p JOIN runs r USING (run_id)
           WHERE p.pipeline = %s AND p.alias = 'production' AND (%s::text IS NULL OR p.model_name = %s)
           ORDER BY p.promoted_at DESC LIMIT 1""", (PIPELINE, model_name, model_name))
    if not rows:
        which = f"model {model_name!r}" if model_name else "model"
        raise NoPromotedModelError(
            f"no promoted tagging {which}: train (DAG tagging_train_weekly) and promote one explicitly, with the "
            "weekly DAG's `promote` Param or `python -m pipelines tagging promote --model <name>`")
    return rows[0]


def load_serving_model(model: dict):
    """The promoted model, refusing one trained on another feature definition than today's."""
    from pipelines.tagging.models.base import TagModel
    from pipelines.tagging.segment import feature_version

    root = DataRoot()
    try:
        rel = root.rel_of(model["artifact_uri"])
    except ValueError as exc:
        raise PipelineError(f"model {exc}") from None
    tagger = TagModel.load(root.local_tree(rel))
    if tagger.feature_version != feature_version():
        raise FeatureMismatchError(
            f"the promoted {model['model_name']} {model['model_version']} was trained on feature definition "
            f"{tagger.feature_version}, but text is now prepared as {feature_version()} (pycantonese or the text "
            "rules changed): retrain and promote a new version")
    return tagger


# -- tagging ----------------------------------------------------------------------------------------------------

def _tag_rows(frame, predictions: list[list[tuple[str, float]]], model: dict, day: date,
              tagged_at: datetime) -> list[tuple]:
    rows = []
    for article_id, content, tags in zip(frame["id"], frame["content_hash"], predictions, strict=True):
        for rank, (tag, probability) in enumerate(tags, 1):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"probability {probability} of {article_id}/{tag} outside [0, 1]")
            rows.append((article_id, tag, probability, rank, model["model_name"], model["model_version"], content,
                         day, tagged_at))
    return rows


def _upsert(rows: list[tuple], article_ids: list[str], day: date, model: dict, tagged_at: datetime, run_id: str,
            ingest_run: str | None, dsn: str) -> dict:
    """Replace the day's articles' tag sets in one transaction, except articles tagged from a newer day."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(TAG_COLUMNS)
    writer.writerows([[*r[:7], r[7].isoformat(), r[8].isoformat()] for r in rows])
    buffer.seek(0)
    with db.transaction(dsn) as cur:
        db.advisory_xact_lock(cur, "tagging.article_tags")
        cur.execute("CREATE TEMP TABLE tagging_stage (LIKE tagging_article_tags) ON COMMIT DROP")
        cur.execute("CREATE TEMP TABLE tagging_day_articles (article_id text PRIMARY KEY) ON COMMIT DROP")
        db.copy_csv(cur, "tagging_stage", TAG_COLUMNS, buffer)
        cur.executemany("INSERT INTO tagging_day_articles VALUES (%s) ON CONFLICT DO NOTHING",
                        [(a,) for a in article_ids])
        # An article whose tags were written from a newer day keeps them: a backfill never rolls tags back.
        cur.execute("""DELETE FROM tagging_day_articles d WHERE EXISTS (
                           SELECT 1 FROM tagging_article_tags t WHERE t.article_id = d.article_id AND t.as_of > %s)""",
                    (day,))
        cur.execute("SELECT count(*) FROM tagging_day_articles")
        written = cur.fetchone()[0]
        cur.execute("""DELETE FROM tagging_article_tags t USING tagging_day_articles d
                       WHERE t.article_id = d.article_id""")
        cur.execute("""INSERT INTO tagging_article_tags SELECT s.* FROM tagging_stage s
                       JOIN tagging_day_articles d USING (article_id)""")
        tags_written = cur.rowcount
        cur.execute(
            """INSERT INTO tagging_days (day, model_name, model_version, articles, articles_written, tags_written,
                                         ingest_run_id, run_id, tagged_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (day) DO UPDATE SET model_name = EXCLUDED.model_name,
                   model_version = EXCLUDED.model_version, articles = EXCLUDED.articles,
                   articles_written = EXCLUDED.articles_written, tags_written = EXCLUDED.tags_written,
                   ingest_run_id = EXCLUDED.ingest_run_id, run_id = EXCLUDED.run_id, tagged_at = EXCLUDED.tagged_at""",
            (day, model["model_name"], model["model_version"], len(article_ids), written, tags_written, ingest_run,
             run_id, tagged_at))
    return {"articles_written": written, "tags_written": tags_written}


def tag(day: str | date, model_name: str | None = None, progress: bool = False) -> dict:
    """Tag the day's accepted articles with the promoted model; upsert every tag in one transaction.

    ``tagged_at`` is the end of the day's interval, not the wall clock, so rerunning a day writes the same rows.
    When the drop carries editor tags, the run also records how well the model agreed with them.
    """
    from pipelines import ingest
    from pipelines.tagging.features import feature_frame
    from pipelines.tagging.models import evaluate

    day = _day(day)
    dsn = pg_dsn()
    model = serving_model(model_name)
    interval = _interval(day)
    with registry.track_run(PIPELINE, "score", model_name=model["model_name"], model_version=model["model_version"],
                            params={"day": day, "promoted_run": str(model["run_id"])}, interval=interval) as run:
        tagger = load_serving_model(model)
        frame = _articles(day.isoformat())
        accepted = ingest.accepted(PIPELINE, day.isoformat())
        words, stats = _words(frame, progress=progress)
        X = feature_frame(list(frame["title"]), list(frame["body"]), list(frame["content_hash"]), words)
        proba = tagger.predict_proba(X) if len(frame) else None
        predictions = tagger.predict_tags(X) if len(frame) else []
        rows = _tag_rows(frame, predictions, model, day, interval[1])
        written = _upsert(rows, list(frame["id"]), day, model, interval[1], str(run.run_id),
                          str(accepted["run_id"]) if accepted else None, dsn)
        metrics = {"articles": len(frame), "tags": len(rows), **written, "segmented": stats.segmented,
                   "tags_per_article": len(rows) / max(len(frame), 1),
                   "mean_top_probability": float(proba.max(axis=1).mean()) if proba is not None else None}
        run.log_metrics(metrics)
        shares = {f"share_{t}": sum(1 for p in predictions if p and p[0][0] == t) / max(len(frame), 1)
                  for t in tagger.tags}
        run.log_metrics(shares, segment="top_tag")
        editor = [i for i, t in enumerate(frame["tags"]) if t]
        if editor and proba is not None:
            live = evaluate.metrics(evaluate.indicator([frame["tags"][i] for i in editor], tagger.tags),
                                    proba[editor], tagger.threshold)
            run.log_metrics({k: v for k, v in live.items() if isinstance(v, int | float)}, segment="editor_tags")
            metrics["editor_tags"] = live
        run.artifact_uri = model["artifact_uri"]
        run.summary = {**metrics, "model_run": str(model["run_id"]), "tagged_at": interval[1].isoformat()}
    return {"day": day.isoformat(), "model_name": model["model_name"], "model_version": model["model_version"],
            **metrics, "run_id": str(run.run_id)}


# -- everything, without Airflow --------------------------------------------------------------------------------

def run_day(day: str | date, max_bad_share: float | None = None, model_name: str | None = None,
            progress: bool = False) -> dict:
    """What one daily DAG run does, in one process: validate → segment → tag."""
    validated = validate(day, max_bad_share)
    segmented = segment(day, progress=progress)
    return {"validate": validated, "segment": segmented, "tag": tag(day, model_name, progress)}


def tagged_articles(day: str | date | None = None, limit: int = 10) -> list[dict]:
    """Tagged articles (newest day first) with their titles from the staged drop: what a reader would see."""
    from pipelines.tagging.ingest import accepted_articles, read_articles

    ensure_schema(pg_dsn())
    rows = db.query("""SELECT article_id, as_of, model_name,
                              string_agg(tag || ' ' || round(probability::numeric, 2), ', ' ORDER BY rank) AS tags
                       FROM tagging_article_tags WHERE %(day)s::date IS NULL OR as_of = %(day)s::date
                       GROUP BY article_id, as_of, model_name ORDER BY as_of DESC, article_id LIMIT %(limit)s""",
                    {"day": None if day is None else _day(day), "limit": limit})
    titles: dict[str, str] = {}
    for as_of in {r["as_of"] for r in rows}:
        with contextlib.suppress(MissingPartitionError):
            frame = read_articles(accepted_articles(as_of.isoformat()))
            titles.update(dict(zip(frame["id"], frame["title"], strict=True)))
    return [{**r, "title": titles.get(r["article_id"], "")} for r in rows]


def report(limit: int = 10) -> dict:
    """What the pipeline has written: tagged days, the latest training's comparison, the promoted model."""
    ensure_schema(pg_dsn())
    latest = db.query("""SELECT model_version FROM runs WHERE pipeline = %s AND kind = 'train' AND status = 'success'
                         ORDER BY finished_at DESC LIMIT 1""", (PIPELINE,))
    comparison = []
    if latest:
        comparison = db.query(
            """SELECT r.model_name AS model,
                      round(max(m.value) FILTER (WHERE m.name = 'accuracy')::numeric, 3) AS accuracy,
                      round(max(m.value) FILTER (WHERE m.name = 'top1_accuracy')::numeric, 3) AS top1,
                      round(max(m.value) FILTER (WHERE m.name = 'macro_f1')::numeric, 3) AS macro_f1,
                      round(max(m.value) FILTER (WHERE m.name = 'cv_accuracy_mean')::numeric, 3) AS cv_accuracy,
                      max(m.value) FILTER (WHERE m.name = 'cv_misclassified')::int AS cv_misclassified
               FROM runs r JOIN run_metrics m USING (run_id)
               WHERE r.pipeline = %s AND r.kind = 'train' AND r.model_version = %s AND m.segment = ''
               GROUP BY r.model_name ORDER BY 4 DESC""", (PIPELINE, latest[0]["model_version"]))
        oracle = db.query("""SELECT round(max(m.value) FILTER (WHERE m.name = 'accuracy')::numeric, 3) AS accuracy,
                                    round(max(m.value) FILTER (WHERE m.name = 'top1_accuracy')::numeric, 3) AS top1,
                                    round(max(m.value) FILTER (WHERE m.name = 'macro_f1')::numeric, 3) AS macro_f1
                             FROM runs r JOIN run_metrics m USING (run_id)
                             WHERE r.pipeline = %s AND r.model_version = %s AND m.segment = 'model=oracle'""",
                          (PIPELINE, latest[0]["model_version"]))
        if oracle and oracle[0]["accuracy"] is not None:
            comparison.append({"model": "oracle (ceiling)", **oracle[0], "cv_accuracy": None,
                               "cv_misclassified": None})
    return {
        "version": latest[0]["model_version"] if latest else None,
        "comparison": comparison,
        "promoted": db.query("""SELECT p.model_name, r.model_version, p.promoted_by, p.promoted_at
                                FROM model_promotions p JOIN runs r USING (run_id) WHERE p.pipeline = %s""",
                             (PIPELINE,)),
        "days": db.query("""SELECT day, model_name, model_version, articles, articles_written, tags_written
                            FROM tagging_days ORDER BY day DESC LIMIT %s""", (limit,)),
        "tags": db.query("""SELECT tag, count(*) AS articles, round(avg(probability)::numeric, 3) AS mean_probability
                            FROM tagging_article_tags GROUP BY tag ORDER BY 2 DESC"""),
    }


def spec_of(root: DataRoot | None = None) -> dict | None:
    """The generator's spec, when the data root holds generated data."""
    root = root or DataRoot()
    return json.loads(root.read_bytes(SPEC_REL)) if root.exists(SPEC_REL) else None


"""The keystroke pipeline's steps, as the DAGs' tasks and the CLI call them (seed 001's four pages).

* ``ingest``: a training set (paged) or a test document under the ingest contract (quarantine, status);
* ``analyse``: seed 001's Analyse page, the first N (at most 1,000) attempts with their features;
* ``train``: every requested model on one stratified holdout, beside chance, the majority user and (on
  generated data) the oracle; one registry run per model, the report with its charts; **no promotion**;
* ``compare``: every past version re-evaluated on this dataset's holdout (attempts a version trained on are
  left out for it), and ``history``: every version's metrics as recorded when it was trained;
* ``promote``: explicit, by model type of a training, version or registry run;
* ``predict``: a test document with a model version (default: the promoted one) → ``final_pred.json``, the
  predictions CSV (top-3 users and probabilities) and ``keystrokes_predictions``, in one transaction;
* ``enrol``: add users to an embedding model's gallery without retraining.

Data root layout: see :mod:`pipelines.keystrokes.schema` (``keystrokes/models/<name>/<version>/``,
``keystrokes/reports/...``, ``keystrokes/analyses/<partition>/``, ``keystrokes/predictions/...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipelines import db, registry
from pipelines import ingest as contract
from pipelines.days import as_day, day_interval
from pipelines.errors import MissingPartitionError
from pipelines.keystrokes import schema
from pipelines.keystrokes.errors import BadParams
from pipelines.migrate import ensure_schema
from pipelines.settings import get_settings, pg_dsn
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

PIPELINE = schema.PIPELINE
#: Per-model budgets the DAG exposes as flat Params (``gru_epochs`` → ``{"gru": {"epochs": ...}}``).
BUDGET_PARAMS = {
    "logreg_max_iter": ("logreg", "max_iter"), "linear_svm_c": ("linear_svm", "C"),
    "adaboost_estimators": ("adaboost", "n_estimators"), "random_forest_trees": ("random_forest", "n_estimators"),
    "catboost_iterations": ("catboost", "iterations"), "gru_epochs": ("gru", "epochs"),
    "embedding_epochs": ("embedding", "epochs"), "time_cap_s": (("gru", "embedding"), "time_cap_s"),
}


class NoPromotedModelError(BadParams):
    """Prediction without a version needs a promoted one, and promotion is explicit."""


def _day(day: str | date | None) -> date:
    return datetime.now(UTC).date() if day in (None, "") else as_day(day)


def _digest(obj: Any, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# -- generate / serve ---------------------------------------------------------------------------------------------

def generate(**spec: Any) -> dict:
    """Write a generated dataset into the data root (``keystrokes/generated/<name>/``); returns where."""
    from pipelines.keystrokes.generate import KeystrokeSpec, write_dataset

    root = DataRoot()
    gen = KeystrokeSpec(**{k: v for k, v in spec.items() if v is not None})
    rel = f"{schema.GENERATED}/{gen.name}"
    with tempfile.TemporaryDirectory(prefix="keystrokes-gen-") as tmp:
        summary = write_dataset(gen, Path(tmp))
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                root.put_file(path, f"{rel}/{path.relative_to(tmp).as_posix()}")
    return {**summary, "folder": root.join(rel), "train_url": f"{rel}/pages/{summary['first_page']}",
            "test_url": f"{rel}/test.json"}


def generated_folder(name: str) -> Path:
    """A generated dataset's local folder (what the local server serves)."""
    root = DataRoot()
    if root.is_s3:
        raise BadParams("the local server serves generated data from a local data root (PIPELINES_DATA_ROOT)")
    folder = root.base / schema.GENERATED / name
    if not (folder / "pages").is_dir():
        known = root.list_dirs(schema.GENERATED)
        raise BadParams(f"no generated dataset {name!r} in {root.join(schema.GENERATED)} (have: {known[:5]})")
    return folder


def _truths(root: DataRoot):
    """Every generated dataset's truth in the data root (newest names last)."""
    for name in root.list_dirs(schema.GENERATED):
        rel = f"{schema.GENERATED}/{name}/truth.json"
        if root.exists(rel):
            yield name, json.loads(root.read_bytes(rel))


def truth_for_labels(labels: set[str], root: DataRoot | None = None) -> tuple[str, dict] | None:
    """The generated dataset whose users include every label (its truth gives the oracle), or None."""
    root = root or DataRoot()
    for name, truth in _truths(root):
        if labels <= {p["label"] for p in truth["profiles"]}:
            return name, truth
    return None


# -- ingest -------------------------------------------------------------------------------------------------------

def _fetch_config(max_pages: int | None = None, refresh: bool = False, **http: Any):
    from pipelines.keystrokes.pager import FetchConfig

    values = {k: v for k, v in http.items() if v is not None}
    return FetchConfig(max_pages=max_pages or schema.DEFAULT_MAX_PAGES, refresh=bool(refresh), **values)


def ingest(kind: str, url: str, max_bad_share: float | None = None, min_samples: int = schema.DEFAULT_MIN_SAMPLES,
           max_pages: int | None = None, refresh: bool = False, day: str | date | None = None, **http: Any) -> dict:
    """Validate a training set (``kind="train"``) or a test document (``"test"``) under the ingest contract."""
    from pipelines.keystrokes.ingest import ingest_url

    threshold = get_settings().max_bad_share if max_bad_share is None else max_bad_share
    result = ingest_url(kind, url, max_bad_share=threshold, min_samples=min_samples,
                        config=_fetch_config(max_pages, refresh, **http), interval=day_interval(_day(day)))
    out = {k: v for k, v in result.as_dict().items() if k not in ("files", "extra")}
    contract.prune_staging(PIPELINE, keep_attempts=2)
    return {**out, "partition": result.partition, "url": url, "kind": kind,
            **{k: v for k, v in result.extra.items() if k not in ("url", "kind")}}


def _staged(kind: str, url: str, root: DataRoot) -> tuple[str, Path, dict]:
    """(partition, local folder of its accepted staged files, its ingest_partitions row)."""
    ensure_schema(pg_dsn())
    partition = schema.partition_key(kind, url)
    row = contract.accepted(PIPELINE, partition)
    if row is None:
        status = contract.partition_status(PIPELINE, partition)
        why = f"its last ingest was {status['status']}: {status['error']}" if status else "it was never ingested"
        raise MissingPartitionError(f"{kind} data {url} ({partition}) has no accepted ingest ({why}); run "
                                    f"`python -m pipelines keystrokes ingest --kind {kind} --url ...` first")
    return partition, root.local_dir(contract.staged_rel_of(row, root)), row


def load_samples(url: str, root: DataRoot | None = None):
    """The accepted training attempts of ``url`` as :class:`~pipelines.keystrokes.features.Samples`."""
    import pandas as pd

    from pipelines.keystrokes.features import Samples

    partition, folder, row = _staged("train", url, root or DataRoot())
    return partition, Samples.from_frame(pd.read_parquet(folder / "samples.parquet")), row


# -- analyse (seed 001's Analyse page) ----------------------------------------------------------------------------

def analyse(url: str, rows: int = 100, day: str | date | None = None) -> dict:
    """The first ``rows`` (≤ 1,000) attempts of an ingested training set with their features, a summary of the
    whole set (users, attempts per user, quarantine by reason, speed) and charts, under
    ``keystrokes/analyses/<partition>/``."""
    import numpy as np
    import pandas as pd

    from pipelines.keystrokes.features import FEATURE_NAMES, Samples

    if not 1 <= int(rows) <= 1000:
        raise BadParams(f"rows must be between 1 and 1000 (seed 001's limit), got {rows}")
    root = DataRoot()
    partition, folder, row = _staged("train", url, root)
    frame = pd.read_parquet(folder / "samples.parquet")
    users = pd.read_parquet(folder / "users.parquet")
    head = frame.head(int(rows))
    samples = Samples.from_frame(head)
    table = pd.DataFrame(samples.table, columns=list(FEATURE_NAMES))
    shown = pd.concat([head[["sample_id", "user_label", "page", "attempt_index"]].reset_index(drop=True),
                       pd.DataFrame({"typed_at": [_iso(t[0]) for t in head["times_us"]]}), table], axis=1)
    per_user = frame.groupby("user_label").size()
    summary = {
        "partition": partition, "url": url, "attempts": len(frame), "users": int(per_user.size),
        "attempts_per_user": {q: float(per_user.quantile(q)) for q in (0.0, 0.1, 0.5, 0.9, 1.0)},
        "users_dropped": int(users["dropped"].sum()), "users_on_several_pages": int((users["pages"] > 1).sum()),
        "rows_read": row["rows_read"], "rows_quarantined": row["rows_quarantined"], "reasons": row["reasons"],
        "shown": len(shown), "feature_columns": list(FEATURE_NAMES),
    }
    rel = f"{schema.ANALYSES}/{partition}"
    with tempfile.TemporaryDirectory(prefix="keystrokes-analyse-") as tmp:
        out = Path(tmp)
        shown.to_csv(out / "analysis.csv", index=False)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        charts = _analysis_charts(out, per_user, table, row["reasons"])
        lines = [f"# Training set {url}", "", f"Partition `{partition}`: {summary['attempts']:,} valid attempts of "
                 f"{summary['users']:,} users ({summary['users_dropped']} users dropped for too few attempts, "
                 f"{summary['users_on_several_pages']} users on several pages); {row['rows_read']:,} attempts read, "
                 f"{row['rows_quarantined']:,} quarantined: {row['reasons']}.", "",
                 f"`analysis.csv`: the first {len(shown)} attempts with their {len(FEATURE_NAMES)} features.", ""]
        lines += [f"![{c}]({c})" for c in charts]
        (out / "report.md").write_text("\n".join(lines) + "\n")
        uri = root.put_dir(out, rel)
    preview = shown.head(10)[["user_label", "n_events", "total_log_ms", "chars_per_s", "backspaces"]]
    preview = preview.assign(total_s=np.exp(preview.pop("total_log_ms")) / 1000).round(3)
    return {**summary, "uri": uri, "csv": root.join(rel, "analysis.csv"), "preview": preview.to_dict("records")}


def _iso(us: int) -> str:
    from pipelines.keystrokes.replay import format_time_us

    return format_time_us(int(us))


def _analysis_charts(out: Path, per_user, table, reasons: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    axes[0].hist(per_user.to_numpy(), bins=30)
    axes[0].set(xlabel="valid attempts per user", ylabel="users", title="Attempts per user (long tail)")
    axes[1].hist(table["chars_per_s"], bins=30)
    axes[1].set(xlabel="characters per second", ylabel="attempts", title="Typing speed (shown attempts)")
    names, counts = list(reasons) or ["none"], list(reasons.values()) or [0]
    axes[2].barh(names, counts)
    axes[2].set(xlabel="attempts", title="Quarantined attempts by reason")
    fig.tight_layout()
    fig.savefig(out / "overview.png", dpi=100)
    plt.close(fig)
    return ["overview.png"]


# -- train --------------------------------------------------------------------------------------------------------

def model_params(flat: dict) -> dict:
    """Flat DAG Params (``gru_epochs``, ``catboost_iterations``, ...) as per-model constructor arguments."""
    nested: dict[str, dict] = {}
    for key, value in flat.items():
        if key in BUDGET_PARAMS and value is not None:
            models, arg = BUDGET_PARAMS[key]
            for name in (models,) if isinstance(models, str) else models:
                nested.setdefault(name, {})[arg] = value
    return nested


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not schema.MODEL_NAME_RE.match(name):
        raise BadParams(f"model name {name!r} must be 1-63 characters: lowercase letters, digits, '_' or '-', "
                         "starting with a letter or digit")
    return name


def _check_models(models) -> list[str]:
    models = list(dict.fromkeys(models))
    unknown = [m for m in models if m not in schema.MODEL_TYPES]
    if not models or unknown:
        raise BadParams(f"models must be a non-empty list of {list(schema.MODEL_TYPES)}, got {models}")
    return models


def version_id(day: date, what: dict) -> str:
    """``YYYYMMDD-<hash>``: the same day, data and Params give the same id."""
    return f"{day:%Y%m%d}-{_digest(what)}"


def train(url: str, models=schema.MODEL_TYPES, model_name: str = "keystrokes", holdout_share: float = 0.2,
          seed: int = 42, params: dict | None = None, day: str | date | None = None, progress: bool = True) -> dict:
    """Train and compare ``models`` on an ingested training set; one registry run per model. Promotes nothing."""
    from pipelines.keystrokes.features import FEATURE_VERSION
    from pipelines.keystrokes.models.registry import MODEL_TYPES
    from pipelines.keystrokes.models.train import train_and_evaluate

    day = _day(day)
    models, model_name = _check_models(models), check_model_name(model_name)
    if not 0 < holdout_share < 1:
        raise BadParams(f"holdout share must be strictly between 0 and 1, got {holdout_share}")
    params = {k: dict(v) for k, v in (params or {}).items() if k in models}
    root = DataRoot()
    partition, samples, row = load_samples(url, root)
    truth = truth_for_labels(set(samples.labels.tolist()), root)
    shared = {"partition": partition, "fingerprint": row["extra"].get("fingerprint"),
              "min_samples": row["extra"].get("min_samples"), "holdout_share": holdout_share, "seed": seed,
              "feature_version": FEATURE_VERSION}
    full = {m: {**MODEL_TYPES[m].defaults, "seed": seed, **params.get(m, {})} for m in models}
    versions = {m: version_id(day, {**shared, "type": m, "params": full[m]}) for m in models}
    training_id = version_id(day, {**shared, "models": full})
    with contextlib.ExitStack() as stack:
        runs = {m: stack.enter_context(registry.track_run(
            PIPELINE, "train", model_name=model_name, model_version=versions[m], interval=day_interval(day),
            params={"url": url, "type": m, "model_params": full[m], "training_id": training_id,
                    "models": models, **shared})) for m in models}
        with tempfile.TemporaryDirectory(prefix="keystrokes-train-") as tmp:
            out = Path(tmp)
            result = train_and_evaluate(samples, out, models=models, params=params, holdout_share=holdout_share,
                                        seed=seed, oracle_profiles=truth[1]["profiles"] if truth else None,
                                        context={"url": url, "partition": partition}, progress=progress)
            for m in models:
                meta = json.loads((out / m / "model.json").read_text())
                meta.update({"model_name": model_name, "version": versions[m], "training_id": training_id,
                             "url": url, "partition": partition})
                (out / m / "model.json").write_text(json.dumps(meta, indent=2))
            (out / "report" / "training.json").write_text(json.dumps(
                {"training_id": training_id, "day": day, "url": url, "partition": partition, "versions": versions,
                 "table": result["table"], "best": result["best"], "truth": truth[0] if truth else None,
                 "fit": {m: result["models"][m]["fit"] for m in models}, "params": full}, indent=2, default=str))
            report_uri = root.put_dir(out / "report", f"{schema.REPORTS}/{model_name}/{training_id}")
            uris = {m: root.put_dir(out / m, f"{schema.MODELS}/{model_name}/{versions[m]}") for m in models}
        table = result["table"]
        for m, run in runs.items():
            run.artifact_uri = uris[m]
            run.log_metrics(_numbers(table[m]))
            for other, values in table.items():
                run.log_metrics(_numbers(values), segment=f"model={other}")
            fitted = result["models"][m]
            run.log_metrics({"fit_seconds": fitted["fit"]["seconds"],
                             "train_samples_per_s": fitted["train_samples_per_s"],
                             "predict_samples_per_s": fitted["predict_samples_per_s"]}, segment="speed")
            run.summary = {"version": versions[m], "training_id": training_id, "fit": fitted["fit"],
                           "report": report_uri, "n_train": result["n_train"], "n_test": result["n_test"],
                           "users": result["users"], "oracle": truth[0] if truth else None}
    from pipelines.ops.jobs import render_reports

    run_ids = {m: str(r.run_id) for m, r in runs.items()}
    html = render_reports(run_ids)  # each run's HTML report beside its artifacts (never fails the training)
    return {"model_name": model_name, "training_id": training_id, "day": day.isoformat(), "partition": partition,
            "versions": versions, "runs": run_ids, "html_reports": html["written"], "best": result["best"],
            "report": report_uri, "models": uris, "table": table, "n_train": result["n_train"],
            "n_test": result["n_test"], "users": result["users"], "oracle": truth is not None}


def _numbers(values: dict) -> dict:
    return {k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


# -- compare ------------------------------------------------------------------------------------------------------

def _train_runs(model_name: str | None = None, limit: int = 50) -> list[dict]:
    ensure_schema(pg_dsn())
    return db.query(
        """SELECT * FROM (
               SELECT DISTINCT ON (model_name, model_version) run_id, model_name, model_version, artifact_uri,
                      params, finished_at
               FROM runs WHERE pipeline = %s AND kind = 'train' AND status = 'success'
                 AND (%s::text IS NULL OR model_name = %s)
               ORDER BY model_name, model_version, finished_at DESC) latest
           ORDER BY finished_at DESC LIMIT %s""", (PIPELINE, model_name, model_name, limit))


def history(model_name: str | None = None, limit: int = 50) -> list[dict]:
    """Every trained version (newest first; a version trained again counts once, its latest run) with its
    held-out metrics as recorded at training time, beside the chance and oracle figures of the same holdout."""
    ensure_schema(pg_dsn())
    rows = db.query(
        """SELECT r.model_name, r.model_version, r.params->>'type' AS type, r.params->>'partition' AS partition,
                  r.run_id, r.finished_at,
                  bool_or(p.run_id IS NOT NULL) AS promoted,
                  max(m.value) FILTER (WHERE m.segment = '' AND m.name = 'accuracy') AS accuracy,
                  max(m.value) FILTER (WHERE m.segment = '' AND m.name = 'top3_accuracy') AS top3_accuracy,
                  max(m.value) FILTER (WHERE m.segment = '' AND m.name = 'macro_f1') AS macro_f1,
                  max(m.value) FILTER (WHERE m.segment = '' AND m.name = 'eer') AS eer,
                  max(m.value) FILTER (WHERE m.segment = 'model=chance' AND m.name = 'accuracy') AS chance_accuracy,
                  max(m.value) FILTER (WHERE m.segment = 'model=oracle' AND m.name = 'accuracy') AS oracle_accuracy
           FROM runs r JOIN run_metrics m USING (run_id)
           LEFT JOIN model_promotions p ON p.run_id = r.run_id AND p.pipeline = r.pipeline
           WHERE r.run_id IN (SELECT DISTINCT ON (model_name, model_version) run_id FROM runs
                              WHERE pipeline = %s AND kind = 'train' AND status = 'success'
                                AND (%s::text IS NULL OR model_name = %s)
                              ORDER BY model_name, model_version, (run_id IN (SELECT run_id FROM model_promotions))
                                  DESC, finished_at DESC)
           GROUP BY r.run_id ORDER BY r.finished_at DESC LIMIT %s""",
        (PIPELINE, model_name, model_name, limit))
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


def compare(url: str, model_name: str | None = None, holdout_share: float = 0.2, seed: int = 42, limit: int = 20,
            day: str | date | None = None) -> dict:
    """Re-evaluate the ``limit`` latest versions (of ``model_name``, or all) on this dataset's holdout: seed
    001's "holdout evaluation across current and all past models". A version is scored only on held-out
    attempts it never trained on, and only on users it knows (``coverage``: the share of those attempts whose
    user it knows; an unknown user counts as a miss in ``accuracy_all``)."""
    import numpy as np
    import pandas as pd

    from pipelines.keystrokes.features import FEATURE_VERSION
    from pipelines.keystrokes.models.base import load_model, read_model_json
    from pipelines.keystrokes.models.evaluate import metrics
    from pipelines.keystrokes.models.split import holdout_mask

    day = _day(day)
    root = DataRoot()
    partition, samples, _ = load_samples(url, root)
    held = holdout_mask(samples.sample_ids, samples.labels, holdout_share, seed)
    test = samples.subset(held)
    past = _train_runs(model_name, limit)
    rows, skipped = [], []
    with registry.track_run(PIPELINE, "evaluate", model_name=model_name, interval=day_interval(day),
                            params={"url": url, "partition": partition, "holdout_share": holdout_share,
                                    "seed": seed, "limit": limit}) as run:
        for r in past:
            where = f"{r['model_name']}@{r['model_version']}"
            try:
                folder = _model_folder(root, r["artifact_uri"])
                meta = read_model_json(folder)
            except (FileNotFoundError, ValueError) as exc:
                skipped.append({"version": where, "why": f"model files missing ({exc})"})
                continue
            if meta.get("feature_version") != FEATURE_VERSION:
                skipped.append({"version": where, "why": f"trained on features {meta.get('feature_version')}, "
                                                         f"now {FEATURE_VERSION}"})
                continue
            seen = set((folder / "train_samples.txt").read_text().split()) \
                if (folder / "train_samples.txt").exists() else set()
            unseen = np.array([s not in seen for s in test.sample_ids], dtype=bool)
            model = load_model(folder)
            known = np.array([lab in set(model.classes_) for lab in test.labels], dtype=bool)
            subset = test.subset(unseen & known)
            if len(subset) == 0:
                skipped.append({"version": where, "why": "no held-out attempt it has not seen of a user it knows"})
                continue
            m = metrics(model.encode(subset.labels), model.predict_proba(subset))
            eligible = int(unseen.sum())
            rows.append({"model_name": r["model_name"], "version": r["model_version"], "type": meta["type"],
                         "trained": r["finished_at"], "n_eval": len(subset), "excluded_seen": int((~unseen).sum()),
                         "coverage": len(subset) / max(eligible, 1),
                         "accuracy": m["accuracy"], "accuracy_all": m["accuracy"] * len(subset) / max(eligible, 1),
                         "top3_accuracy": m["top3_accuracy"], "macro_f1": m["macro_f1"], "eer": m["eer"],
                         "run_id": str(r["run_id"])})
            run.log_metrics({k: rows[-1][k] for k in ("accuracy", "accuracy_all", "top3_accuracy", "macro_f1",
                                                      "eer", "coverage", "n_eval")},
                            segment=f"model={meta['type']}@{r['model_version']}")
        table = pd.DataFrame(rows)
        rel = f"{schema.REPORTS}/{model_name or '_all'}/compare-{partition}-{_digest([holdout_share, seed])}"
        uri = None
        if len(table):
            table = table.sort_values(["accuracy", "trained"], ascending=[False, False]).reset_index(drop=True)
            with tempfile.TemporaryDirectory(prefix="keystrokes-compare-") as tmp:
                _compare_report(Path(tmp), table, url, partition, holdout_share, seed, len(test), skipped)
                uri = root.put_dir(Path(tmp), rel)
            run.log_metrics({"versions": len(table), "best_accuracy": float(table["accuracy"].max())})
        run.artifact_uri = uri
        run.summary = {"versions": len(table), "skipped": skipped, "report": uri}
    records = json.loads(table.to_json(orient="records", date_format="iso")) if len(table) else []
    from pipelines.ops.jobs import render_reports

    render_reports([str(run.run_id)])  # the evaluation run's HTML report (never fails the comparison)
    return {"partition": partition, "holdout": len(test), "versions": records, "skipped": skipped, "report": uri,
            "run_id": str(run.run_id)}


def _compare_report(out: Path, table, url: str, partition: str, share: float, seed: int, n: int,
                    skipped: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.keystrokes.models.evaluate import _markdown

    table.to_csv(out / "compare.csv", index=False)
    chrono = table.sort_values("trained")
    labels = [f"{t} {v}" for t, v in zip(chrono["type"], chrono["version"], strict=True)]
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(chrono) + 1.8))
    ax.barh(labels, chrono["top3_accuracy"], alpha=0.35, color="#1f77b4", label="top-3")
    ax.barh(labels, chrono["accuracy"], color="#1f77b4", label="top-1")
    ax.set(xlim=(0, 1), xlabel=f"accuracy on the holdout of {partition} (attempts each version never saw)",
           title="Every version on the same held-out attempts (oldest at the top)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=100)
    plt.close(fig)
    shown = table.drop(columns=["run_id"]).assign(trained=table["trained"].astype(str))
    lines = ["# Every version on one holdout", "",
             f"Dataset {url} (`{partition}`), {n} held-out attempts (share {share}, seed {seed}). A version is "
             "scored only on held-out attempts it did not train on (`excluded_seen`) and on users it knows "
             "(`coverage`; `accuracy_all` counts the others as misses).", "",
             _markdown(shown.set_index("model_name")), "", "![compare](compare.png)", ""]
    if skipped:
        lines += ["Not compared:", "", *[f"* {s['version']}: {s['why']}" for s in skipped], ""]
    (out / "compare.md").write_text("\n".join(lines))


# -- promote ------------------------------------------------------------------------------------------------------

def promote(model_name: str, model_type: str | None = None, version: str | None = None, run_id: str | None = None,
            training: dict | None = None, by: str | None = None) -> dict:
    """Serve one trained version of ``model_name``. Explicit by design: by ``run_id``, by ``version``, by
    ``model_type`` of a ``training`` (what :func:`train` returned), or the latest run of ``model_type``."""
    ensure_schema(pg_dsn())
    check_model_name(model_name)
    if not run_id:
        if training is not None and model_type:
            if model_type not in training["runs"]:
                raise BadParams(f"promote={model_type!r} was not trained in this run (models: "
                                 f"{sorted(training['runs'])})")
            run_id = training["runs"][model_type]
        else:
            rows = db.query(
                """SELECT run_id FROM runs WHERE pipeline = %s AND kind = 'train' AND status = 'success'
                     AND model_name = %s AND (%s::text IS NULL OR model_version = %s)
                     AND (%s::text IS NULL OR params->>'type' = %s)
                   ORDER BY finished_at DESC LIMIT 1""",
                (PIPELINE, model_name, version, version, model_type, model_type))
            if not rows:
                raise BadParams(f"no successful training of {model_name} matching version={version} "
                                 f"type={model_type} to promote")
            run_id = str(rows[0]["run_id"])
    registry.promote(PIPELINE, model_name, str(run_id), by=by)
    run = registry.promoted_run(PIPELINE, model_name)
    log.info("promoted %s version %s (%s, run %s)", model_name, run["model_version"], run["params"].get("type"),
             run_id)
    return {"model_name": model_name, "model_version": run["model_version"], "type": run["params"].get("type"),
            "run_id": str(run_id), "artifact_uri": run["artifact_uri"]}


# -- predict ------------------------------------------------------------------------------------------------------

def resolve_model(model_name: str, version: str | None = None) -> dict:
    """The training run behind ``model_name`` at ``version``, or the promoted one when no version is given."""
    ensure_schema(pg_dsn())
    check_model_name(model_name)
    if version:
        rows = db.query("SELECT * FROM runs WHERE pipeline = %s AND kind = 'train' AND status = 'success' "
                        "AND model_name = %s AND model_version = %s ORDER BY finished_at DESC LIMIT 1",
                        (PIPELINE, model_name, version))
        if not rows:
            raise BadParams(f"no successful training of {model_name} at version {version} (see `python -m "
                             "pipelines keystrokes compare --history`)")
        return rows[0]
    run = registry.promoted_run(PIPELINE, model_name)
    if run is None:
        raise NoPromotedModelError(
            f"no promoted version of {model_name}: name a version, or promote one (the training DAG's `promote` "
            f"Param, or `python -m pipelines keystrokes promote --model-name {model_name} --type <model type>`)")
    return run


def _model_folder(root: DataRoot, artifact_uri: str) -> Path:
    rel = root.rel_of(artifact_uri)
    if not root.exists(f"{rel}/model.json"):
        raise FileNotFoundError(f"{artifact_uri}/model.json")
    return root.local_dir(rel)


def load_serving_model(model_name: str, version: str | None = None):
    """(registry run, model) with enrolled users added to an embedding model's gallery."""
    from pipelines.keystrokes.features import FEATURE_VERSION
    from pipelines.keystrokes.models.base import load_model, read_model_json

    run = resolve_model(model_name, version)
    folder = _model_folder(DataRoot(), run["artifact_uri"])
    trained_on = read_model_json(folder).get("feature_version")
    if trained_on != FEATURE_VERSION:
        raise BadParams(f"{model_name}@{run['model_version']} was trained on feature definition {trained_on}, "
                         f"this code computes {FEATURE_VERSION}: retrain it")
    model = load_model(folder)
    if model.name == "embedding":
        _add_enrolments(model, model_name, run["model_version"])
    return run, model


def _add_enrolments(model, model_name: str, version: str) -> int:
    import numpy as np

    rows = db.query("SELECT user_label, samples, embedding FROM keystrokes_enrolments WHERE model_name = %s "
                    "AND model_version = %s ORDER BY user_label", (model_name, version))
    if rows:
        model.add_enrolled([r["user_label"] for r in rows], np.array([r["embedding"] for r in rows]),
                           np.array([r["samples"] for r in rows]))
    return len(rows)


def predict(url: str, model_name: str = "keystrokes", version: str | None = None,
            day: str | date | None = None) -> dict:
    """Identify the typist of every attempt of an ingested test document (see the module docstring)."""
    import pandas as pd

    from pipelines.keystrokes.features import Samples

    day = _day(day)
    root = DataRoot()
    partition, folder, _ = _staged("test", url, root)
    attempts = pd.read_parquet(folder / "attempts.parquet").sort_values("position").reset_index(drop=True)
    run_row, model = load_serving_model(model_name, version)
    mversion, mtype = run_row["model_version"], run_row["params"].get("type", model.name)
    with registry.track_run(PIPELINE, "score", model_name=model_name, model_version=mversion,
                            interval=day_interval(day),
                            params={"url": url, "partition": partition, "model_run": str(run_row["run_id"]),
                                    "type": mtype}) as run:
        valid = attempts[attempts["valid"]]
        top_users, top_p = model.top_k(Samples.from_frame(valid), 3) if len(valid) else ([], [])
        by_pos = {int(pos): (users, [float(x) for x in p]) for pos, users, p
                  in zip(valid["position"], top_users, top_p, strict=True)}
        records = []
        for row in attempts.itertuples(index=False):
            users, p = by_pos.get(int(row.position), ([], []))
            records.append({"position": int(row.position), "status": "predicted" if row.valid else "invalid",
                            "reason": None if row.valid else row.reason, "users": users, "probabilities": p,
                            "sample_id": row.sample_id})
        final = [r["users"][0] if r["status"] == "predicted" else schema.INVALID_PREDICTION for r in records]
        rel = f"{schema.PREDICTIONS}/{partition}/{model_name}/{mversion}"
        with tempfile.TemporaryDirectory(prefix="keystrokes-predict-") as tmp:
            out = Path(tmp)
            (out / "final_pred.json").write_text(json.dumps(final))
            _predictions_csv(records).to_csv(out / "predictions.csv", index=False)
            uri = root.put_dir(out, rel)
        final_uri, csv_uri = root.join(rel, "final_pred.json"), root.join(rel, "predictions.csv")
        written = _upsert_predictions(records, partition, model_name, mversion, mtype, url, day, final_uri, csv_uri,
                                      str(run.run_id))
        truth = _test_truth(attempts, final)
        n_valid = int(attempts["valid"].sum())
        run.artifact_uri = uri
        run.log_metrics({"attempts": len(attempts), "predicted": n_valid, "invalid": len(attempts) - n_valid,
                         **({"truth_accuracy": truth["accuracy"]} if truth and truth["accuracy"] is not None
                            else {})})
        run.summary = {"final_pred": final_uri, "csv": csv_uri, "rows": written, "truth": truth}
    return {"partition": partition, "model_name": model_name, "model_version": mversion, "type": mtype,
            "attempts": len(attempts), "predicted": n_valid, "invalid": len(attempts) - n_valid,
            "final_pred": final_uri, "csv": csv_uri, "rows_written": written, "run_id": str(run.run_id),
            "truth": truth, "preview": final[:10]}


def _predictions_csv(records: list[dict]):
    import pandas as pd

    rows = []
    for r in records:
        row = {"position": r["position"], "status": r["status"], "reason": r["reason"]}
        for k in range(3):
            row[f"user_{k + 1}"] = r["users"][k] if k < len(r["users"]) else None
            row[f"probability_{k + 1}"] = round(r["probabilities"][k], 6) if k < len(r["probabilities"]) else None
        row["final_pred"] = r["users"][0] if r["users"] else schema.INVALID_PREDICTION
        rows.append(row)
    return pd.DataFrame(rows)


def _upsert_predictions(records: list[dict], partition: str, model_name: str, version: str, mtype: str, url: str,
                        day: date, final_uri: str, csv_uri: str, run_id: str) -> int:
    """Replace this (dataset, model version)'s rows and its bookkeeping row, in one transaction."""
    from psycopg2.extras import execute_values

    rows = [(partition, model_name, version, r["position"], r["status"], r["reason"],
             r["users"][0] if r["users"] else None, r["probabilities"][0] if r["probabilities"] else None,
             r["users"] or None, r["probabilities"] or None, r["sample_id"], day) for r in records]
    n_valid = sum(1 for r in records if r["status"] == "predicted")
    with db.transaction() as cur:
        db.advisory_xact_lock(cur, f"keystrokes.predictions:{partition}:{model_name}:{version}")
        cur.execute("DELETE FROM keystrokes_predictions WHERE test_partition = %s AND model_name = %s "
                    "AND model_version = %s", (partition, model_name, version))
        execute_values(cur, """INSERT INTO keystrokes_predictions (test_partition, model_name, model_version,
                                   position, status, reason, user_label, probability, top_users, top_probabilities,
                                   sample_id, as_of) VALUES %s""", rows, page_size=1000)
        cur.execute(
            """INSERT INTO keystrokes_prediction_runs (test_partition, model_name, model_version, model_type, url,
                   attempts, predicted, invalid, final_pred_uri, csv_uri, as_of, run_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (test_partition, model_name, model_version) DO UPDATE SET
                   model_type = EXCLUDED.model_type, url = EXCLUDED.url, attempts = EXCLUDED.attempts,
                   predicted = EXCLUDED.predicted, invalid = EXCLUDED.invalid,
                   final_pred_uri = EXCLUDED.final_pred_uri, csv_uri = EXCLUDED.csv_uri, as_of = EXCLUDED.as_of,
                   run_id = EXCLUDED.run_id""",
            (partition, model_name, version, mtype, url, len(records), n_valid, len(records) - n_valid, final_uri,
             csv_uri, day, run_id))
    return len(rows)


def _test_truth(attempts, final: list[str]) -> dict | None:
    """On a generated test document (recognised by its attempts), the accuracy of ``final`` against the
    planted labels, over the attempts that are valid and predicted; None on real data."""
    ids = [s if isinstance(s, str) else None for s in attempts["sample_id"].tolist()]
    for name, truth in _truths(DataRoot()):
        if truth.get("test_sample_ids") == ids:
            pairs = [(p, t) for p, t in zip(final, truth["test_labels"], strict=True)
                     if t is not None and p != schema.INVALID_PREDICTION]
            correct = sum(p == t for p, t in pairs)
            return {"dataset": name, "scored": len(pairs), "correct": correct,
                    "accuracy": correct / len(pairs) if pairs else None}
    return None


# -- enrol --------------------------------------------------------------------------------------------------------

def enrol(url: str, model_name: str, version: str | None = None, min_samples: int = 2,
          day: str | date | None = None) -> dict:
    """Enrol every user of an ingested (training-format) dataset into an embedding model's gallery, without
    retraining; the mean embeddings go to ``keystrokes_enrolments`` in one transaction."""
    from psycopg2.extras import execute_values

    day = _day(day)
    run_row, model = load_serving_model(model_name, version)
    if model.name != "embedding":
        raise BadParams(f"{model_name}@{run_row['model_version']} is a {model.name} model: only the embedding "
                         "model enrols users without retraining (the others need a new training)")
    partition, samples, _ = load_samples(url)
    labels = samples.labels.tolist()
    counts = {lab: labels.count(lab) for lab in dict.fromkeys(labels)}
    too_few = sorted(lab for lab, n in counts.items() if n < min_samples)
    if too_few:
        raise BadParams(f"{len(too_few)} user(s) have fewer than {min_samples} attempts to enrol with, e.g. "
                         f"{too_few[:3]}")
    with registry.track_run(PIPELINE, "publish", model_name=model_name, model_version=run_row["model_version"],
                            interval=day_interval(day), params={"url": url, "partition": partition,
                                                                 "enrol": True}) as run:
        vectors = model.enrol(labels, samples)
        rows = [(model_name, run_row["model_version"], lab, counts[lab], [float(x) for x in vec], url,
                 str(run.run_id)) for lab, vec in vectors.items()]
        with db.transaction() as cur:
            db.advisory_xact_lock(cur, f"keystrokes.enrol:{model_name}:{run_row['model_version']}")
            execute_values(cur, """INSERT INTO keystrokes_enrolments (model_name, model_version, user_label, samples,
                                       embedding, source_url, run_id) VALUES %s
                                   ON CONFLICT (model_name, model_version, user_label) DO UPDATE SET
                                       samples = EXCLUDED.samples, embedding = EXCLUDED.embedding,
                                       source_url = EXCLUDED.source_url, run_id = EXCLUDED.run_id,
                                       enrolled_at = now()""", rows)
        run.log_metrics({"users": len(rows), "attempts": len(samples)})
        run.summary = {"users": sorted(vectors)}
    return {"model_name": model_name, "model_version": run_row["model_version"], "partition": partition,
            "enrolled": len(rows), "attempts": len(samples), "gallery": len(model.classes_),
            "run_id": str(run.run_id)}


# -- housekeeping -------------------------------------------------------------------------------------------------

def prune(keep_attempts: int = 2) -> dict:
    """Remove staged ingest runs no reader needs (the platform's retention policy)."""
    return contract.prune_staging(PIPELINE, keep_attempts)



# -- what the DAGs' tasks call (Params in, small XCom-sized dicts out) --------------------------------------------

def ingest_for_dag(kind: str, params: dict, day: str) -> dict:
    """The ``ingest`` task: the Trigger form's URL (``data_url`` / ``test_url``) under the ingest contract."""
    url = params["data_url"] if kind == "train" else params["test_url"]
    result = ingest(kind, url, params["max_bad_share"], params.get("min_samples", schema.DEFAULT_MIN_SAMPLES),
                    params.get("max_pages"), params.get("refresh", False), day=day)
    keep = ("partition", "url", "kind", "rows_read", "rows_valid", "rows_quarantined", "reasons", "users",
            "users_dropped", "pages", "run_id")
    return {"day": day, **{k: result[k] for k in keep if k in result}}


def analyse_for_dag(ingested: dict, rows: int) -> dict:
    """The ``analyse`` task."""
    result = analyse(ingested["url"], rows, ingested["day"])
    log.info("first attempts with their features (%s):\n%s", result["csv"], json.dumps(result["preview"], indent=1))
    return {k: result[k] for k in ("partition", "uri", "csv", "attempts", "users", "users_dropped", "shown")}


def train_for_dag(ingested: dict, params: dict) -> dict:
    """The ``train`` task: the Trigger form's models, name, holdout, seed and budgets."""
    result = train(ingested["url"], params["models"], params["model_name"], params["holdout_share"], params["seed"],
                   model_params(params), ingested["day"], progress=False)
    log.info("held-out comparison (%s):\n%s", result["report"], "\n".join(
        f"  {m:14s} accuracy {v.get('accuracy') or 0:.3f}  top-3 {v.get('top3_accuracy') or 0:.3f}  "
        f"EER {v.get('eer') or 0:.3f}" for m, v in result["table"].items()))
    keep = ("model_name", "training_id", "day", "partition", "versions", "runs", "best", "report", "n_train",
            "n_test", "users", "oracle")
    return {**{k: result[k] for k in keep}, "url": ingested["url"], "holdout_share": params["holdout_share"],
            "seed": params["seed"],
            "accuracy": {m: v.get("accuracy") for m, v in result["table"].items()}}


def compare_for_dag(trained: dict, params: dict) -> dict:
    """The ``compare`` task: every past version of the model name on this training's holdout."""
    result = compare(trained["url"], trained["model_name"], trained["holdout_share"], trained["seed"],
                     params["compare_versions"], trained["day"])
    for row in result["versions"]:
        log.info("%s %-14s accuracy %.3f on %d held-out attempts (coverage %.2f)", row["version"], row["type"],
                 row["accuracy"], row["n_eval"], row["coverage"])
    return {"report": result["report"], "versions": len(result["versions"]), "skipped": len(result["skipped"]),
            "run_id": result["run_id"]}


def promote_for_dag(trained: dict, model_type: str, by: str) -> dict:
    """The ``promote`` task: the Param's model type of this training, or nothing."""
    if not model_type:
        log.info("promote Param empty: nothing promoted (promotion is explicit)")
        return {"promoted": None}
    return promote(trained["model_name"], model_type, training=trained, by=by)


def predict_for_dag(ingested: dict, params: dict) -> dict:
    """The ``predict`` task: the Trigger form's model name and version (empty: the promoted one)."""
    result = predict(ingested["url"], params["model_name"], params["model_version"] or None, ingested["day"])
    import pandas as pd

    root = DataRoot()
    shown = pd.read_csv(root.local_dir(result["csv"][len(root.uri) + 1:].rsplit("/", 1)[0]) / "predictions.csv",
                        nrows=params.get("show_rows", 20))
    log.info("first %d predictions (%s):\n%s", len(shown), result["csv"], shown.to_string(index=False))
    return {k: v for k, v in result.items() if k != "preview"}

"""The recommendation pipeline's steps, as the DAG's tasks and the CLI call them.

One *version* is everything computed from one day's snapshot with one set of parameters; its id is
``YYYYMMDD-<hash of the parameters>``, so rerunning a day rewrites the same version with the same content.
A version is built (``build``), recommended shard by shard (``recommend_shard``), written to DynamoDB shard by
shard (``write_shard``) and then published (``publish``): one conditional write of the version pointer, so
readers switch from the previous version to the complete new one at once. ``cleanup`` deletes old versions.

Data root layout::

    recs/raw/dt=DAY/                  the two Last.fm TSV files
    recs/staged/dt=DAY/               validated Parquet (see schema.py)
    recs/versions/VERSION/model/      the fitted model every shard loads
    recs/versions/VERSION/shards/     shard=NNNNN.parquet: one row per user, ranked artists
    recs/versions/VERSION/manifest.json
    recs/reports/VERSION/             evaluation.json, evaluation.png, report.md (kept after cleanup)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import db, registry
from pipelines.days import as_day as _day
from pipelines.days import day_interval as _interval
from pipelines.errors import PipelineError
from pipelines.recs import schema
from pipelines.settings import get_settings
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

MODEL_NAME = "user_user_cf"
#: Airflow refuses to expand more than ``max_map_length`` (1024) tasks; stay far below it.
MAX_SHARDS = 256


def version_id(day: date, params: dict) -> str:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{day:%Y%m%d}-{digest}"


def _version_rel(version: str) -> str:
    return schema.model_rel_dir(version)


def _manifest(root: DataRoot, version: str) -> dict:
    return json.loads(root.read_bytes(f"{_version_rel(version)}/manifest.json"))


def _write_manifest(root: DataRoot, version: str, manifest: dict) -> None:
    root.put_bytes(json.dumps(manifest, indent=2, default=str).encode(), f"{_version_rel(version)}/manifest.json")


# -- generate / validate ----------------------------------------------------------------------------------

def generate(day: str | date, **overrides) -> dict:
    """Write a generated Last.fm-format snapshot for ``day`` into the (local) data root.

    The generated world grows a little each day after its ``start`` (new users, more plays); pass the same
    ``start`` for every day of a series."""
    from pipelines.recs.generate import RecsDataSpec, write_snapshot

    root = DataRoot()
    if root.is_s3:
        raise ValueError("generate writes to a local data root; upload the files yourself for S3")
    values = {k: v for k, v in overrides.items() if v is not None}
    values.setdefault("start", _day(day))  # the generated world starts on the first day asked for
    return write_snapshot(RecsDataSpec(**values), root.base, _day(day))


def snapshot_ready(day: str | date) -> bool:
    """Whether both files of the day's snapshot have arrived (what ``wait_for_snapshot`` pokes)."""
    root = DataRoot()
    names = {Path(r).name.lower() for r in root.list(schema.raw_rel_dir(_day(day)))}
    return all(any(n == f or n.startswith(f + ".") for n in names) for f in (schema.PLAYS_FILE, schema.PROFILE_FILE))


def validate(day: str | date, max_bad_share: float | None = None) -> dict:
    """Validate and stage a day's snapshot under the ingest contract; bad rows go to the quarantine table;
    past the threshold, raise (the previous accepted snapshot of the day, if any, stays)."""
    from pipelines.recs import ingest

    day = _day(day)
    threshold = get_settings().max_bad_share if max_bad_share is None else max_bad_share
    result = ingest.validate_snapshot(day, DataRoot(), threshold)
    return {**result.as_dict(), **result.extra, "day": day.isoformat()}


def model_params(params: Mapping[str, Any] | None) -> dict:
    """The model's parameters out of a DAG's Params (the rest, e.g. ``day`` or ``eval_users``, are not part of
    the version)."""
    from pipelines.recs.features import ModelParams

    return ModelParams.from_mapping(dict(params or {})).as_dict()


def shard_label(shard: dict) -> str:
    """How a mapped shard task is labelled in the UI: its number and user range."""
    return f"shard {shard['shard']}: users {shard['start']}-{shard['stop'] - 1}"


# -- build: fit once, plan the shards ---------------------------------------------------------------------

def build(day: str | date, params: dict | None = None, shard_users: int = 50_000) -> dict:
    """Fit the version's model on the staged day and plan its user shards."""
    from pipelines.recs.features import ModelParams, load_snapshot, staged_path
    from pipelines.recs.model import UserUserModel

    day = _day(day)
    model_params = ModelParams.from_mapping(params)
    version = version_id(day, model_params.as_dict())
    root = DataRoot()
    with registry.track_run(schema.PIPELINE, "train", model_name=MODEL_NAME, model_version=version,
                            params=model_params.as_dict(), interval=_interval(day)) as run:
        t = time.perf_counter()
        snapshot = load_snapshot(staged_path(root, day))
        load_s = time.perf_counter() - t
        model = UserUserModel.fit(snapshot, model_params)
        with tempfile.TemporaryDirectory(prefix="recs-model-") as tmp:
            folder = Path(tmp) / "model"
            model.save(folder)
            snapshot.artists.reset_index()[["artist_idx", "artist_key", "artist_name", "mbid"]].to_parquet(
                folder / "artists.parquet")
            run.artifact_uri = root.put_dir(folder, f"{_version_rel(version)}/model")
        n_users = snapshot.n_users
        n_shards = min(MAX_SHARDS, max(1, math.ceil(n_users / max(1, shard_users))))
        bounds = np.linspace(0, n_users, n_shards + 1).astype(int)
        shards = [{"version": version, "shard": i, "start": int(bounds[i]), "stop": int(bounds[i + 1])}
                  for i in range(n_shards)]
        manifest = {"version": version, "day": day.isoformat(), "params": model_params.as_dict(),
                    "n_users": n_users, "n_artists": snapshot.n_artists, "shards": shards,
                    "warm_users": int(model.candidates.sum()), "timings": {"load_s": load_s, **model.timings},
                    "built_at": datetime.now(UTC).isoformat()}
        _write_manifest(root, version, manifest)
        run.summary = {k: v for k, v in manifest.items() if k != "shards"} | {"n_shards": n_shards}
        run.log_metrics({"users": n_users, "artists": snapshot.n_artists, "warm_users": manifest["warm_users"],
                         **{f"time_{k}": v for k, v in manifest["timings"].items()}})
    return {"version": version, "day": day.isoformat(), "n_users": n_users, "shards": shards,
            "run_id": str(run.run_id)}


# -- shards -------------------------------------------------------------------------------------------------

def _shard_rel(version: str, shard: int) -> str:
    return f"{_version_rel(version)}/shards/shard={shard:05d}.parquet"


def recommend_shard(shard: dict) -> dict:
    """Neighbours and top-N for one shard's users; one Parquet file, one row per user."""
    import pandas as pd

    from pipelines.recs.model import UserUserModel

    root = DataRoot()
    version = shard["version"]
    t = time.perf_counter()
    model_dir = root.local_dir(f"{_version_rel(version)}/model")
    model = UserUserModel.load(model_dir)
    artists = pd.read_parquet(model_dir / "artists.parquet").set_index("artist_idx").sort_index()
    load_s = time.perf_counter() - t
    rows = np.arange(shard["start"], shard["stop"])
    t = time.perf_counter()
    idx, val, sources = model.recommend(rows)
    compute_s = time.perf_counter() - t
    names = artists["artist_name"].to_numpy(dtype=object)
    mbids = artists["mbid"].astype(object).where(artists["mbid"].notna(), None).to_numpy(dtype=object)
    keep = idx >= 0
    frame = pd.DataFrame({
        "user_id": model.users.loc[rows, "user_id"].to_numpy(),
        "source": sources,
        "artist": [names[i[k]].tolist() for i, k in zip(idx, keep, strict=True)],
        "mbid": [mbids[i[k]].tolist() for i, k in zip(idx, keep, strict=True)],
        "score": [np.round(v[k], 6).astype(float).tolist() for v, k in zip(val, keep, strict=True)],
    })
    with tempfile.TemporaryDirectory(prefix="recs-shard-") as tmp:
        path = Path(tmp) / "shard.parquet"
        frame.to_parquet(path, index=False)
        uri = root.put_file(path, _shard_rel(version, shard["shard"]))
    counts = frame["source"].value_counts().to_dict()
    cf_users = frame.loc[frame["source"] == "user_user_cf", "user_id"]
    log.info("shard %s of %s: %d users in %.1f s (+%.1f s load); sources %s", shard["shard"], version,
             len(rows), compute_s, load_s, counts)
    return {**shard, "users": len(rows), "uri": uri, "sources": counts, "load_s": round(load_s, 3),
            "sample_user": cf_users.iloc[0] if len(cf_users) else None,
            "compute_s": round(compute_s, 3)}


def _shard_records(root: DataRoot, version: str, shard: int, generated_on: str) -> Iterator[schema.RecRecord]:
    import pyarrow.parquet as pq

    path = root.local_dir(f"{_version_rel(version)}/shards") / Path(_shard_rel(version, shard)).name
    for batch in pq.ParquetFile(path).iter_batches(batch_size=5000):
        for row in batch.to_pylist():
            items = [schema.RecItem(artist=a, score=s, mbid=m)
                     for a, m, s in zip(row["artist"], row["mbid"], row["score"], strict=True)]
            yield schema.RecRecord(user_id=row["user_id"], version=version, generated_on=generated_on,
                                   source=row["source"], items=items)


def _newer_version_is_live(store, day: date) -> dict | None:
    current = store.current()
    if current and current.get("generated_on", "") > day.isoformat():
        return current
    return None


def write_shard(shard: dict, threads: int = 4) -> dict:
    """Write one shard's users to DynamoDB under the version (invisible to readers until ``publish``)."""
    from pipelines.recs.dynamo import RecsStore

    root = DataRoot()
    version = shard["version"]
    manifest = _manifest(root, version)
    store = RecsStore()
    store.ensure_table()
    newer = _newer_version_is_live(store, _day(manifest["day"]))
    if newer:
        log.warning("skipping the DynamoDB write of %s: %s (from %s) is already live", version,
                    newer.get("current_version"), newer.get("generated_on"))
        return {**shard, "written": 0, "skipped": True}
    stats = store.write_records(_shard_records(root, version, shard["shard"], manifest["day"]), threads=threads)
    stats = stats if isinstance(stats, dict) else asdict(stats)
    if stats.get("items", stats.get("written")) != shard["users"]:
        raise RuntimeError(f"shard {shard['shard']} of {version}: wrote {stats} but the shard has "
                           f"{shard['users']} users")
    return {**shard, "written": shard["users"], "skipped": False, "write": stats}


@contextlib.contextmanager
def _publish_lock() -> Iterator[None]:
    """One lock for everything that changes what readers see or may see (publish, cleanup), across runs,
    backfills and workers: a PostgreSQL advisory lock held for the block."""
    with db.transaction() as cur:
        db.advisory_xact_lock(cur, "recs.publish")
        yield


def _live_ndcg(version: str) -> float | None:
    """The live version's held-out NDCG@10, as its own evaluation recorded it (None if never evaluated)."""
    rows = db.query("""SELECT m.value FROM runs r JOIN run_metrics m USING (run_id)
                       WHERE r.pipeline = %s AND r.kind = 'evaluate' AND r.status = 'success'
                         AND r.model_version = %s AND m.name = 'ndcg_at_10' AND m.segment = ''
                       ORDER BY r.finished_at DESC LIMIT 1""", (schema.PIPELINE, version))
    return rows[0]["value"] if rows else None


def quality_gate(evaluated: dict | None, live_version: str | None, tolerance: float | None) -> dict:
    """Whether a version may replace the live one: its held-out NDCG@10 is at least (1 - tolerance) x the live
    version's. Not applied (and said so) without a live version, an evaluation, or a tolerance."""
    if tolerance is None or tolerance >= 1:
        return {"passed": True, "applied": False, "why": "no quality gate (tolerance >= 1)"}
    if live_version is None:
        return {"passed": True, "applied": False, "why": "nothing is live yet"}
    new = ((evaluated or {}).get("metrics") or {}).get(MODEL_NAME, {}).get("ndcg_at_10")
    if new is None:
        why = (evaluated or {}).get("reason") or "the new version was not evaluated"
        return {"passed": True, "applied": False, "why": f"not applied: {why}"}
    live = _live_ndcg(live_version)
    if live is None:
        return {"passed": True, "applied": False, "why": f"the live version {live_version} has no evaluation"}
    floor = (1 - tolerance) * live
    return {"passed": new >= floor, "applied": True, "new_ndcg_at_10": new, "live_ndcg_at_10": live,
            "floor": floor, "why": f"NDCG@10 {new:.4f} vs live {live:.4f} (floor {floor:.4f} at tolerance "
                                   f"{tolerance:.0%})"}


def publish(version: str, written: list[dict], evaluated: dict | None = None,
            quality_tolerance: float | None = None) -> dict:
    """Check every shard landed and the quality gate, write the cold-start lists, then switch the served version
    in one conditional write; under the publish lock, so no cleanup or other publish runs meanwhile."""
    import pandas as pd

    from pipelines.recs.dynamo import RecsStore
    from pipelines.recs.model import UserUserModel
    from pipelines.recs.recommend import fallback_records

    root = DataRoot()
    manifest = _manifest(root, version)
    day = _day(manifest["day"])
    with registry.track_run(schema.PIPELINE, "publish", model_name=MODEL_NAME, model_version=version,
                            params={"version": version, "quality_tolerance": quality_tolerance},
                            interval=_interval(day)) as run, _publish_lock():
        store = RecsStore()
        store.ensure_table()
        if any(w.get("skipped") for w in written) or _newer_version_is_live(store, day):
            run.summary = {"published": False, "reason": "a newer version is live", "current": store.current()}
            log.warning("not publishing %s: a newer version is live (%s)", version, store.current())
            return {"version": version, "published": False}
        expected = {s["shard"] for s in manifest["shards"]}
        done = {w["shard"] for w in written if w.get("written") == w.get("users")}
        users = sum(w["written"] for w in written)
        if done != expected or users != manifest["n_users"]:
            raise PipelineError(f"{version}: shards {sorted(expected - done)} missing or short "
                                f"({users} of {manifest['n_users']} users written); not publishing")
        current = store.current()
        live = current["current_version"] if current and current["current_version"] != version else None
        gate = quality_gate(evaluated, live, quality_tolerance)
        run.summary = {"quality_gate": gate}
        if not gate["passed"]:
            raise PipelineError(f"not publishing {version}: it fails the quality gate against the live {live}: "
                                f"{gate['why']}. The live version stays; raise quality_tolerance to force it.")
        log.info("quality gate for %s: %s", version, gate["why"])
        model_dir = root.local_dir(f"{_version_rel(version)}/model")
        model = UserUserModel.load(model_dir)
        artists = pd.read_parquet(model_dir / "artists.parquet").set_index("artist_idx").sort_index()
        fallbacks = fallback_records(model.fallback, artists, version, day.isoformat(),
                                     model.params.n_recs + 40)
        store.write_records(fallbacks)
        published = store.publish(version, generated_on=day.isoformat(), item_count=users + len(fallbacks))
        sources: dict[str, int] = {}
        for w in written:
            for k, v in w.get("sources", {}).items():
                sources[k] = sources.get(k, 0) + v
        write_s = sum(w.get("write", {}).get("seconds", 0) for w in written)
        run.summary = {"published": published, "users": users, "fallback_lists": len(fallbacks),
                       "sources": sources, "shards": len(written), "quality_gate": gate,
                       "sample_user": next((w["sample_user"] for w in written if w.get("sample_user")), None)}
        run.log_metrics({"users_written": users, "fallback_lists": len(fallbacks),
                         "cf_share": sources.get("user_user_cf", 0) / users if users else 0,
                         "write_seconds_sum": write_s})
        manifest["published"] = published
        manifest["published_at"] = datetime.now(UTC).isoformat()
        _write_manifest(root, version, manifest)
    return {"version": version, "published": published, "users": users, "quality_gate": gate,
            "run_id": str(run.run_id)}


# -- evaluation ---------------------------------------------------------------------------------------------

def evaluate(day: str | date, params: dict | None = None, eval_users: int = 5000) -> dict:
    """Held-out evaluation of the version's parameters beside the baselines and the oracle; to the registry."""
    from pipelines.recs.evaluate import EvalConfig, plot_report
    from pipelines.recs.evaluate import evaluate as run_evaluation
    from pipelines.recs.features import ModelParams, load_snapshot, staged_path

    day = _day(day)
    model_params = ModelParams.from_mapping(params)
    version = version_id(day, model_params.as_dict())
    root = DataRoot()
    config = EvalConfig(eval_users=eval_users)
    with registry.track_run(schema.PIPELINE, "evaluate", model_name=MODEL_NAME, model_version=version,
                            params={**model_params.as_dict(), **asdict(config)}, interval=_interval(day)) as run:
        snapshot = load_snapshot(staged_path(root, day))
        evaluable = int((snapshot.plays.getnnz(axis=1) >= config.min_items).sum())
        if evaluable == 0:  # nobody has enough history to hold any out: say so, write no metric (never NaN)
            reason = (f"no user of the {day} snapshot has {config.min_items} or more artists to hold some out; "
                      "nothing to evaluate")
            log.warning("recs evaluation skipped: %s", reason)
            run.summary = {"skipped": True, "reason": reason}
            return {"version": version, "skipped": True, "reason": reason, "run_id": str(run.run_id)}
        result = run_evaluation(snapshot, model_params, config, oracle=_oracle_for(root, day))
        table = result.table()
        run.log_metrics(result.metrics[MODEL_NAME])
        for name, metrics in result.metrics.items():
            run.log_metrics(metrics, segment=f"model={name}")
        extra = {"neighbour_recall": result.neighbour_recall,
                 "neighbour_similarity_ratio": result.neighbour_similarity_ratio}
        if "oracle" in result.metrics:
            oracle_ndcg = result.metrics["oracle"]["ndcg_at_10"]
            extra["share_of_oracle_ndcg"] = result.metrics[MODEL_NAME]["ndcg_at_10"] / oracle_ndcg
        run.log_metrics(extra)
        with tempfile.TemporaryDirectory(prefix="recs-report-") as tmp:
            folder = Path(tmp)
            plot_report(result, folder / "evaluation.png")
            (folder / "evaluation.json").write_text(json.dumps(
                {"version": version, "day": day.isoformat(), "metrics": result.metrics,
                 "neighbour_recall": result.neighbour_recall,
                 "neighbour_similarity_ratio": result.neighbour_similarity_ratio, "seconds": result.seconds,
                 "eval_users": result.n_eval_users}, indent=2))
            (folder / "report.md").write_text(_report_markdown(version, day, result, table))
            run.artifact_uri = root.put_dir(folder, f"recs/reports/{version}")
        run.summary = {"eval_users": result.n_eval_users, "seconds": result.seconds, **extra}
    from pipelines.ops.jobs import render_reports

    render_reports([str(run.run_id)])  # the run's HTML report beside its evaluation (never fails the task)
    return {"version": version, "metrics": result.metrics, "neighbour_recall": result.neighbour_recall,
            "run_id": str(run.run_id), "report": run.artifact_uri}


def _oracle_for(root: DataRoot, day: date):
    """The generator's planted preferences, when the day's snapshot is generated data: the generator leaves a
    marker (``_generated.json``) beside the files it wrote, with their hashes. A user's own files (no marker,
    or files changed since) get no oracle, whatever truth lies elsewhere in the data root."""
    from pipelines.recs.generate import Truth, snapshot_marker_matches

    marker = snapshot_marker_matches(root, day)
    if marker is None:
        return None
    folder = f"recs/truth/{marker['truth']}"
    if not root.exists(f"{folder}/meta.json"):
        log.warning("not reporting the oracle: the truth %s named by the %s marker is missing", folder, day)
        return None
    return Truth.load_dir(root.local_dir(folder)).preference


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _report_markdown(version: str, day: date, result, table) -> str:
    lines = [f"# Recommendations {version}: held-out evaluation", "",
             f"Snapshot {day}, {result.n_eval_users} held-out users, K = 10. "
             f"Approximate (SVD + HNSW) against exact neighbours on the same users: recall@K "
             f"{_fmt(result.neighbour_recall)}, exact similarity of the approximate neighbours "
             f"{_fmt(result.neighbour_similarity_ratio)} of the exact ones'.", "",
             "| model | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for name, row in table.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    lines += ["", "![evaluation](evaluation.png)", ""]
    return "\n".join(lines)


# -- cleanup ------------------------------------------------------------------------------------------------

def _version_day(version: str) -> str:
    return f"{version[:4]}-{version[4:6]}-{version[6:8]}"


def cleanup(keep: int = 2, keep_staged_days: int = 7) -> dict:
    """Delete versions no reader needs, in DynamoDB and the data root, and staged snapshots past retention.

    Under the publish lock. A version is deleted only if it is not one of the ``keep`` newest published ones
    (the live one and those kept for rollback) **and** its snapshot day is older than the live version's: such a
    version can never be published any more, so a version another run is still building (same or newer day)
    is never touched. Staged snapshots: each day's accepted run and its newest other attempt are kept for
    ``keep_staged_days`` days after the live day, then removed (see :func:`pipelines.ingest.prune_staging`).
    """
    import pyarrow.parquet as pq

    from pipelines import ingest as contract
    from pipelines.recs.dynamo import RecsStore

    root = DataRoot()
    with _publish_lock():
        store = RecsStore()
        store.ensure_table()
        published = store.versions()
        if not published:
            return {"kept": [], "removed": [], "deleted_items": 0, "reason": "nothing published yet"}
        kept = published[:max(1, keep)]  # the live version first, then the ones it replaced
        live_day = _version_day(published[0])
        removed, deleted_items, spared = [], 0, []
        for version in root.list_dirs("recs/versions"):
            if version in kept:
                continue
            if _version_day(version) >= live_day:
                spared.append(version)  # same or newer day: maybe being built by another run right now
                continue
            shards_dir = f"{_version_rel(version)}/shards"
            user_ids: list[str] = []
            for rel in root.list(shards_dir):
                local = root.local_dir(shards_dir) / Path(rel).name
                user_ids.extend(pq.read_table(local, columns=["user_id"]).column("user_id").to_pylist())
            model_dir = f"{_version_rel(version)}/model"
            if root.exists(f"{model_dir}/fallback.json"):
                groups = json.loads((root.local_dir(model_dir) / "fallback.json").read_text())
                user_ids.extend(schema.fallback_key(g["country"], g["band"]) for g in groups)
            deleted_items += store.delete_version(version, user_ids)
            root.remove_dir(_version_rel(version))
            removed.append(version)
    cutoff = (_day(live_day) - timedelta(days=keep_staged_days)).isoformat()
    staged = contract.prune_staging(schema.PIPELINE, keep_attempts=1, before=cutoff, drop_accepted=True)
    log.info("cleanup kept %s, spared %s, removed %s (%d DynamoDB items); staged runs removed: %d", kept, spared,
             removed, deleted_items, len(staged["removed"]))
    return {"kept": kept, "spared": spared, "removed": removed, "deleted_items": deleted_items,
            "staged_removed": staged["removed"]}


# -- everything, without Airflow ----------------------------------------------------------------------------

def run_day(day: str | date, params: dict | None = None, *, max_bad_share: float | None = None,
            shard_users: int = 50_000, evaluate_users: int | None = 5000, keep: int = 2,
            quality_tolerance: float | None = 0.05) -> dict:
    """What one DAG run does, in one process: validate → build → shards → write → publish → evaluate → cleanup."""
    from tqdm import tqdm

    validated = validate(day, max_bad_share)
    built = build(day, params, shard_users)
    written = [write_shard(recommend_shard(s)) for s in tqdm(built["shards"], desc="shards", disable=None)]
    evaluated = evaluate(day, params, evaluate_users) if evaluate_users else None
    published = publish(built["version"], written, evaluated, quality_tolerance)
    return {"validate": validated, "build": {k: v for k, v in built.items() if k != "shards"},
            "shards": len(written), "publish": published, "evaluate": evaluated, "cleanup": cleanup(keep)}

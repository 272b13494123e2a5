"""Recommendations benchmark at Last.fm-360K scale: the full daily run, neighbour searches side by side, the
held-out evaluation with its neighbour curve, and the DynamoDB write of every user.

1. Generates a Last.fm-format snapshot (default 360,000 users, 160,000 artists, ~17.3M rows) into a temporary
   data root (``--data DIR`` reuses one from ``--keep``). Generation is not part of the pipeline.
2. ``pipeline``, in a fresh subprocess (its peak RSS is the pipeline's own): validate + stage (the ingest
   contract without its Postgres commit) → load the matrix → fit with the default ``ModelParams`` → recommend
   every user shard by shard as the mapped tasks do (the model loaded once per shard, each shard's Parquet
   written) → seconds per stage, users/s, peak RSS. In the same process: the popularity baseline for every
   user → ``full run / popularity``.
3. ``baseline``: the previously deployed search (``svd_hnsw``, 100 neighbours, no re-ranking) fitted and
   recommending every user the same way, in its own subprocess → the new / old time ratio of the same steps.
4. ``neighbours``: on the full matrix, ``--sample`` warm users searched by every candidate: exact search
   (our kernel: the reference), ``sparse_dot_topn`` on the blended vectors (a kept library's exact top-K, if
   installed), SVD + HNSW, and the pruned index over a grid of ``index_postings`` × ``rerank`` → ms per user
   (wall, all threads), the time for every warm user extrapolated from it, and each one's similarity ratio
   and recall against exact search.
5. ``evaluate``: the held-out evaluation (``--eval-users``) of the default model beside exact neighbours,
   item-item CF, popularity and the oracle, the neighbour curve (``--k-curve``), and the old deployed model on
   the same split.
6. ``dynamo``: one moto server on loopback; every user's real records (the shard files of step 2) written by
   a bare boto3 ``batch_writer`` (one process), by ``RecsStore.write_records`` shard after shard (one process,
   4 threads), and by ``--writers`` parallel shard writers (processes, as the DAG's mapped ``write_shard``
   tasks) → seconds, items/s, ratios, and each shard's time.

Charts go beside ``--out`` (``recs_neighbours.png``, ``recs_evaluation.png``).

Run (from the repository root)::

    .venv/bin/python bench/recs_bench.py --out bench/out/recs.json           # full scale, ~30 min on 2 cores
    .venv/bin/python bench/recs_bench.py --users 20000 --artists 20000 --sample 500 --eval-users 1000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DAY = date(2026, 11, 1)
OLD = {"neighbours": "svd_hnsw", "k_neighbours": 100, "rerank": 0}  # deployed before this change
GRID_POSTINGS = (100, 300, 1000)
GRID_RERANK = (1, 2, 3)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _staged(root: Path) -> Path:
    return root / "bench-staged" / "staged"


# -- 2. and 3. the daily run ---------------------------------------------------------------------------------

def _recommend_shards(model_dir: Path, n_users: int, shard_users: int, out_dir: Path | None) -> dict:
    """What the mapped recommend_shard tasks do: load the model, recommend the shard, write its Parquet."""
    import numpy as np
    import pandas as pd

    from pipelines.recs.model import UserUserModel

    bounds = np.linspace(0, n_users, max(1, -(-n_users // shard_users)) + 1).astype(int)
    load_s = compute_s = write_s = 0.0
    sources: dict[str, int] = {}
    artists = pd.read_parquet(model_dir / "artists.parquet").set_index("artist_idx").sort_index()
    names = artists["artist_name"].to_numpy(dtype=object)
    mbids = artists["mbid"].astype(object).where(artists["mbid"].notna(), None).to_numpy(dtype=object)
    for shard, (start, stop) in enumerate(itertools.pairwise(bounds)):
        t = time.perf_counter()
        model = UserUserModel.load(model_dir)
        load_s += time.perf_counter() - t
        t = time.perf_counter()
        idx, val, src = model.recommend(np.arange(start, stop))
        compute_s += time.perf_counter() - t
        for s in src:
            sources[s] = sources.get(s, 0) + 1
        t = time.perf_counter()
        if out_dir is not None:
            keep = idx >= 0
            pd.DataFrame({
                "user_id": model.users.loc[np.arange(start, stop), "user_id"].to_numpy(), "source": src,
                "artist": [names[i[k]].tolist() for i, k in zip(idx, keep, strict=True)],
                "mbid": [mbids[i[k]].tolist() for i, k in zip(idx, keep, strict=True)],
                "score": [np.round(v[k], 6).astype(float).tolist() for v, k in zip(val, keep, strict=True)],
            }).to_parquet(out_dir / f"shard={shard:05d}.parquet", index=False)
        write_s += time.perf_counter() - t
        del model
    return {"shards": len(bounds) - 1, "load_s": load_s, "compute_s": compute_s, "write_parquet_s": write_s,
            "seconds": load_s + compute_s + write_s, "sources": sources}


def _fit_and_recommend(snapshot, params, root: Path, shard_users: int, out_dir: Path | None) -> dict:
    from pipelines.recs.model import UserUserModel

    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t, c = time.perf_counter(), time.process_time()
    model = UserUserModel.fit(snapshot, params)
    times["fit"], cpu["fit"] = time.perf_counter() - t, time.process_time() - c
    fit_split = dict(model.timings)
    warm = int(model.candidates.sum())
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        t = time.perf_counter()
        model.save(Path(tmp) / "model")
        snapshot.artists.reset_index()[["artist_idx", "artist_key", "artist_name", "mbid"]].to_parquet(
            Path(tmp) / "model" / "artists.parquet")
        times["save_model"] = time.perf_counter() - t
        del model
        c = time.process_time()
        shards = _recommend_shards(Path(tmp) / "model", snapshot.n_users, shard_users, out_dir)
        cpu["recommend_shards"] = time.process_time() - c
    times["recommend_shards"] = shards.pop("seconds")
    return {"stage_seconds": times, "cpu_seconds": cpu, "fit_split": fit_split, "warm_users": warm,
            "shards": shards, "params": params.as_dict()}


def stage_pipeline(root: Path, shard_users: int, out: Path) -> None:
    from pipelines import ingest
    from pipelines.recs.features import ModelParams, load_snapshot
    from pipelines.recs.ingest import inspect_snapshot
    from pipelines.storage import DataRoot

    t0, c0 = time.perf_counter(), time.process_time()
    # The ingest contract's validation without its Postgres commit (the quarantine rows are a few thousand).
    validation = inspect_snapshot(DAY, DataRoot(str(root)), 0.05, ingest.Workspace(root / "bench-staged"))
    validate_s, validate_cpu = time.perf_counter() - t0, time.process_time() - c0
    t = time.perf_counter()
    snapshot = load_snapshot(_staged(root))
    load_s = time.perf_counter() - t
    shard_dir = root / "shards"
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir()
    run = _fit_and_recommend(snapshot, ModelParams(), root, shard_users, shard_dir)
    times = {"validate": validate_s, "load_matrix": load_s, **run["stage_seconds"]}
    pipeline_s = sum(times.values())
    t = time.perf_counter()
    popularity_for_all(snapshot.plays, 10)
    popularity_s = time.perf_counter() - t
    out.write_text(json.dumps({
        **run, "stage_seconds": times, "cpu_seconds": {"validate": validate_cpu, **run["cpu_seconds"]},
        "rows_read": validation.rows_read, "rows_valid": validation.rows_valid,
        "users": snapshot.n_users, "artists": snapshot.n_artists, "interactions": int(snapshot.plays.nnz),
        "reasons": validation.reasons, "pipeline_seconds": pipeline_s,
        "users_per_second": snapshot.n_users / pipeline_s,
        "recommend_users_per_second": snapshot.n_users / times["recommend_shards"],
        "popularity_seconds": popularity_s, "pipeline_over_popularity": pipeline_s / popularity_s,
        "peak_rss_mib": _rss_mib()}))


def stage_baseline(root: Path, shard_users: int, out: Path) -> None:
    from pipelines.recs.features import ModelParams, load_snapshot

    snapshot = load_snapshot(_staged(root))
    run = _fit_and_recommend(snapshot, ModelParams(**OLD), root, shard_users, None)
    out.write_text(json.dumps({**run, "peak_rss_mib": _rss_mib()}))


def popularity_for_all(plays, n: int):
    """The popularity baseline for every user: the most listened artists each user has not played."""
    import numpy as np

    listened = plays.copy()
    listened.data[:] = 1
    counts = np.asarray(listened.sum(axis=0)).ravel()
    longest = int(np.diff(plays.indptr).max())
    top = np.argsort(-counts, kind="stable")[: n + longest]
    seen = (listened[:, top] > 0).toarray()
    order = np.argsort(seen, axis=1, kind="stable")[:, :n]  # unseen first, in popularity order
    return top[order]


# -- 4. neighbour searches side by side ------------------------------------------------------------------------

def stage_neighbours(root: Path, sample_size: int, out: Path) -> None:
    import numpy as np

    from pipelines.recs.features import ModelParams, load_snapshot
    from pipelines.recs.model import UserUserModel
    from pipelines.recs.neighbours import (
        Neighbours,
        PostingIndex,
        neighbour_recall,
        pair_similarity,
        search,
        similarity_ratio,
    )

    snapshot = load_snapshot(_staged(root))
    default = ModelParams()
    k = default.k_neighbours
    model = UserUserModel.fit(snapshot, ModelParams(**{**default.as_dict(), "neighbours": "exact"}))
    warm = np.nonzero(model.candidates)[0]
    rng = np.random.default_rng(11)
    sample = np.sort(rng.choice(warm, size=min(sample_size, len(warm)), replace=False))
    w = default.profile_weight
    rows: list[dict] = []

    def timed(fn):
        fn(sample[:20])  # compiled code and caches warm
        t, c = time.perf_counter(), time.process_time()
        got = fn(sample)
        return got, time.perf_counter() - t, time.process_time() - c

    exact, wall, cpu = timed(lambda r: model.neighbours(r, "exact"))

    def record(name: str, found: Neighbours, wall: float, cpu: float, k_used: int, build_s: float = 0.0,
               **extra) -> None:
        ref = Neighbours(exact.indices[:, :k_used], exact.sims[:, :k_used])  # exact top-k is a prefix of top-K
        sims = pair_similarity(model.content, model.codes, w, sample, found.indices[:, :k_used])
        per_user = wall / len(sample)
        rows.append({"search": name, "k": k_used, "ms_per_user": 1000 * per_user,
                     "cpu_ms_per_user": 1000 * cpu / len(sample), "all_warm_users_s": per_user * len(warm),
                     "index_build_s": build_s, "similarity_ratio": similarity_ratio(sims, ref),
                     "recall": neighbour_recall(Neighbours(found.indices[:, :k_used], sims), ref), **extra})
        print(f"  {name:<34} k={k_used:<4} {1000 * per_user:7.3f} ms/user  ratio {rows[-1]['similarity_ratio']:.4f}"
              f"  recall {rows[-1]['recall']:.3f}", flush=True)

    record("exact (kernel)", exact, wall, cpu, k)
    record("exact (kernel)", exact, wall, cpu, OLD["k_neighbours"])
    try:
        _sparse_dot_topn(model, snapshot, sample, k, exact, record)
    except ImportError:
        print("  sparse_dot_topn not installed: skipped", flush=True)
    t = time.perf_counter()
    old = UserUserModel.fit(snapshot, ModelParams(**OLD))
    build_s = time.perf_counter() - t
    found, wall, cpu = timed(old.neighbours)
    record("svd_hnsw (old default)", found, wall, cpu, OLD["k_neighbours"], build_s)
    for postings in GRID_POSTINGS:
        t = time.perf_counter()
        index = PostingIndex.build(model.content, model.codes, model.candidates, postings)
        build_s = time.perf_counter() - t
        for rerank in GRID_RERANK:
            pool = max(1, rerank) * k
            found, wall, cpu = timed(lambda r, ix=index, p=pool: search(model.content, model.codes, w, ix, r, k, p))
            record(f"approx P={postings} rerank={rerank}", found, wall, cpu, k, build_s, index_postings=postings,
                   rerank=rerank, default=(postings == default.index_postings and rerank == default.rerank))
    out.write_text(json.dumps({"sample": len(sample), "warm_users": len(warm), "k": k, "searches": rows,
                               "peak_rss_mib": _rss_mib()}))


def _sparse_dot_topn(model, snapshot, sample, k, exact, record) -> None:
    """A kept library's exact sparse top-K (C++, all threads) on the stacked blended vectors."""
    import numpy as np
    import scipy.sparse as sp
    from sparse_dot_topn import sp_matmul_topn

    from pipelines.recs.features import user_vectors
    from pipelines.recs.neighbours import Neighbours

    _, vectors = user_vectors(snapshot, model.params)
    vectors = vectors.tocsr()
    candidates_t = (sp.diags(model.candidates.astype(np.float32)) @ vectors).T.tocsr()
    threads = os.cpu_count() or 1

    def run(rows):
        product = sp_matmul_topn(vectors[rows], candidates_t, top_n=k + 1, n_threads=threads, sort=True).tocsr()
        idx = np.full((len(rows), k), -1, np.int32)
        sims = np.zeros((len(rows), k), np.float32)
        for i, u in enumerate(rows):
            cols = product.indices[product.indptr[i]:product.indptr[i + 1]]
            vals = product.data[product.indptr[i]:product.indptr[i + 1]]
            keep = cols != u
            found = cols[keep][:k]
            idx[i, :len(found)], sims[i, :len(found)] = found, vals[keep][:k]
        return Neighbours(idx, sims)

    run(sample[:20])
    t, c = time.perf_counter(), time.process_time()
    found = run(sample)
    record("sparse_dot_topn exact", found, time.perf_counter() - t, time.process_time() - c, k)


# -- 5. held-out evaluation -------------------------------------------------------------------------------------

def stage_evaluate(root: Path, eval_users: int, k_curve: tuple[int, ...], out: Path) -> None:
    import numpy as np

    from pipelines.recs.evaluate import EvalConfig, K, evaluate, holdout_split, plot_report
    from pipelines.recs.features import ModelParams, Snapshot, load_snapshot
    from pipelines.recs.jobs import _oracle_for
    from pipelines.recs.metrics import ranking_metrics
    from pipelines.recs.model import UserUserModel
    from pipelines.storage import DataRoot

    snapshot = load_snapshot(_staged(root))
    config = EvalConfig(eval_users=eval_users, k_curve=k_curve)
    t = time.perf_counter()
    result = evaluate(snapshot, ModelParams(), config, oracle=_oracle_for(DataRoot(str(root)), DAY))
    seconds = time.perf_counter() - t
    # the old deployed model on exactly the same split and users (evaluate's own sampling, same seed)
    train, holdout = holdout_split(snapshot.plays, config.holdout_share, config.min_items, config.seed)
    evaluable = np.nonzero(np.diff(holdout.indptr) > 0)[0]
    rows = np.sort(np.random.default_rng(config.seed).choice(
        evaluable, size=min(config.eval_users, len(evaluable)), replace=False))
    old = UserUserModel.fit(Snapshot(train, snapshot.users, snapshot.artists), ModelParams(**OLD))
    result.metrics["user_user_cf_svd_hnsw_k100 (old)"] = ranking_metrics(
        old.recommend(rows)[0], holdout[rows], K, n_items=snapshot.n_artists)
    if out.parent.exists():
        plot_report(result, out.parent / "recs_evaluation.png")
    out.write_text(json.dumps({"seconds": seconds, "split": result.seconds, "metrics": result.metrics,
                               "neighbour_recall": result.neighbour_recall,
                               "neighbour_similarity_ratio": result.neighbour_similarity_ratio,
                               "k_curve": {str(k): v for k, v in result.k_curve.items()},
                               "eval_users": result.n_eval_users, "peak_rss_mib": _rss_mib()}))


# -- 6. DynamoDB ------------------------------------------------------------------------------------------------

def _shard_records(path: Path, version: str):
    import pyarrow.parquet as pq

    from pipelines.recs.schema import RecItem, RecRecord

    for batch in pq.ParquetFile(path).iter_batches(batch_size=5000):
        for row in batch.to_pylist():
            yield RecRecord(user_id=row["user_id"], version=version, generated_on=DAY.isoformat(),
                            source=row["source"],
                            items=[RecItem(artist=a, score=s, mbid=m)
                                   for a, m, s in zip(row["artist"], row["mbid"], row["score"], strict=True)])


def _write_shard(args: tuple[str, str, str, int]) -> dict:
    """One shard writer process, as a mapped write_shard task: its own client, 4 threads."""
    endpoint, table, path, threads = args
    os.environ["PIPELINES_DYNAMODB_ENDPOINT"] = endpoint
    from pipelines.recs.dynamo import RecsStore
    from pipelines.settings import get_settings

    get_settings.cache_clear()
    started = time.perf_counter()
    stats = RecsStore(table_name=table).write_records(_shard_records(Path(path), "20261101-bench"),
                                                      threads=threads)
    return {"shard": Path(path).name, "items": stats.items, "seconds": time.perf_counter() - started,
            "started": started, "unprocessed_retries": stats.unprocessed_retries}


def stage_dynamo(root: Path, writers: int, serial: bool, out: Path) -> None:
    import boto3

    from pipelines.recs.dynamo import RecsStore, bare_batch_writer_load
    from pipelines.services import moto_server

    shards = sorted((root / "shards").glob("shard=*.parquet"))
    figures: dict = {"shards": len(shards)}
    with moto_server() as endpoint:
        os.environ["PIPELINES_DYNAMODB_ENDPOINT"] = endpoint
        from pipelines.settings import dynamodb_config, get_settings

        get_settings.cache_clear()
        kwargs = dynamodb_config()
        client = boto3.client("dynamodb", **kwargs)

        def fresh(name: str) -> str:
            RecsStore(table_name=name).ensure_table()
            return name

        def drop(name: str) -> None:  # moto keeps items in memory: free them before the next run
            client.delete_table(TableName=name)

        def records():
            return itertools.chain.from_iterable(_shard_records(p, "20261101-bench") for p in shards)

        table = fresh("bench_bare")
        figures["bare_seconds"] = bare_batch_writer_load(table, records(), kwargs)
        figures["items"] = client.describe_table(TableName=table)["Table"].get("ItemCount")
        drop(table)
        print(f"  bare batch_writer: {figures['bare_seconds']:.1f} s", flush=True)

        if serial:
            table = fresh("bench_ours_serial")
            started = time.perf_counter()
            one_by_one = [_write_shard((endpoint, table, str(p), 4)) for p in shards]
            figures["ours_serial_seconds"] = time.perf_counter() - started
            figures["ours_serial_shards"] = [{k: v for k, v in s.items() if k != "started"} for s in one_by_one]
            drop(table)
            print(f"  ours, shards one after another: {figures['ours_serial_seconds']:.1f} s", flush=True)

        table = fresh("bench_ours_parallel")
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=writers) as pool:
            parallel = list(pool.map(_write_shard, [(endpoint, table, str(p), 4) for p in shards]))
        figures["ours_parallel_seconds"] = time.perf_counter() - started
        figures["ours_parallel_shards"] = [{k: v for k, v in s.items() if k != "started"} for s in parallel]
        figures["writers"] = writers
        drop(table)
        print(f"  ours, {writers} shard writers in parallel: {figures['ours_parallel_seconds']:.1f} s", flush=True)
    users = sum(s["items"] for s in parallel)
    figures.update({"users": users, "bare_items_per_s": users / figures["bare_seconds"],
                    "ours_parallel_items_per_s": users / figures["ours_parallel_seconds"],
                    "ours_parallel_over_bare_throughput": figures["bare_seconds"] / figures["ours_parallel_seconds"]})
    if serial:
        figures["ours_serial_over_bare_throughput"] = figures["bare_seconds"] / figures["ours_serial_seconds"]
    out.write_text(json.dumps(figures))


# -- driver -----------------------------------------------------------------------------------------------------

def _child(stage: str, root: Path, extra: list[str], out_dir: Path | None) -> dict:
    out = (out_dir or root) / f"recs_{stage}.json"
    print(f"[{time.strftime('%H:%M:%S')}] {stage} ...", flush=True)
    subprocess.run([sys.executable, __file__, "--stage", stage, "--root", str(root), "--result", str(out),
                    *extra], check=True)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=160_000)
    parser.add_argument("--data", type=Path, help="reuse a data root generated earlier (with --keep)")
    parser.add_argument("--shard-users", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=2000, help="users for the side-by-side neighbour searches")
    parser.add_argument("--eval-users", type=int, default=5000)
    parser.add_argument("--k-curve", default="50,100,200,400")
    parser.add_argument("--writers", type=int, default=4, help="parallel shard writers for DynamoDB")
    parser.add_argument("--serial", action="store_true", help="also time our writer shard after shard")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    k_curve = tuple(int(k) for k in args.k_curve.split(",") if k)
    stages = {"pipeline": lambda: stage_pipeline(args.root, args.shard_users, args.result),
              "baseline": lambda: stage_baseline(args.root, args.shard_users, args.result),
              "neighbours": lambda: stage_neighbours(args.root, args.sample, args.result),
              "evaluate": lambda: stage_evaluate(args.root, args.eval_users, k_curve, args.result),
              "dynamo": lambda: stage_dynamo(args.root, args.writers, args.serial, args.result)}
    if args.stage:
        stages[args.stage]()
        return 0

    from pipelines.recs.generate import RecsDataSpec, write_snapshot

    out_dir = args.out.parent if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    root = args.data or Path(tempfile.mkdtemp(prefix="recs-bench-"))
    report: dict = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    print(f"data root: {root}", flush=True)
    try:
        if args.data is None:
            t = time.perf_counter()
            generated = write_snapshot(RecsDataSpec(n_users=args.users, n_artists=args.artists, start=DAY), root,
                                       DAY)
            report["generated"] = {"seconds": time.perf_counter() - t,
                                   **{k: v for k, v in generated.items() if isinstance(v, int | float)}}
            print(f"generated {args.users:,} users × {args.artists:,} artists in "
                  f"{report['generated']['seconds']:.1f} s", flush=True)
        skip = set(args.skip.split(","))
        extra = {"pipeline": ["--shard-users", str(args.shard_users)],
                 "baseline": ["--shard-users", str(args.shard_users)], "neighbours": ["--sample", str(args.sample)],
                 "evaluate": ["--eval-users", str(args.eval_users), "--k-curve", args.k_curve],
                 "dynamo": ["--writers", str(args.writers), *(["--serial"] if args.serial else [])]}
        for stage in ("pipeline", "baseline", "neighbours", "evaluate", "dynamo"):
            if stage not in skip:
                report[stage] = _child(stage, root, extra[stage], out_dir)
        report["machine"]["load_average_at_end"] = os.getloadavg()
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(root, ignore_errors=True)
    _print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
        if "neighbours" in report:
            _plot_neighbours(report["neighbours"], args.out.parent / "recs_neighbours.png")
    return 0


def _plot_neighbours(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in result["searches"]:
        colour = "#c44e52" if r["search"].startswith("exact") or "sparse" in r["search"] else \
            "#999999" if "svd" in r["search"] else "#4c72b0"
        ax.scatter(r["ms_per_user"], r["similarity_ratio"], color=colour, s=60 if r.get("default") else 25)
        ax.annotate(r["search"].replace("approx ", "") + f" (k={r['k']})", (r["ms_per_user"], r["similarity_ratio"]),
                    fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.axhline(0.95, color="#55a868", linestyle="--", label="aim: ratio ≥ 0.95")
    ax.set_xscale("log")
    ax.set_xlabel("ms per user (wall, 2 threads)")
    ax.set_ylabel("similarity ratio against exact search")
    ax.set_title(f"Neighbour searches on {result['warm_users']:,} warm users (sample {result['sample']:,})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print_report(report: dict) -> None:
    m = report["machine"]
    print(f"\nmachine: {m['cpus']} CPUs, load average {m['load_average_at_start'][0]:.1f} at start, "
          f"{m.get('load_average_at_end', [float('nan')])[0]:.1f} at end (other work shares the cores)")
    p = report.get("pipeline")
    if p:
        print(f"\nfull daily run for {p['users']:,} users × {p['artists']:,} artists ({p['interactions']:,} plays):"
              f" {p['pipeline_seconds']:.1f} s = {p['users_per_second']:,.0f} users/s, "
              f"peak RSS {p['peak_rss_mib']:,.0f} MiB")
        cpu = p.get("cpu_seconds", {})
        for stage, seconds in p["stage_seconds"].items():
            print(f"  {stage:<18} {seconds:8.1f} s  ({seconds / p['pipeline_seconds']:.0%})"
                  + (f"   CPU {cpu[stage]:7.1f} s" if stage in cpu else ""))
        print(f"  fit split: { {k: round(v, 1) for k, v in p['fit_split'].items()} }")
        s = p["shards"]
        print(f"  recommend: {p['recommend_users_per_second']:,.0f} users/s over {s['shards']} shards (model loads "
              f"{s['load_s']:.1f} s, compute {s['compute_s']:.1f} s, Parquet {s['write_parquet_s']:.1f} s); "
              f"sources {s['sources']}")
        print(f"  popularity baseline for every user: {p['popularity_seconds']:.1f} s → full run / popularity = "
              f"{p['pipeline_over_popularity']:.1f}×")
    b = report.get("baseline")
    if b and p:
        steps = ("fit", "save_model", "recommend_shards")
        new, old = sum(p["stage_seconds"][k] for k in steps), sum(b["stage_seconds"][k] for k in steps)
        if "cpu_seconds" in b and "cpu_seconds" in p:
            new_cpu = sum(p["cpu_seconds"][k] for k in ("fit", "recommend_shards"))
            old_cpu = sum(b["cpu_seconds"][k] for k in ("fit", "recommend_shards"))
            print(f"\nCPU seconds of fit + recommend, new / old = {new_cpu:.0f} / {old_cpu:.0f} = "
                  f"{new_cpu / old_cpu:.2f}×")
        print(f"\nold deployed search (svd_hnsw, k=100): fit {b['stage_seconds']['fit']:.1f} s, recommend "
              f"{b['stage_seconds']['recommend_shards']:.1f} s; fit + save + recommend new / old = {new:.1f} / "
              f"{old:.1f} s = {new / old:.2f}×, peak RSS {b['peak_rss_mib']:,.0f} MiB")
    n = report.get("neighbours")
    if n:
        print(f"\nneighbour searches, {n['sample']:,} sampled of {n['warm_users']:,} warm users (all-users time is "
              "extrapolated from the sample):")
        for r in n["searches"]:
            print(f"  {r['search']:<34} k={r['k']:<4} {r['ms_per_user']:8.3f} ms/user → all "
                  f"{r['all_warm_users_s']:7.0f} s   ratio {r['similarity_ratio']:.4f}  recall {r['recall']:.3f}"
                  f"{'  (default)' if r.get('default') else ''}")
    e = report.get("evaluate")
    if e:
        print(f"\nheld-out evaluation ({e['eval_users']:,} users, {e['seconds']:.0f} s, peak RSS "
              f"{e['peak_rss_mib']:,.0f} MiB); deployed vs exact neighbours: similarity ratio "
              f"{e['neighbour_similarity_ratio']:.3f}, recall {e['neighbour_recall']:.3f}")
        for name, mt in sorted(e["metrics"].items(), key=lambda kv: -kv[1]["ndcg_at_10"]):
            print(f"  {name:<34} NDCG@10 {mt['ndcg_at_10']:.4f}  P@10 {mt['precision_at_10']:.4f}  "
                  f"R@10 {mt['recall_at_10']:.4f}  MAP@10 {mt['map_at_10']:.4f}  coverage {mt['coverage']:.4f}")
        for k, mt in e["k_curve"].items():
            print(f"  k = {k:<5} NDCG@10 {mt['ndcg_at_10']:.4f}  ({mt['seconds_per_1000_users']:.3f} s per 1000 users)")
    d = report.get("dynamodb") or report.get("dynamo")
    if d:
        serial = (f"; ours shard after shard {d['ours_serial_seconds']:.1f} s "
                  f"({d['ours_serial_over_bare_throughput']:.2f}× bare)") if "ours_serial_seconds" in d else ""
        print(f"\nDynamoDB, {d['users']:,} users' records over {d['shards']} shards, moto on loopback: bare "
              f"batch_writer {d['bare_seconds']:.1f} s ({d['bare_items_per_s']:,.0f} items/s){serial}; ours with "
              f"{d['writers']} parallel shard writers {d['ours_parallel_seconds']:.1f} s "
              f"({d['ours_parallel_items_per_s']:,.0f} items/s, {d['ours_parallel_over_bare_throughput']:.2f}× bare)")
        print("  per shard (parallel): " + ", ".join(f"{s['seconds']:.0f}s" for s in d["ours_parallel_shards"]))


if __name__ == "__main__":
    raise SystemExit(main())

"""Recommendations benchmark: the full daily run for every user at Last.fm-360K scale, and the DynamoDB writer.

1. Generates a Last.fm-format snapshot (default 360,000 users, 160,000 artists, ~17.5M rows) into a
   temporary data root. Generation is timed but is not part of the pipeline.
2. In a fresh subprocess (so its peak RSS is the pipeline's own): validate + stage (DuckDB) → load the matrix
   → fit (weighting, profile blend, fallback lists, truncated SVD, HNSW graph) → recommend every user, shard
   by shard as the mapped tasks do (the model loaded once per shard, as each task would) → users/s, seconds per
   stage, peak RSS. In the same process and on the same matrix: the popularity baseline for every user (most
   listened unseen artists) → ``full run / popularity`` ratio.
3. The held-out evaluation at that scale (``--eval-users``): NDCG@10 of approximate vs exact neighbours, the
   baselines, the oracle, and the approximate search's neighbour recall against exact search.
4. DynamoDB, against one moto server on loopback: the same ``--write-users`` records written by our
   ``RecsStore.write_records`` (4 threads) and by a bare boto3 ``Table.batch_writer()``
   (``dynamo.bare_batch_writer_load``; both build their items inside the timing) into fresh tables,
   alternating, best of ``--repeat`` → items/s and the ratio ours / bare (aim ≥ 0.8).

Run (from the repository root)::

    .venv/bin/python bench/recs_bench.py                                   # full scale, ~10 min on 2 cores
    .venv/bin/python bench/recs_bench.py --users 20000 --artists 20000     # quick
    .venv/bin/python bench/recs_bench.py --out bench/out/recs.json
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
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DAY = date(2026, 11, 1)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_pipeline(root: Path, shard_users: int, out: Path) -> None:
    """Step 2, run in its own process."""
    import numpy as np

    from pipelines import ingest
    from pipelines.recs.features import ModelParams, load_snapshot
    from pipelines.recs.ingest import inspect_snapshot
    from pipelines.recs.model import UserUserModel
    from pipelines.storage import DataRoot

    data_root = DataRoot(str(root))
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    # The ingest contract's validation without its Postgres commit (the quarantine rows are a few thousand).
    validation = inspect_snapshot(DAY, data_root, 0.05, ingest.Workspace(root / "bench-staged"))
    times["validate"] = time.perf_counter() - t0
    t = time.perf_counter()
    snapshot = load_snapshot(root / "bench-staged" / "staged")
    times["load_matrix"] = time.perf_counter() - t
    t = time.perf_counter()
    model = UserUserModel.fit(snapshot, ModelParams())
    times["fit"] = time.perf_counter() - t
    fit_split = dict(model.timings)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        t = time.perf_counter()
        model.save(Path(tmp) / "model")
        times["save_model"] = time.perf_counter() - t
        n = snapshot.n_users
        bounds = np.linspace(0, n, max(1, -(-n // shard_users)) + 1).astype(int)
        t = time.perf_counter()
        load_s = 0.0
        sources: dict[str, int] = {}
        for start, stop in itertools.pairwise(bounds):
            tl = time.perf_counter()
            shard_model = UserUserModel.load(Path(tmp) / "model")
            load_s += time.perf_counter() - tl
            _, _, src = shard_model.recommend(np.arange(start, stop))
            for s in src:
                sources[s] = sources.get(s, 0) + 1
            del shard_model
        times["recommend_shards"] = time.perf_counter() - t
    pipeline_s = sum(times.values())
    t = time.perf_counter()
    popularity_for_all(snapshot.plays, 10)
    popularity_s = time.perf_counter() - t
    out.write_text(json.dumps({
        "rows_read": validation.rows_read, "rows_valid": validation.rows_valid, "users": snapshot.n_users,
        "artists": snapshot.n_artists, "interactions": int(snapshot.plays.nnz), "warm_users":
        int(model.candidates.sum()), "reasons": validation.reasons, "stage_seconds": times,
        "fit_split": fit_split, "shard_model_load_seconds": load_s, "shards": len(bounds) - 1,
        "pipeline_seconds": pipeline_s, "users_per_second": snapshot.n_users / pipeline_s,
        "recommend_users_per_second": snapshot.n_users / times["recommend_shards"],
        "popularity_seconds": popularity_s, "pipeline_over_popularity": pipeline_s / popularity_s,
        "sources": sources, "peak_rss_mib": _rss_mib()}))


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


def stage_evaluate(root: Path, eval_users: int, out: Path) -> None:
    from pipelines.recs.evaluate import EvalConfig, evaluate
    from pipelines.recs.features import ModelParams, load_snapshot
    from pipelines.recs.jobs import _oracle_for
    from pipelines.storage import DataRoot

    snapshot = load_snapshot(root / "bench-staged" / "staged")
    t = time.perf_counter()
    oracle = _oracle_for(DataRoot(str(root)), DAY)
    result = evaluate(snapshot, ModelParams(), EvalConfig(eval_users=eval_users), oracle=oracle)
    out.write_text(json.dumps({"seconds": time.perf_counter() - t, "split": result.seconds,
                               "metrics": result.metrics, "neighbour_recall": result.neighbour_recall,
                               "neighbour_similarity_ratio": result.neighbour_similarity_ratio,
                               "eval_users": result.n_eval_users, "peak_rss_mib": _rss_mib()}))


def stage_dynamo(root: Path, write_users: int, repeat: int, out: Path) -> None:
    from pipelines.recs.dynamo import RecsStore, bare_batch_writer_load
    from pipelines.recs.schema import RecItem, RecRecord
    from pipelines.services import moto_server

    records = [RecRecord(user_id=f"{u:040x}", version="20261101-bench", generated_on=DAY.isoformat(),
                         source="user_user_cf",
                         items=[RecItem(artist=f"artist number {u % 997} {r}", score=round(1 / (r + 1), 6),
                                        mbid=None if r % 3 else f"{u:08x}-0000-0000-0000-{r:012x}")
                                for r in range(10)])
               for u in range(write_users)]
    figures: dict[str, list[float]] = {"ours": [], "bare": []}
    with moto_server() as endpoint:
        os.environ["PIPELINES_DYNAMODB_ENDPOINT"] = endpoint
        from pipelines.settings import dynamodb_config, get_settings

        get_settings.cache_clear()
        kwargs = dynamodb_config()
        for attempt in range(repeat):
            store = RecsStore(table_name=f"bench_ours_{attempt}")
            store.ensure_table()
            t = time.perf_counter()
            stats = store.write_records(records)
            figures["ours"].append(time.perf_counter() - t)
            assert stats.items == write_users, stats
            RecsStore(table_name=f"bench_bare_{attempt}").ensure_table()
            figures["bare"].append(bare_batch_writer_load(f"bench_bare_{attempt}", records, kwargs))
    ours, bare = min(figures["ours"]), min(figures["bare"])
    out.write_text(json.dumps({"records": write_users, "ours_seconds": figures["ours"],
                               "bare_seconds": figures["bare"], "ours_items_per_s": write_users / ours,
                               "bare_items_per_s": write_users / bare, "ours_over_bare_throughput": bare / ours}))


def _child(stage: str, root: Path, extra: list[str]) -> dict:
    out = root / f"{stage}.json"
    subprocess.run([sys.executable, __file__, "--stage", stage, "--root", str(root), "--result", str(out), *extra],
                   check=True)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=160_000)
    parser.add_argument("--shard-users", type=int, default=50_000)
    parser.add_argument("--eval-users", type=int, default=5000)
    parser.add_argument("--write-users", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "pipeline":
        stage_pipeline(args.root, args.shard_users, args.result)
        return 0
    if args.stage == "evaluate":
        stage_evaluate(args.root, args.eval_users, args.result)
        return 0
    if args.stage == "dynamo":
        stage_dynamo(args.root, args.write_users, args.repeat, args.result)
        return 0

    from pipelines.recs.generate import RecsDataSpec, write_snapshot

    root = Path(tempfile.mkdtemp(prefix="recs-bench-"))
    try:
        t = time.perf_counter()
        generated = write_snapshot(RecsDataSpec(n_users=args.users, n_artists=args.artists, start=DAY), root, DAY)
        gen_s = time.perf_counter() - t
        print(f"generated {args.users:,} users × {args.artists:,} artists in {gen_s:.1f} s", flush=True)
        pipeline = _child("pipeline", root, ["--shard-users", str(args.shard_users)])
        evaluation = _child("evaluate", root, ["--eval-users", str(args.eval_users)]) if args.eval_users else None
        dynamo = _child("dynamo", root, ["--write-users", str(args.write_users), "--repeat", str(args.repeat)])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report = {"generated": {"seconds": gen_s, **{k: v for k, v in generated.items() if isinstance(v, int | float)}},
              "pipeline": pipeline, "evaluate": evaluation, "dynamodb": dynamo}
    _print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


def _print_report(report: dict) -> None:
    p = report["pipeline"]
    print(f"\nfull daily run for {p['users']:,} users × {p['artists']:,} artists ({p['interactions']:,} plays):"
          f" {p['pipeline_seconds']:.1f} s = {p['users_per_second']:,.0f} users/s, "
          f"peak RSS {p['peak_rss_mib']:,.0f} MiB")
    for stage, seconds in p["stage_seconds"].items():
        print(f"  {stage:<18} {seconds:8.1f} s  ({seconds / p['pipeline_seconds']:.0%})")
    print(f"  fit split: { {k: round(v, 1) for k, v in p['fit_split'].items()} }")
    print(f"  recommend: {p['recommend_users_per_second']:,.0f} users/s over {p['shards']} shards "
          f"(model loads {p['shard_model_load_seconds']:.1f} s in all); sources {p['sources']}")
    print(f"  popularity baseline for every user: {p['popularity_seconds']:.1f} s → full run / popularity = "
          f"{p['pipeline_over_popularity']:.1f}×")
    if report["evaluate"]:
        e = report["evaluate"]
        print(f"\nheld-out evaluation ({e['eval_users']:,} users, {e['seconds']:.0f} s, peak RSS "
              f"{e['peak_rss_mib']:,.0f} MiB); approx vs exact neighbours: recall {e['neighbour_recall']:.3f}, "
              f"similarity ratio {e.get('neighbour_similarity_ratio') or float('nan'):.3f}")
        for name, m in sorted(e["metrics"].items(), key=lambda kv: -kv[1]["ndcg_at_10"]):
            print(f"  {name:<22} NDCG@10 {m['ndcg_at_10']:.4f}  P@10 {m['precision_at_10']:.4f}  "
                  f"R@10 {m['recall_at_10']:.4f}  MAP@10 {m['map_at_10']:.4f}  coverage {m['coverage']:.4f}")
    d = report["dynamodb"]
    print(f"\nDynamoDB ({d['records']:,} records, best of {len(d['ours_seconds'])}): ours "
          f"{d['ours_items_per_s']:,.0f} items/s, bare batch_writer {d['bare_items_per_s']:,.0f} items/s → "
          f"ours / bare = {d['ours_over_bare_throughput']:.2f}×")


if __name__ == "__main__":
    raise SystemExit(main())

"""Tagging benchmark: segmentation (cold and cached, one process and a pool), training time of every model
family, and tagging throughput, on generated Cantonese articles (100,000 by default, the issue's size).

What is measured, in one process, in this order (every figure printed, and written as JSON with ``--out``):

1. ``generate``: :func:`pipelines.tagging.generate.generate_articles` (seed 42, the default difficulty). Timed,
   not part of the pipeline.
Every step records wall seconds, CPU seconds (this process and its finished children) and the load average:
on a shared machine the wall time depends on the other work, the CPU seconds are the code's own cost.

2. ``segment``: pycantonese over every article (:func:`pipelines.tagging.segment.segment_many`):
   **cold, one process** (``workers=1``), then **cold, a pool** of ``--workers`` spawned processes (the same
   texts; the outputs must be identical, else exit 1), then the pool's words written to an empty
   :class:`~pipelines.tagging.segment.SegmentCache` (Parquet in a temporary data root), then **cached**: the
   same articles through :func:`~pipelines.tagging.segment.words_for` again (every one found in the cache, so
   nothing is segmented). Articles/s for each and the ratios to the cold single process.
3. ``crossover``: cold segmentation of 250 ... 8,000 articles, one process against the pool (with its start-up),
   medians of 3 interleaved runs, to show where the pool starts to pay (``segment.MIN_PARALLEL``).
4. ``train``: a seeded 80/20 near-duplicate-aware stratified split; each model of ``--models`` fitted **once**
   (no grid, no CV: the weekly DAG multiplies these by folds + 1 and the grid cells) on the 80% with its default
   parameters, ``--catboost-iterations``, and ``--workers`` threads for the forest and CatBoost: fit seconds,
   predict articles/s on the 20%, held-out accuracy and macro F1 beside the oracle (the generator's clean tags).
5. ``tag`` (needs PostgreSQL, ``--pg``; skipped with ``--no-pg``): a fresh day of ``--tag-articles`` articles as a
   JSON lines drop in a scratch database ``ubm_bench_tagging_<pid>`` (dropped after): ``jobs.validate`` →
   ``jobs.segment`` (cold, the pool) → ``jobs.tag`` with the fitted ``tfidf_lr_words`` registered and promoted,
   timed per step, then ``jobs.tag`` again (a rerun: everything cached, identical rows).

Run (from the repository root)::

    .venv/bin/python bench/tagging_bench.py                          # 100,000 articles (~25 min on 2 cores)
    .venv/bin/python bench/tagging_bench.py --articles 10000 --tag-articles 2000   # quick, ~3 min
    .venv/bin/python bench/tagging_bench.py --out bench/out/tagging.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Every family once, on words (the seed's features), and the linear model on character n-grams too (the
#: largest feature space). ``--models`` takes any model names.
MODELS = ("majority", "seed_rf_words", "tfidf_lr_words", "tfidf_lr_chars", "tfidf_svm_words", "catboost_words")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def say(text: str) -> None:
    print(text, flush=True)


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measured(func, *args, **kwargs):
    """``(result, wall seconds, CPU seconds, 1-minute load average at the end)``: on a shared machine the wall
    time depends on the other work; CPU seconds are the code's own cost."""
    cpu = cpu_seconds()
    out, wall = timed(func, *args, **kwargs)
    return out, wall, cpu_seconds() - cpu, os.getloadavg()[0]


def source_digest() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                         check=False)
    return out.stdout.strip() or "unknown"


# ----------------------------------------------------------------------------------------------- steps
def generate(n: int, seed: int):
    from pipelines.tagging.generate import TaggingSpec, generate_articles
    from pipelines.tagging.text import article_text, content_hash

    corpus, _ = generate_articles(TaggingSpec(corpus_articles=n, seed=seed, days=1, daily_articles=1))
    texts = [article_text(a.title, a.body) for a in corpus]
    hashes = [content_hash(a.title, a.body) for a in corpus]
    return corpus, texts, hashes


def segment(texts: list[str], hashes: list[str], workers: int, root: Path) -> tuple[dict, dict]:
    from pipelines.storage import DataRoot
    from pipelines.tagging import segment as seg

    n, chars = len(texts), sum(map(len, texts))
    seg.segment_text("預熱")  # the model load (about a second) is not part of either measure
    single, t_single, c_single, load_single = measured(seg.segment_many, texts, workers=1)
    say(f"  cold, 1 process: {t_single:.1f} s wall, {c_single:.1f} CPU s, {n / t_single:,.0f} articles/s "
        f"({n / c_single:,.0f} per CPU s; load {load_single:.1f})")
    pooled, t_pool, c_pool, load_pool = measured(seg.segment_many, texts, workers=workers)
    say(f"  cold, pool of {workers}: {t_pool:.1f} s wall, {c_pool:.1f} CPU s, {n / t_pool:,.0f} articles/s "
        f"(load {load_pool:.1f})")
    if pooled != single:
        raise SystemExit("the pool's segmentation differs from the single process's")
    cache = seg.SegmentCache(DataRoot(str(root)))
    _, t_write = timed(cache.add, dict(zip(hashes, pooled, strict=True)))
    (found, stats), t_cached, c_cached, _ = measured(seg.words_for, hashes, texts, cache, workers)
    if stats.segmented or len(found) != len(set(hashes)):
        raise SystemExit(f"the cached run segmented {stats.segmented} articles")
    say(f"  cache write: {t_write:.1f} s; cached run: {t_cached:.2f} s, {n / t_cached:,.0f} articles/s")
    return {"articles": n, "characters": chars, "workers": workers,
            "cold_single_s": t_single, "cold_single_cpu_s": c_single, "cold_single_load": load_single,
            "cold_single_articles_per_s": n / t_single, "cold_single_articles_per_cpu_s": n / c_single,
            "cold_single_chars_per_cpu_s": chars / c_single,
            "cold_pool_s": t_pool, "cold_pool_cpu_s": c_pool, "cold_pool_load": load_pool,
            "cold_pool_articles_per_s": n / t_pool, "pool_speedup": t_single / t_pool,
            "pool_cpu_overhead": c_pool / c_single - 1,
            "cache_write_s": t_write, "cached_s": t_cached, "cached_cpu_s": c_cached,
            "cached_articles_per_s": n / t_cached, "cached_speedup_over_cold_single": t_single / t_cached,
            "words_per_article": sum(map(len, pooled)) / n}, dict(zip(hashes, pooled, strict=True))


def crossover(texts: list[str], workers: int, repeats: int = 3) -> list[dict]:
    """Cold segmentation of growing slices, one process against the pool, interleaved ``repeats`` times (the
    medians: the machine is shared, single timings wander)."""
    import statistics

    from pipelines.tagging import segment as seg

    rows = []
    saved = seg.MIN_PARALLEL
    seg.MIN_PARALLEL = 1  # force the pool at every size
    try:
        for size in (250, 500, 1000, 2000, 4000, 8000):
            if size > len(texts):
                break
            part = texts[-size:]
            ones, pools, loads = [], [], []
            for _ in range(repeats):
                ones.append(timed(seg.segment_many, part, workers=1)[1])
                pools.append(timed(seg.segment_many, part, workers=workers,
                                   chunk_size=max(25, min(seg.CHUNK_SIZE, size // (4 * workers))))[1])
                loads.append(os.getloadavg()[0])
            one, pool = statistics.median(ones), statistics.median(pools)
            rows.append({"articles": size, "single_s": one, "pool_s": pool, "pool_speedup": one / pool,
                         "load": statistics.median(loads)})
            say(f"  {size:>5} articles: 1 process {one:.2f} s, pool {pool:.2f} s (× {one / pool:.2f}), "
                f"medians of {repeats}, load {statistics.median(loads):.1f}")
    finally:
        seg.MIN_PARALLEL = saved
    return rows


def train(corpus, words: dict, hashes: list[str], seed: int, catboost_iterations: int, names: list[str],
          n_jobs: int) -> tuple[dict, dict]:
    import numpy as np

    from pipelines.tagging.features import feature_frame
    from pipelines.tagging.models import evaluate
    from pipelines.tagging.models.base import TagModel, probabilities
    from pipelines.tagging.models.families import build, parse_model_name
    from pipelines.tagging.models.split import holdout_split, near_duplicate_groups
    from pipelines.tagging.schema import TAGS
    from pipelines.tagging.segment import feature_version

    tags = list(TAGS)
    X, t_features = timed(feature_frame, [a.title for a in corpus], [a.body for a in corpus], hashes, words)
    Y = evaluate.indicator([a.observed_tags for a in corpus], tags)
    primary = np.array([a.observed_tags[0] for a in corpus])
    groups, t_groups = timed(near_duplicate_groups, [a.body for a in corpus])
    train_idx, test_idx = holdout_split(primary, groups, 0.2, seed)
    oracle = evaluate.metrics(Y[test_idx], evaluate.indicator([corpus[i].clean_tags for i in test_idx], tags))
    say(f"  features {t_features:.1f} s, near-duplicate groups {t_groups:.1f} s; {len(train_idx):,} train / "
        f"{len(test_idx):,} held out; oracle accuracy {oracle['accuracy']:.3f}")
    rows, models = {}, {}
    for name in names:
        family, view = parse_model_name(name)
        params = {"iterations": catboost_iterations} if family == "catboost" else None
        estimator = build(family, view, seed=seed, n_jobs=n_jobs, params=params)
        fitted, t_fit, c_fit, load = measured(estimator.fit, X.iloc[train_idx], Y[train_idx])
        proba, t_predict = timed(probabilities, fitted, X.iloc[test_idx], len(tags))
        scores = evaluate.metrics(Y[test_idx], proba)
        rows[name] = {"fit_s": t_fit, "fit_cpu_s": c_fit, "load": load,
                      "predict_articles_per_s": len(test_idx) / t_predict,
                      "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
                      "top1_accuracy": scores["top1_accuracy"], "peak_rss_mib": rss_mib()}
        models[name] = TagModel(name=name, family=family, view=view or "-", tags=tags, estimator=fitted,
                                feature_version=feature_version(), params=params or {})
        say(f"  {name:<16} fit {t_fit:8.1f} s ({c_fit:7.1f} CPU s, load {load:4.1f})   predict "
            f"{len(test_idx) / t_predict:>10,.0f} articles/s   "
            f"held-out accuracy {scores['accuracy']:.3f}  macro F1 {scores['macro_f1']:.3f}")
    return {"n_train": len(train_idx), "n_holdout": len(test_idx), "n_jobs": n_jobs, "features_s": t_features,
            "groups_s": t_groups, "oracle": oracle, "models": rows}, models


def _scratch_database(admin_dsn: str, name: str, create: bool) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def tag(model, n: int, seed: int, workers: int, pg: str, root: Path) -> dict:
    from pipelines import db, registry
    from pipelines.settings import get_settings
    from pipelines.tagging import jobs, schema
    from pipelines.tagging.generate import TaggingSpec, generate_articles

    day = date(2024, 6, 3)
    _, daily = generate_articles(TaggingSpec(corpus_articles=1, seed=seed + 1, start=day, days=1, daily_articles=n))
    folder = root / schema.raw_rel_dir(day.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "articles.jsonl", "w") as handle:
        for a in daily[day]:
            handle.write(json.dumps({"id": a.id, "title": a.title, "body": a.body, "published_at": a.published_at,
                                     "tags": []}, ensure_ascii=False) + "\n")
    name = f"ubm_bench_tagging_{os.getpid()}"
    _scratch_database(pg, name, create=True)
    base, _, _ = pg.rpartition("/")
    os.environ["PIPELINES_PG_DSN"] = f"{base}/{name}"
    os.environ["PIPELINES_DATA_ROOT"] = str(root)
    os.environ["PIPELINES_TAGGING_SEGMENT_WORKERS"] = str(workers)
    get_settings.cache_clear()
    try:
        rel = f"{schema.MODELS_REL}/bench/models/{model.name}"
        with registry.track_run("tagging", "train", model_name=model.name, model_version="bench") as run:
            model.save(root / rel)
            run.artifact_uri = f"{root}/{rel}"
        registry.promote("tagging", model.name, str(run.run_id), by="bench")
        validated, t_validate = timed(jobs.validate, day, 0.05)
        segmented, t_segment = timed(jobs.segment, day, workers)
        tagged, t_tag = timed(jobs.tag, day)
        rows = db.query("SELECT * FROM tagging_article_tags ORDER BY article_id, tag")
        _, t_again = timed(jobs.tag, day)
        if db.query("SELECT * FROM tagging_article_tags ORDER BY article_id, tag") != rows:
            raise SystemExit("the rerun wrote different rows")
        valid = validated["rows_valid"]
        out = {"articles": valid, "tags_written": tagged["tags"], "validate_s": t_validate,
               "segment_s": t_segment, "segmented": segmented["segmented"], "tag_s": t_tag, "rerun_tag_s": t_again,
               "end_to_end_articles_per_s": valid / (t_validate + t_segment + t_tag),
               "tag_articles_per_s": valid / t_tag, "rerun_articles_per_s": valid / t_again}
        say(f"  validate {t_validate:.1f} s, segment {t_segment:.1f} s, tag {t_tag:.1f} s "
            f"({valid / t_tag:,.0f} articles/s, {tagged['tags']:,} tag rows), rerun tag {t_again:.1f} s; "
            f"end to end {out['end_to_end_articles_per_s']:,.0f} articles/s")
        return out
    finally:
        _scratch_database(pg, name, create=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--catboost-iterations", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="model names to fit once each")
    parser.add_argument("--tag-articles", type=int, default=20_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an admin DSN: a scratch database is created on that server and dropped after")
    parser.add_argument("--no-pg", action="store_true", help="skip the end-to-end tagging step")
    parser.add_argument("--out", type=Path, help="also write every figure as JSON")
    args = parser.parse_args()

    import pycantonese
    import sklearn

    result: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "code": source_digest(),
                    "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                "pycantonese": pycantonese.__version__, "scikit-learn": sklearn.__version__},
                    "args": {k: str(v) for k, v in vars(args).items()}}
    say(f"tagging benchmark, code {result['code']}, {os.cpu_count()} cores, {args.articles:,} articles, load "
        f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="tagging-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["PIPELINES_HOME"] = str(tmp / "home")
        say("generate ...")
        (corpus, texts, hashes), t_gen = timed(generate, args.articles, args.seed)
        result["generate"] = {"articles": len(corpus), "seconds": t_gen,
                              "mean_characters": sum(map(len, texts)) / len(texts)}
        say(f"  {len(corpus):,} articles ({result['generate']['mean_characters']:.0f} characters on average) in "
            f"{t_gen:.1f} s")
        say("segment ...")
        result["segment"], words = segment(texts, hashes, args.workers, tmp / "data")
        say("crossover ...")
        result["crossover"] = crossover(texts, args.workers)
        say("train (one fit per model) ...")
        result["train"], models = train(corpus, words, hashes, args.seed, args.catboost_iterations, args.models,
                                        args.workers)
        if not args.no_pg:
            say("tag (end to end, PostgreSQL) ...")
            result["tag"] = tag(models["tfidf_lr_words"], args.tag_articles, args.seed, args.workers, args.pg,
                                tmp / "data")
    result["peak_rss_mib"] = rss_mib()
    result["load_at_end"] = os.getloadavg()[0]
    say(f"peak RSS {result['peak_rss_mib']:,.0f} MiB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
        say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

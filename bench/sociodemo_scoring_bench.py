"""Socio-demographic scoring benchmark: scoring every user with each model (users/s per model).

Default size is the issue's: 1,000,000 users × 3 days (100,000 videos, 10,000 authors). Steps, each in its own
subprocess, so its peak RSS (``ru_maxrss``) is its own:

1. ``generate``: ``pipelines.sociodemo.generate.write_dataset(SociodemoSpec(...))`` into a temporary data root
   (seed 42). Timed, not part of the measure.
2. ``validate``: ``validate.validate_day`` for every day and ``validate.validate_targets``. Timed, not measured.
3. ``build``: ``history.build_features`` (full) and ``user_sets.build_user_sets`` as of the last day. Timed,
   not measured.
4. ``train``: ``models.train.train_and_evaluate`` for topclass, catboost and deepsets on a labelled sample of
   ``--train-users`` users (split train / valid / test by uid hash), CatBoost ``--catboost-iterations``,
   DeepSets ``--deepsets-budget`` seconds. Timed, not measured.
5. ``score`` (the measure), once per model: ``load_model`` + ``load_dataset`` of the feature table and user
   sets for ALL users + ``predict`` → seconds, users/s; then the promoted-style write path, timed apart: the
   vectorised ``jobs._prediction_rows`` and ``jobs._write_csv`` (the CSV the Postgres COPY reads) for every
   user. No Postgres: the COPY and upsert themselves are not measured.

Data (about 1 GB at the default size, under the system temp directory or ``--tmp``) is removed at the end
unless ``--keep``.

Run (from the repository root)::

    .venv/bin/python bench/sociodemo_scoring_bench.py                         # 1M users
    .venv/bin/python bench/sociodemo_scoring_bench.py --users 200000 --videos 50000 --authors 5000
    .venv/bin/python bench/sociodemo_scoring_bench.py --out bench/out/sociodemo_scoring.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _steps import run_child, run_step  # noqa: E402

START = date(2024, 6, 1)
MODELS = ("topclass", "catboost", "deepsets")


def _inputs(root: Path, as_of: date) -> tuple[Path, Path]:
    from pipelines.sociodemo import schema
    from pipelines.sociodemo.features import load_config
    from pipelines.sociodemo.jobs import SET_MAX_ITEMS

    features = root / schema.features_rel_dir(as_of, load_config().config_hash) / "features.parquet"
    sets = root / schema.user_sets_rel_dir(as_of, SET_MAX_ITEMS, None) / "user_sets.parquet"
    return features, sets


# ----------------------------------------------------------------------------------------------- steps
def step_generate(root: Path, job: dict) -> dict:
    from pipelines.sociodemo.generate import SociodemoSpec, write_dataset

    spec = SociodemoSpec(**{**job["spec"], "start": date.fromisoformat(job["spec"]["start"])})
    return write_dataset(spec, root)


def step_validate(root: Path, job: dict) -> dict:
    from pipelines.sociodemo.validate import validate_day, validate_targets
    from pipelines.storage import DataRoot

    start = date.fromisoformat(job["start"])
    rows_valid = 0
    for i in range(job["days"]):
        rows_valid += validate_day(start + timedelta(days=i), DataRoot(str(root)), max_bad_share=0.05).rows_valid
    targets = validate_targets(DataRoot(str(root)), 0.05, None)
    return {"rows_valid": rows_valid, "targets_valid": targets.rows_valid}


def step_build(root: Path, job: dict) -> dict:
    from pipelines.sociodemo.history import build_features
    from pipelines.sociodemo.jobs import SET_MAX_ITEMS
    from pipelines.sociodemo.user_sets import build_user_sets
    from pipelines.storage import DataRoot

    as_of = date.fromisoformat(job["as_of"])
    t = time.perf_counter()
    built = build_features(as_of, DataRoot(str(root)), mode="full")
    features_s = time.perf_counter() - t
    t = time.perf_counter()
    build_user_sets(as_of, DataRoot(str(root)), SET_MAX_ITEMS)
    return {"users": built.rows, "n_columns": len(built.columns), "features_seconds": features_s,
            "user_sets_seconds": time.perf_counter() - t}


def step_train(root: Path, job: dict) -> dict:
    import numpy as np
    import pandas as pd

    from pipelines.sociodemo.models.train import train_and_evaluate

    features, sets = _inputs(root, date.fromisoformat(job["as_of"]))
    from pipelines.sociodemo.validate import staged_targets_path
    from pipelines.storage import DataRoot

    targets = pd.read_parquet(staged_targets_path(DataRoot(str(root))))
    with_features = pd.read_parquet(features, columns=["viewer_uid"])["viewer_uid"]
    targets = targets[targets["viewer_uid"].isin(with_features)].drop_duplicates("viewer_uid")
    rng = np.random.default_rng(job["seed"])
    sample = targets.iloc[rng.permutation(len(targets))[: job["train_users"]]]
    params = {"catboost": {"iterations": job["catboost_iterations"]},
              "deepsets": {"time_budget_s": job["deepsets_budget"]}}
    result = train_and_evaluate(str(features), str(sets), sample, Path(job["out_dir"]), models=MODELS,
                                params=params, seed=job["seed"])
    return {"n_train": result["n_train"], "n_valid": result["n_valid"], "n_test": result["n_test"],
            "fit_seconds": {m: info["fit"].get("seconds") for m, info in result["models"].items()},
            "table": result["table"]}


def step_score(root: Path, job: dict) -> dict:
    from datetime import UTC, datetime

    from pipelines.sociodemo.jobs import _prediction_rows, _write_csv
    from pipelines.sociodemo.models.base import load_dataset, load_model

    as_of = date.fromisoformat(job["as_of"])
    features, sets = _inputs(root, as_of)
    t0 = time.perf_counter()
    model = load_model(Path(job["model_dir"]))
    t1 = time.perf_counter()
    data = load_dataset(str(features), str(sets))
    t2 = time.perf_counter()
    preds = model.predict(data)
    t3 = time.perf_counter()
    rows = _prediction_rows(preds, {"model_name": job["model"], "model_version": "bench"}, as_of,
                            datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
    t4 = time.perf_counter()
    csv_path = root / f"scores-{job['model']}.csv"
    _write_csv(rows, csv_path)
    t5 = time.perf_counter()
    size = csv_path.stat().st_size
    csv_path.unlink()
    return {"users": len(data), "load_model_seconds": t1 - t0, "load_dataset_seconds": t2 - t1,
            "predict_only_seconds": t3 - t2, "predict_seconds": t3 - t0, "users_per_s": len(data) / (t3 - t0),
            "rows_seconds": t4 - t3, "csv_seconds": t5 - t4, "csv_bytes": size,
            "mean_sex_proba": float(rows["sex_proba"].mean())}


STEPS = {"generate": step_generate, "validate": step_validate, "build": step_build, "train": step_train,
         "score": step_score}


# ----------------------------------------------------------------------------------------------- parent
def _child(step: str, root: Path, job: dict, work: Path, env: dict, label: str | None = None) -> dict:
    return run_child(__file__, step, root, job, work, env, label)


def _run_step(args: argparse.Namespace) -> int:
    return run_step(STEPS, args)


def _report(r: dict) -> str:
    steps = r["steps"]
    lines = [f"users with features {steps['build']['users']:,} ({steps['build']['n_columns']} columns); "
             f"events {steps['validate']['rows_valid']:,}",
             "not measured: " + ", ".join(f"{k} {steps[k]['seconds']:.1f} s" for k in ("generate", "validate",
                                                                                         "build", "train")),
             f"trained on {steps['train']['n_train']:,} users (valid {steps['train']['n_valid']:,}, "
             f"test {steps['train']['n_test']:,})",
             "",
             f"{'model':<10} {'users':>10} {'predict s':>10} {'users/s':>10} {'load data s':>12} "
             f"{'rows+csv s':>11} {'peak RSS MiB':>13}"]
    for name in MODELS:
        s = steps[f"score_{name}"]
        lines.append(f"{name:<10} {s['users']:>10,} {s['predict_seconds']:>10.1f} {s['users_per_s']:>10,.0f} "
                     f"{s['load_dataset_seconds']:>12.1f} {s['rows_seconds'] + s['csv_seconds']:>11.1f} "
                     f"{s['peak_rss_mib']:>13,.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--authors", type=int, default=10_000)
    parser.add_argument("--train-users", type=int, default=50_000, help="labelled users sampled for training")
    parser.add_argument("--catboost-iterations", type=int, default=300)
    parser.add_argument("--deepsets-budget", type=float, default=120.0, help="DeepSets training budget, seconds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tmp", type=Path, help="parent directory for the data (default: the system temp dir)")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and models")
    parser.add_argument("--_step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--_root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._step:
        return _run_step(args)

    last = START + timedelta(days=args.days - 1)
    work = Path(tempfile.mkdtemp(prefix="sociodemo-scoring-bench-", dir=args.tmp))
    root = work / "data"
    root.mkdir()
    models_dir = work / "models"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINES_")}
    env.update(PIPELINES_HOME=str(work / "home"), PIPELINES_DATA_ROOT=str(root), PYTHONUNBUFFERED="1")
    spec = {"seed": args.seed, "n_users": args.users, "n_videos": args.videos, "n_authors": args.authors,
            "start": START.isoformat(), "days": args.days}
    print(f"sociodemo scoring bench: {args.users:,} users x {args.days} days, {args.videos:,} videos, "
          f"{args.authors:,} authors; data under {work}", flush=True)
    steps: dict[str, dict] = {}
    try:
        steps["generate"] = _child("generate", root, {"spec": spec}, work, env)
        steps["validate"] = _child("validate", root, {"start": START.isoformat(), "days": args.days}, work, env)
        steps["build"] = _child("build", root, {"as_of": last.isoformat()}, work, env)
        steps["train"] = _child("train", root, {"as_of": last.isoformat(), "train_users": args.train_users,
                                                "catboost_iterations": args.catboost_iterations,
                                                "deepsets_budget": args.deepsets_budget, "seed": args.seed,
                                                "out_dir": str(models_dir)}, work, env)
        for name in MODELS:
            steps[f"score_{name}"] = _child("score", root, {"as_of": last.isoformat(), "model": name,
                                                            "model_dir": str(models_dir / name)},
                                            work, env, f"score_{name}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    report = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")},
        "spec": spec, "as_of": last.isoformat(), "nproc": os.cpu_count(), "steps": steps,
    }
    print("\n" + _report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Socio-demographic history benchmark: the user-feature build over 30 days of viewing events.

Default size is the issue's: 1,000,000 users × 30 days × 1.67 events per user per day ≈ 50M events
(200,000 videos, 20,000 authors). Steps, each in its own subprocess, so its peak RSS (``ru_maxrss``) is its own:

1. ``generate``: ``pipelines.sociodemo.generate.write_dataset(SociodemoSpec(...))`` into a temporary data root
   (seed 42, 0.1% planted bad rows). Timed, but not part of the measure.
2. ``validate``: ``validate.validate_day`` for every day, in order (stages the clean events).
3. ``full``: ``history.build_features(as_of=last day, mode="full")``: every day's state partitions and the
   all-time state recomputed from the staged events, then the feature table → seconds and events/s.
4. ``floor``: one hand-written DuckDB ``GROUP BY viewer_uid`` over the same staged files computing the same
   features as the shipped config (counts, sums, means, distinct counts, category / device / region / hour /
   day-part shares, all-time and 7-day, recency), written to Parquet, with the builder's 2 GB memory limit.
   ``full/floor`` is our full rebuild against it (aim ≤ 2×).
5. ``incremental``: first the state is put where it is the morning the last day arrives (not timed):
   ``build_features(as_of=previous day, mode="incremental")`` (reuses the per-day partitions, rebuilds the
   all-time state as of the previous day), then every state partition of the last day is deleted. Then
   ``build_features(as_of=last day, mode="incremental")`` is timed: it aggregates the one new day and folds
   it into the all-time state → ``incremental/full`` share (aim < 10%).
6. ``compare``: the incremental output against the full output, row for row (``EXCEPT ALL`` both ways).
   Exit status 1 unless 0 rows differ.

Peak RSS per step is reported against the aim of < 4 GB. Data (about 3 GB at the default size, under the
system temp directory or ``--tmp``) is removed at the end unless ``--keep``.

Run (from the repository root)::

    .venv/bin/python bench/sociodemo_history_bench.py                          # ~50M events, 20-25 min on 2 cores
    .venv/bin/python bench/sociodemo_history_bench.py --users 200000 --videos 50000 --authors 5000   # ~10M, ~3 min
    .venv/bin/python bench/sociodemo_history_bench.py --out bench/out/sociodemo_history.json
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
MEMORY_LIMIT = "2GB"  # the builder's default (pipelines.sociodemo.duck.MEMORY_LIMIT)
AIM_FULL_FLOOR = 2.0
AIM_INCREMENTAL_SHARE = 0.10
AIM_PEAK_RSS_MIB = 4096


def _staged_glob(root: Path) -> str:
    return f"{root}/sociodemo/staged/dt=*/run=*/events.parquet"  # each day validated once in the bench


# ----------------------------------------------------------------------------------------------- steps
def step_generate(root: Path, job: dict) -> dict:
    from pipelines.sociodemo.generate import SociodemoSpec, write_dataset

    spec = SociodemoSpec(**{**job["spec"], "start": date.fromisoformat(job["spec"]["start"])})
    return write_dataset(spec, root)


def step_validate(root: Path, job: dict) -> dict:
    from pipelines.sociodemo.validate import validate_day
    from pipelines.storage import DataRoot

    start = date.fromisoformat(job["start"])
    totals = {"rows_read": 0, "rows_valid": 0, "rows_quarantined": 0}
    for i in range(job["days"]):
        result = validate_day(start + timedelta(days=i), DataRoot(str(root)), max_bad_share=0.05).as_dict()
        for key in totals:
            totals[key] += result[key]
    return totals


def step_build(root: Path, job: dict) -> dict:
    from pipelines.sociodemo.history import build_features
    from pipelines.storage import DataRoot

    result = build_features(date.fromisoformat(job["as_of"]), DataRoot(str(root)), mode=job["mode"])
    out = {k: v for k, v in result.as_dict().items() if k != "columns"}
    out["n_columns"] = len(result.columns)
    out["build_seconds"] = result.seconds
    if job.get("copy_to"):
        shutil.copyfile(result.uri, job["copy_to"])  # a local data root: the URI is the path
    return out


def floor_sql(root: Path, as_of: str, dest: Path) -> tuple[str, int]:
    """The floor: one GROUP BY over every staged file, the same features as the shipped config."""
    from pipelines.sociodemo.generate import CATEGORIES, PROFILES, REGIONS

    w7 = f"event_date > DATE '{as_of}' - 7"
    cats = [c[0] for c in CATEGORIES]
    aggs = ["count(*) AS events_all", f"count(*) FILTER (WHERE {w7}) AS events_7d",
            "sum(total_watchtime) AS watchtime_all", f"sum(total_watchtime) FILTER (WHERE {w7}) AS watchtime_7d",
            "avg(total_watchtime) AS watchtime_mean_all", "avg(watch_fraction) AS watch_fraction_mean_all",
            "count(DISTINCT rutube_video_id) AS videos_all",
            f"count(DISTINCT rutube_video_id) FILTER (WHERE {w7}) AS videos_7d",
            "count(DISTINCT author_id) AS authors_all"]
    aggs += [f"sum(total_watchtime) FILTER (WHERE category = '{c}') / sum(total_watchtime) AS cws{i}"
             for i, c in enumerate(cats)]
    aggs += [f"count(*) FILTER (WHERE category = '{c}') / count(*) AS ces{i}" for i, c in enumerate(cats)]
    aggs += [f"count(*) FILTER (WHERE category = '{c}' AND {w7}) / count(*) FILTER (WHERE {w7}) AS ces7_{i}"
             for i, c in enumerate(cats)]
    for col, values in (("ua_device_type", sorted({p[0] for p in PROFILES})),
                        ("ua_client_type", sorted({p[1] for p in PROFILES})),
                        ("ua_os", sorted({p[2] for p in PROFILES})),
                        ("ua_client_name", sorted({p[3] for p in PROFILES})),
                        ("region", [r[0] for r in REGIONS])):
        aggs += [f"count(*) FILTER (WHERE {col} = '{v}') / count(*) AS {col}_{i}" for i, v in enumerate(values)]
    aggs += [f"count(*) FILTER (WHERE hour(event_timestamp) = {h}) / count(*) AS h{h}" for h in range(24)]
    parts = [(0, 6), (6, 10), (10, 14), (14, 18), (18, 22), (22, 24)]
    local_hour = "(hour(event_timestamp) + 3) % 24"
    aggs += [f"count(*) FILTER (WHERE {local_hour} BETWEEN {a} AND {b - 1}) / count(*) AS dp{a}" for a, b in parts]
    aggs += [f"count(*) FILTER (WHERE {local_hour} BETWEEN {a} AND {b - 1} AND {w7}) "
             f"/ count(*) FILTER (WHERE {w7}) AS dp7_{a}" for a, b in parts]
    aggs += [f"DATE '{as_of}' - CAST(max(event_timestamp) AS DATE) AS days_since_last",
             f"DATE '{as_of}' - CAST(min(event_timestamp) AS DATE) AS days_since_first"]
    query = f"""COPY (SELECT viewer_uid, {', '.join(aggs)}
            FROM read_parquet('{_staged_glob(root)}', hive_partitioning = false)
            WHERE event_date <= DATE '{as_of}'
            GROUP BY viewer_uid) TO '{dest}' (FORMAT parquet)"""
    return query, len(aggs)


def step_floor(root: Path, job: dict) -> dict:
    import duckdb

    dest = root / "floor.parquet"
    query, n_aggs = floor_sql(root, job["as_of"], dest)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = '{root}/floor-spill'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    t = time.perf_counter()
    con.execute(query)
    seconds = time.perf_counter() - t
    rows = con.execute(f"SELECT count(*) FROM '{dest}'").fetchone()[0]
    events = con.execute(f"SELECT count(*) FROM read_parquet('{_staged_glob(root)}', hive_partitioning = false) "
                         f"WHERE event_date <= DATE '{job['as_of']}'").fetchone()[0]
    return {"floor_seconds": seconds, "rows": rows, "aggregates": n_aggs, "events": events,
            "duckdb": duckdb.__version__}


def step_drop_day_state(root: Path, job: dict) -> dict:
    """Delete every state partition of one day (daily, pairs_*, cumulative), as if that day had not arrived."""
    found = (root / "sociodemo" / "state").glob(f"*/version=*/dt={job['day']}")
    removed = sorted(str(p.relative_to(root)) for p in found)
    for rel in removed:
        shutil.rmtree(root / rel)
    return {"removed": removed}


def step_compare(root: Path, job: dict) -> dict:
    import duckdb

    a, b = job["a"], job["b"]
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = '{root}/compare-spill'")
    ra = f"read_parquet('{a}', hive_partitioning = false)"
    rb = f"read_parquet('{b}', hive_partitioning = false)"
    differing = con.execute(f"""SELECT count(*) FROM (
        (SELECT * FROM {ra} EXCEPT ALL SELECT * FROM {rb})
        UNION ALL
        (SELECT * FROM {rb} EXCEPT ALL SELECT * FROM {ra}))""").fetchone()[0]
    rows = [con.execute(f"SELECT count(*) FROM {r}").fetchone()[0] for r in (ra, rb)]
    return {"differing_rows": differing, "rows_incremental": rows[0], "rows_full": rows[1]}


STEPS = {"generate": step_generate, "validate": step_validate, "build": step_build, "floor": step_floor,
         "drop_day_state": step_drop_day_state, "compare": step_compare}


# ----------------------------------------------------------------------------------------------- parent
def _child(step: str, root: Path, job: dict, work: Path, env: dict, label: str | None = None) -> dict:
    return run_child(__file__, step, root, job, work, env, label)


def _run_step(args: argparse.Namespace) -> int:
    return run_step(STEPS, args)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _report(r: dict) -> str:
    steps = r["steps"]
    lines = [
        f"events (staged, valid)             {r['events']:>14,}",
        f"users with features                {steps['full']['rows']:>14,}  ({steps['full']['n_columns']} columns)",
        f"generation s (not measured)        {steps['generate']['seconds']:>14.1f}",
        f"validate s ({r['days']} x validate_day)     {steps['validate']['seconds']:>14.1f}",
        f"full rebuild s                     {steps['full']['build_seconds']:>14.1f}  "
        + ", ".join(f"{k} {v:.1f}" for k, v in steps["full"]["phase_seconds"].items()),
        f"full rebuild events/s              {r['full_events_per_s']:>14,.0f}",
        f"floor (one GROUP BY) s             {steps['floor']['floor_seconds']:>14.1f}  "
        f"({steps['floor']['aggregates']} aggregates, {steps['floor']['rows']:,} rows)",
        f"full / floor                       {r['full_over_floor']:>13.2f}x  (aim <= {AIM_FULL_FLOOR:.0f}x)",
        f"prepare previous day s (untimed)   {steps['prepare_previous']['build_seconds']:>14.1f}  "
        f"(cumulative {steps['prepare_previous']['cumulative']})",
        f"incremental last day s             {steps['incremental']['build_seconds']:>14.1f}  "
        + ", ".join(f"{k} {v:.1f}" for k, v in steps["incremental"]["phase_seconds"].items())
        + f"; aggregated {len(steps['incremental']['aggregated_days'])} day(s), cumulative "
        + steps["incremental"]["cumulative"],
        f"incremental / full                 {r['incremental_share']:>14.1%}  (aim < {AIM_INCREMENTAL_SHARE:.0%})",
        f"incremental vs full differing rows {steps['compare']['differing_rows']:>14,}  (must be 0)",
        "peak RSS MiB per step              "
        + ", ".join(f"{k} {v['peak_rss_mib']:,.0f}" for k, v in steps.items() if k != "drop_day_state"),
        f"peak RSS of measured steps MiB     {r['peak_rss_measured_mib']:>14,.0f}  (aim < {AIM_PEAK_RSS_MIB:,})",
        "disk MiB                           " + ", ".join(f"{k} {v / 2**20:,.0f}" for k, v in r["disk_bytes"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--videos", type=int, default=200_000)
    parser.add_argument("--authors", type=int, default=20_000)
    parser.add_argument("--events-per-user-per-day", type=float, default=1.67)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tmp", type=Path, help="parent directory for the data (default: the system temp dir)")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and state")
    parser.add_argument("--_step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--_root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._step:
        return _run_step(args)
    if args.days < 2:
        parser.error("--days must be at least 2 (the incremental step updates the last day)")

    last = START + timedelta(days=args.days - 1)
    prev = last - timedelta(days=1)
    work = Path(tempfile.mkdtemp(prefix="sociodemo-bench-", dir=args.tmp))
    root = work / "data"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINES_")}
    env.update(PIPELINES_HOME=str(work / "home"), PIPELINES_DATA_ROOT=str(root), PYTHONUNBUFFERED="1")
    spec = {"seed": args.seed, "n_users": args.users, "n_videos": args.videos, "n_authors": args.authors,
            "start": START.isoformat(), "days": args.days, "events_per_user_per_day": args.events_per_user_per_day,
            "bad_row_rate": 0.001}
    print(f"sociodemo history bench: {args.users:,} users x {args.days} days x {args.events_per_user_per_day} "
          f"events/user/day, {args.videos:,} videos, {args.authors:,} authors; data under {work}", flush=True)
    steps: dict[str, dict] = {}
    try:
        steps["generate"] = _child("generate", root, {"spec": spec}, work, env)
        steps["validate"] = _child("validate", root, {"start": START.isoformat(), "days": args.days}, work, env)
        full_copy, inc_copy = work / "full.parquet", work / "incremental.parquet"
        steps["full"] = _child("build", root, {"as_of": last.isoformat(), "mode": "full",
                                               "copy_to": str(full_copy)}, work, env, "full")
        steps["floor"] = _child("floor", root, {"as_of": last.isoformat()}, work, env)
        steps["prepare_previous"] = _child("build", root, {"as_of": prev.isoformat(), "mode": "incremental"},
                                           work, env, "prepare_previous")
        steps["drop_day_state"] = _child("drop_day_state", root, {"day": last.isoformat()}, work, env)
        steps["incremental"] = _child("build", root, {"as_of": last.isoformat(), "mode": "incremental",
                                                      "copy_to": str(inc_copy)}, work, env, "incremental")
        steps["compare"] = _child("compare", root, {"a": str(inc_copy), "b": str(full_copy)}, work, env)
        sociodemo = root / "sociodemo"
        disk = {"raw": _du(sociodemo / "raw"), "staged": _du(sociodemo / "staged"), "state": _du(sociodemo / "state")}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    events = steps["validate"]["rows_valid"]
    full_s = steps["full"]["build_seconds"]
    measured = ("validate", "full", "floor", "incremental")
    report = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")},
        "spec": spec, "as_of": last.isoformat(), "previous": prev.isoformat(), "days": args.days, "events": events,
        "nproc": os.cpu_count(), "steps": steps, "disk_bytes": disk,
        "full_events_per_s": events / full_s,
        "full_over_floor": full_s / steps["floor"]["floor_seconds"],
        "incremental_share": steps["incremental"]["build_seconds"] / full_s,
        "peak_rss_measured_mib": max(steps[k]["peak_rss_mib"] for k in measured),
    }
    print("\n" + _report(report))
    failed = steps["compare"]["differing_rows"] != 0 or steps["compare"]["rows_incremental"] != steps["compare"][
        "rows_full"]
    if failed:
        print(f"ERROR: the incremental output differs from the full output in "
              f"{steps['compare']['differing_rows']:,} rows", flush=True)
    aims = [("full/floor", report["full_over_floor"] <= AIM_FULL_FLOOR),
            ("incremental/full", report["incremental_share"] < AIM_INCREMENTAL_SHARE),
            ("peak RSS", report["peak_rss_measured_mib"] < AIM_PEAK_RSS_MIB)]
    print("aims: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in aims))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

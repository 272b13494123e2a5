"""Retention pipeline benchmark: the daily pipeline and the cohort computation at 1M and 10M events.

For each target size (``--events``, default 1,000,000 and 10,000,000) it

1. generates a 60-day ``piwik_track`` log of about that many events (``RetentionDataSpec`` scaled from a
   calibration run; must land within ±15% of the target) into a temporary data root. Generation time is
   reported, but is not part of the measured pipeline;
2. runs the daily pipeline over every day, in order, exactly as ``jobs.run_range`` / ``jobs.run_day`` do
   (``jobs.validate`` → ``jobs.load`` → ``jobs.cohorts`` → ``jobs.daily_analytics``), each step timed
   separately, against a scratch PostgreSQL database → pipeline seconds, events/s and a per-stage split
   (``load`` is further split into the DuckDB Parquet→CSV conversion, the ``piwik_track`` COPY and the rest);
3. against the same loaded ``piwik_track``: (a) our cohort computation over ALL cohort dates,
   ``analytics.refresh_cohorts(all_dates)``, and (b) the floor: one hand-written ``SELECT`` over
   ``piwik_track`` giving, per install date, the cohort size and the users active in D+1..D+7 (fetchall).
   One warm-up each, then 3 runs each (interleaved), medians reported. Before (a)/(b) the tables are
   ``VACUUM (ANALYZE)``-ed so autovacuum does not land in the middle of a timing;
4. checks that (a) and (b) agree on every cohort size, and on retained-7d users wherever the 7-day window
   is fully loaded (exit status 1 if not);
5. reports the peak RSS of the Python process that ran the pipeline (``ru_maxrss``; each size's pipeline runs
   in a fresh subprocess, so the peak is per size; DuckDB runs in that process, PostgreSQL's backends do
   not count) and ``pg_database_size`` of the scratch database after loading.

Ratios printed:

* ``cohorts/floor`` = (a) / (b): our all-cohort refresh against the single-query floor, same answer needed;
  (a) additionally computes d1/d7/d30 and the loaded-days bookkeeping, and writes its rows.
* ``pipeline/floor`` = whole daily pipeline / (b): context only, not like-for-like. The pipeline also
  validates and quarantines rows, stages Parquet, loads Postgres, maintains the derived tables, and computes
  the daily analytics.

PostgreSQL: ``--pg`` (default ``$PIPELINES_BENCH_PG`` or ``postgresql://postgres@127.0.0.1:5432/postgres``);
a scratch database ``ubm_bench_<pid>_<size>`` is created and dropped for each size. If that server is
unreachable, the embedded server (``pipelines.services.ensure_embedded_postgres``) is started under a
temporary ``PIPELINES_HOME`` and stopped at the end.

Run (from the repository root)::

    .venv/bin/python bench/retention_bench.py                       # 1M and 10M events (also: make bench)
    .venv/bin/python bench/retention_bench.py --events 1000000 --out /tmp/retention_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DAYS = 60
START = date(2017, 3, 1)
SEED = 42
TOLERANCE = 0.15
# Calibration spec (the generator's default shape: existing users = 12.5 x installs per day).
CAL_INSTALLS, CAL_EXISTING = 120, 1500
REPEATS = 3
_TQDM_INTERVAL = 0.1 if sys.stderr.isatty() else 5.0  # fewer progress lines when logging to a file

#: The floor: one query over the raw log. Install date = UTC day of the user's earliest FIRST_INSTALL;
#: retained = any event on D+1 .. D+7 (whole UTC days; ``event_date`` is the UTC day of ``time``).
FLOOR_SQL = """
WITH installs AS MATERIALIZED (
    SELECT uid, CAST(min(time) AT TIME ZONE 'UTC' AS date) AS install_date
    FROM piwik_track
    WHERE event_name = 'FIRST_INSTALL'
    GROUP BY uid
), retained AS (
    SELECT DISTINCT p.uid
    FROM piwik_track p
    JOIN installs i USING (uid)
    WHERE p.event_date BETWEEN i.install_date + 1 AND i.install_date + 7
)
SELECT i.install_date, count(*) AS cohort_size, count(r.uid) AS retained_7d_users
FROM installs i
LEFT JOIN retained r USING (uid)
GROUP BY i.install_date
ORDER BY i.install_date
"""


# ----------------------------------------------------------------------------------------------- helpers
def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _admin(dsn: str, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _reachable(dsn: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def _spec_kwargs(target: int, events_per_install: float) -> dict:
    installs = max(1, round(target / events_per_install))
    return {"start": START.isoformat(), "days": DAYS, "installs_per_day": installs,
            "existing_users": round(installs * CAL_EXISTING / CAL_INSTALLS), "seed": SEED,
            "bad_row_rate": 0.0}


def _spec(kwargs: dict):
    from pipelines.retention.generate import RetentionDataSpec

    return RetentionDataSpec(**{**kwargs, "start": date.fromisoformat(kwargs["start"])})


def _timed(module, name: str, acc: dict, key: str, when=None) -> None:
    """Wrap ``module.name`` so its wall time is added to ``acc[key]`` (only calls where ``when(args)``)."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        if when is not None and not when(args):
            return original(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)


# ----------------------------------------------------------------------------------------------- children
def child_calibrate(_: dict) -> dict:
    """Events per unit of installs_per_day for the 60-day shape (generated in memory, not written)."""
    from pipelines.retention.generate import RetentionDataSpec, generate_day

    spec = RetentionDataSpec(start=START, days=DAYS, installs_per_day=CAL_INSTALLS,
                             existing_users=CAL_EXISTING, seed=SEED)
    events = sum(generate_day(spec, d)[0].num_rows for d in spec.dates())
    return {"events": events, "events_per_install": events / CAL_INSTALLS}


def child_generate(job: dict) -> dict:
    from tqdm import tqdm

    from pipelines.retention.generate import write_days

    spec = _spec(job["spec"])
    root = Path(job["data_root"])
    t0 = time.perf_counter()
    events = 0
    for day in tqdm(spec.dates(), desc=f"generate {job['target']:,}", unit="day", file=sys.stderr,
                    mininterval=_TQDM_INTERVAL):
        events += write_days(spec, root, [day])["events"]
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (root / "raw").rglob("*.csv"))
    return {"events": events, "seconds": seconds, "csv_bytes": size}


def _stage_loop(days: list[date], stages: dict, per_day: dict) -> None:
    """What ``jobs.run_range`` does (``run_day`` per day, in order), with each step timed."""
    from tqdm import tqdm

    from pipelines.retention import jobs

    for day in tqdm(days, desc="pipeline", unit="day", file=sys.stderr, mininterval=_TQDM_INTERVAL):
        t0 = time.perf_counter()
        jobs.validate(day)
        t1 = time.perf_counter()
        loaded = jobs.load(day)
        t2 = time.perf_counter()
        affected = loaded["affected_install_dates"]
        jobs.cohorts(day, affected)
        t3 = time.perf_counter()
        jobs.daily_analytics(day, affected)
        t4 = time.perf_counter()
        for key, seconds in (("validate", t1 - t0), ("load", t2 - t1), ("cohorts", t3 - t2),
                             ("daily_analytics", t4 - t3), ("total", t4 - t0)):
            stages[key] = stages.get(key, 0.0) + seconds
            per_day.setdefault(key, []).append(round(seconds, 4))


def child_pipeline(job: dict) -> dict:
    import psycopg2

    from pipelines import db
    from pipelines import ingest as contract
    from pipelines.migrate import ensure_schema
    from pipelines.retention import analytics, ingest
    from pipelines.settings import get_settings, pg_dsn

    get_settings.cache_clear()
    spec = _spec(job["spec"])
    dsn = pg_dsn()
    out: dict = {"dsn_db": urlsplit(dsn).path.lstrip("/")}

    t0 = time.perf_counter()
    ensure_schema(dsn)  # migrations: once per process, kept out of the pipeline figure
    out["migrate_s"] = time.perf_counter() - t0

    # Sub-timers inside the steps (wrappers in this process only; the pipeline code is unchanged).
    sub: dict = {}
    _timed(ingest, "validate_day", sub, "validate.duckdb")
    _timed(ingest, "_parquet_as_csv", sub, "load.events_parquet_to_csv",
           when=lambda a: a[0].name == "events.parquet")
    _timed(db, "copy_csv", sub, "load.copy_piwik_track", when=lambda a: a[1] == "piwik_track")
    _timed(contract, "replace_quarantine", sub, "validate.quarantine_to_pg")

    stages: dict = {}
    per_day: dict = {}
    rss_before = _peak_rss_mib()
    t0 = time.perf_counter()
    _stage_loop(spec.dates(), stages, per_day)
    out["pipeline_s"] = time.perf_counter() - t0
    out["peak_rss_mib"] = _peak_rss_mib()
    out["rss_before_pipeline_mib"] = rss_before
    stages.pop("total")
    out["stages_s"] = stages
    out["sub_s"] = sub
    # Does a day get dearer as the tables grow? Median seconds per day over the first and the last 10 days.
    out["per_day_s"] = {k: {"first10_median": statistics.median(v[:10]),
                            "last10_median": statistics.median(v[-10:]), "max": max(v)}
                        for k, v in per_day.items()}
    out["per_day_series_s"] = per_day

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    settings = ("server_version", "autovacuum", "work_mem", "shared_buffers", "jit",
                "max_parallel_workers_per_gather")
    for name in settings:
        cur.execute(f"SHOW {name}")
        out.setdefault("pg_settings", {})[name] = cur.fetchone()[0]
    import duckdb

    out["versions"] = {"python": sys.version.split()[0], "duckdb": duckdb.__version__,
                       "postgres": out["pg_settings"]["server_version"]}
    cur.execute("SELECT pg_database_size(current_database())")
    out["db_bytes"] = cur.fetchone()[0]
    cur.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname = ANY(%s)",
                (["piwik_track", "user_activity_day", "user_install", "quarantine", "cohort_retention"],))
    out["table_bytes"] = dict(cur.fetchall())
    cur.execute("SELECT count(*) FROM piwik_track")
    out["rows_loaded"] = cur.fetchone()[0]
    cur.execute("SELECT min(day), max(day), count(*) FILTER (WHERE status = 'loaded') "
                "FROM retention_day_loads")
    first_loaded, last_loaded, n_loaded = cur.fetchone()

    t0 = time.perf_counter()
    cur.execute("VACUUM (ANALYZE) piwik_track, user_activity_day, user_install, cohort_retention, "
                "retention_day_loads")
    out["vacuum_analyze_s"] = time.perf_counter() - t0

    cur.execute("SELECT DISTINCT install_date FROM user_install ORDER BY 1")
    all_dates = [r[0] for r in cur.fetchall()]
    out["cohorts"] = len(all_dates)

    def ours() -> float:
        t = time.perf_counter()
        analytics.refresh_cohorts(all_dates, dsn)
        return time.perf_counter() - t

    floor_rows: list = []

    def floor() -> float:
        t = time.perf_counter()
        cur.execute(FLOOR_SQL)
        rows = cur.fetchall()
        elapsed = time.perf_counter() - t
        floor_rows[:] = rows
        return elapsed

    out["warmup_s"] = {"cohorts": ours(), "floor": floor()}
    times_ours, times_floor = [], []
    for _ in range(REPEATS):
        times_ours.append(ours())
        times_floor.append(floor())
    out["cohorts_runs_s"], out["floor_runs_s"] = times_ours, times_floor
    out["cohorts_s"], out["floor_s"] = statistics.median(times_ours), statistics.median(times_floor)
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + FLOOR_SQL)
    out["floor_plan"] = [r[0] for r in cur.fetchall()]

    # Agreement: sizes for every cohort, retained-7d wherever D+1..D+7 are all loaded.
    cur.execute("SELECT install_date, cohort_size, retained_7d_users FROM cohort_retention ORDER BY 1")
    ours_rows = {d: (size, r7) for d, size, r7 in cur.fetchall()}
    floor_map = {d: (size, r7) for d, size, r7 in floor_rows}
    mismatches = []
    full_window = 0
    for d in sorted(set(ours_rows) | set(floor_map)):
        o, f = ours_rows.get(d), floor_map.get(d)
        if o is None or f is None or o[0] != f[0]:
            mismatches.append({"install_date": str(d), "ours": o, "floor": f, "what": "cohort_size"})
            continue
        all_days_loaded = n_loaded == (last_loaded - first_loaded).days + 1
        window_loaded = all_days_loaded and d + timedelta(days=7) <= last_loaded
        if window_loaded:
            full_window += 1
            if o[1] != f[1]:
                mismatches.append({"install_date": str(d), "ours": o, "floor": f, "what": "retained_7d"})
        elif o[1] is not None:
            mismatches.append({"install_date": str(d), "ours": o, "floor": f,
                               "what": "retained_7d should be NULL (window not loaded)"})
    out["agreement"] = {"cohorts_compared": len(floor_map), "full_7d_windows": full_window,
                        "mismatches": mismatches[:20], "n_mismatches": len(mismatches)}
    conn.close()
    return out


CHILDREN = {"calibrate": child_calibrate, "generate": child_generate, "pipeline": child_pipeline}


# ----------------------------------------------------------------------------------------------- parent
def _run_child(kind: str, job: dict, env: dict, workdir: Path) -> dict:
    result = workdir / f"{kind}.result.json"
    job_file = workdir / f"{kind}.job.json"
    job_file.write_text(json.dumps(job))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", kind, "--_job", str(job_file),
           "--_result", str(result)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} child failed with exit status {proc.returncode}")
    return json.loads(result.read_text())


def _base_env(home: Path, data_root: Path, dsn: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINES_", "AIRFLOW_CONN_"))}
    env.update(PIPELINES_HOME=str(home), PIPELINES_DATA_ROOT=str(data_root), PYTHONUNBUFFERED="1")
    if dsn:
        env["PIPELINES_PG_DSN"] = dsn
    return env


def _fmt_table(results: list[dict]) -> str:
    rows = [
        ("events (generated)", lambda r: f"{r['events']:,}"),
        ("events vs target", lambda r: f"{r['events'] / r['target'] - 1:+.1%}"),
        ("generation s (not in pipeline)", lambda r: f"{r['generate_s']:.1f}"),
        ("pipeline s (60 x run_day)", lambda r: f"{r['pipeline_s']:.1f}"),
        ("pipeline events/s", lambda r: f"{r['events_per_s']:,.0f}"),
        ("  validate s", lambda r: f"{r['stages_s']['validate']:.1f}"),
        ("  load s", lambda r: f"{r['stages_s']['load']:.1f}"),
        ("  cohorts s", lambda r: f"{r['stages_s']['cohorts']:.1f}"),
        ("  daily_analytics s", lambda r: f"{r['stages_s']['daily_analytics']:.1f}"),
        ("(a) refresh_cohorts(all) s, median", lambda r: f"{r['cohorts_s']:.3f}"),
        ("(b) floor query s, median", lambda r: f"{r['floor_s']:.3f}"),
        ("(a)/(b) cohorts/floor", lambda r: f"{r['cohorts_s'] / r['floor_s']:.2f}x"),
        ("pipeline/floor (context only)", lambda r: f"{r['pipeline_s'] / r['floor_s']:.0f}x"),
        ("agreement (a) vs (b)", lambda r: "ok" if r["agreement"]["n_mismatches"] == 0
            else f"{r['agreement']['n_mismatches']} MISMATCH"),
        ("peak RSS MiB (pipeline process)", lambda r: f"{r['peak_rss_mib']:.0f}"),
        ("pg_database_size MiB", lambda r: f"{r['db_bytes'] / 2**20:.0f}"),
    ]
    width = max(len(label) for label, _ in rows)
    header = f"{'':<{width}}  " + "  ".join(f"{r['target']:>14,}" for r in results)
    lines = [header, "-" * len(header)]
    for label, fn in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{fn(r):>14}" for r in results))
    return "\n".join(lines)


def _source_digest() -> str:
    """Short hash of the pipeline code measured (the retention package, db and registry)."""
    import hashlib

    files = [*sorted((REPO / "pipelines" / "retention").glob("*.py")),
             REPO / "pipelines" / "db.py", REPO / "pipelines" / "registry.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _events_arg(text: str) -> int:
    return int(float(text.replace("_", "")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", nargs="+", type=_events_arg, default=[1_000_000, 10_000_000],
                        help="target event counts (default: 1000000 10000000)")
    parser.add_argument("--out", type=Path, help="write all figures as JSON here")
    parser.add_argument("--pg", default=os.environ.get("PIPELINES_BENCH_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="maintenance DSN of the PostgreSQL server to create scratch databases on")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases and data roots")
    parser.add_argument("--_child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--_job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        job = json.loads(args._job.read_text())
        args._result.write_text(json.dumps(CHILDREN[args._child](job), default=str))
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="retention-bench-"))
    embedded_home: Path | None = None
    admin_dsn: str | None = args.pg
    results: list[dict] = []
    failed = False
    try:
        if not _reachable(admin_dsn):
            print(f"PostgreSQL at {admin_dsn} unreachable: starting the embedded server", flush=True)
            embedded_home = scratch / "embedded-home"
            os.environ["PIPELINES_HOME"] = str(embedded_home)
            os.environ.pop("PIPELINES_PG_DSN", None)
            from pipelines.services import ensure_embedded_postgres
            from pipelines.settings import get_settings

            get_settings.cache_clear()
            admin_dsn = ensure_embedded_postgres()

        print(f"pipelines source digest {_source_digest()}", flush=True)
        cal = _run_child("calibrate", {}, _base_env(scratch / "home", scratch / "data", None), scratch)
        print(f"calibration: {cal['events']:,} events at installs_per_day={CAL_INSTALLS}, "
              f"existing_users={CAL_EXISTING} over {DAYS} days", flush=True)

        for target in args.events:
            work = scratch / f"n{target}"
            work.mkdir()
            data_root, home = work / "data", work / "home"
            spec = _spec_kwargs(target, cal["events_per_install"])
            dbname = f"ubm_bench_{os.getpid()}_{target}"
            dsn = _with_dbname(admin_dsn, dbname)
            env = _base_env(home, data_root, dsn)
            print(f"\n=== target {target:,} events: installs_per_day={spec['installs_per_day']}, "
                  f"existing_users={spec['existing_users']}, days={DAYS}; database {dbname}", flush=True)

            gen_job = {"spec": spec, "data_root": str(data_root), "target": target}
            gen = _run_child("generate", gen_job, env, work)
            off = gen["events"] / target - 1
            print(f"generated {gen['events']:,} events ({off:+.1%} vs target) in {gen['seconds']:.1f} s, "
                  f"{gen['csv_bytes'] / 2**20:.0f} MiB of CSV", flush=True)
            if abs(off) > TOLERANCE:
                print(f"ERROR: {gen['events']:,} events is outside ±{TOLERANCE:.0%} of {target:,}",
                      flush=True)
                failed = True

            _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            _admin(admin_dsn, f'CREATE DATABASE "{dbname}"')
            try:
                pipe = _run_child("pipeline", {"spec": spec}, env, work)
            finally:
                if not args.keep:
                    _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)

            row = {"target": target, "spec": spec, "events": gen["events"], "generate_s": gen["seconds"],
                   "csv_bytes": gen["csv_bytes"], **pipe, "events_per_s": gen["events"] / pipe["pipeline_s"]}
            results.append(row)
            agree = row["agreement"]
            print(f"pipeline {row['pipeline_s']:.1f} s ({row['events_per_s']:,.0f} events/s); stages "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in row["stages_s"].items())
                  + "; inside: " + ", ".join(f"{k} {v:.1f} s" for k, v in row["sub_s"].items()), flush=True)
            runs_a = [round(t, 3) for t in row["cohorts_runs_s"]]
            runs_b = [round(t, 3) for t in row["floor_runs_s"]]
            ratio_a, ratio_p = row["cohorts_s"] / row["floor_s"], row["pipeline_s"] / row["floor_s"]
            print(f"(a) refresh_cohorts({row['cohorts']} dates) median {row['cohorts_s']:.3f} s {runs_a}; "
                  f"(b) floor query median {row['floor_s']:.3f} s {runs_b}", flush=True)
            print(f"(a)/(b) = {ratio_a:.2f}x  (our all-cohort refresh, which reads the derived tables the "
                  "load maintains, vs the one query over the raw log; same answer)", flush=True)
            print(f"pipeline/(b) = {ratio_p:.0f}x  (context, not like-for-like: the pipeline also validates, "
                  "quarantines, loads and computes d1/d7/d30 and daily analytics)", flush=True)
            if agree["n_mismatches"]:
                failed = True
                print(f"ERROR: (a) and (b) disagree on {agree['n_mismatches']} cohort(s): "
                      f"{agree['mismatches']}", flush=True)
            else:
                print(f"agreement ok: {agree['cohorts_compared']} cohort sizes, "
                      f"{agree['full_7d_windows']} retained-7d counts (full windows)", flush=True)
            print(f"peak RSS {row['peak_rss_mib']:.0f} MiB; database {row['db_bytes'] / 2**20:.0f} MiB",
                  flush=True)
            print("server: " + ", ".join(f"{k}={v}" for k, v in row["pg_settings"].items())
                  + f"; duckdb {row['versions']['duckdb']}", flush=True)
    finally:
        if embedded_home is not None:
            from pipelines.services import stop_embedded_postgres

            stop_embedded_postgres()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        elif results:
            print(f"kept scratch files under {scratch}")

    if results:
        print("\n" + _fmt_table(results))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            payload = {"results": results, "floor_sql": FLOOR_SQL, "source_digest": _source_digest(),
                       "nproc": os.cpu_count()}
            args.out.write_text(json.dumps(payload, indent=2, default=str))
            print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

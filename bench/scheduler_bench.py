"""What the real Airflow engine costs on top of the pipeline's own work, measured side by side in one run.

The same generated retention data (``--days`` days) is processed three ways, each into its own scratch database:

1. ``sequential``: ``jobs.run_range`` in one process (the CLI path: the work itself, the floor);
2. ``dag.test``: one in-process Airflow run per day (what ``make demo`` does);
3. ``scheduler``: ``airflow backfill create`` over all days through a real scheduler, DAG processor and API
   server with the LocalExecutor (default backfill concurrency: 10 runs at once), metadata in PostgreSQL.

Printed: wall time and runs per minute of each, the ratio to the sequential floor, and for the scheduler the
per-task figures from its metadata (queued-to-start latency, task run time against the same steps in-process).

    .venv/bin/python bench/scheduler_bench.py --days 30

Needs a PostgreSQL it may create databases on (``PIPELINES_TEST_PG_ADMIN_DSN``, default the machine's at
127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _database(admin: str, name: str) -> str:
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    p = parse_dsn(make_dsn(**{**parse_dsn(admin), "dbname": name}))
    return f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{name}"


def _drop(admin: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def _env(dsn: str, root: Path) -> dict[str, str]:
    return {"PIPELINES_PG_DSN": dsn, "PIPELINES_DATA_ROOT": str(root), "PIPELINES_HOME": str(root.parent / "home")}


def _set_env(values: dict[str, str]) -> None:
    from pipelines.settings import get_settings

    os.environ.update(values)
    get_settings.cache_clear()


def _copy_raw(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src / "raw", dest / "raw")
    return dest


def sequential(days: list[date], dsn: str, root: Path) -> float:
    from pipelines.retention import jobs

    _set_env(_env(dsn, root))
    t = time.perf_counter()
    jobs.run_range(days[0], days[-1])
    return time.perf_counter() - t


def dag_test(days: list[date], dsn: str, root: Path, home: Path) -> float:
    import subprocess
    from datetime import UTC, datetime

    os.environ.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                       "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    _set_env(_env(dsn, root))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.dagkit import without_deadlines

    dag = without_deadlines(DagBag(str(REPO / "dags")).get_dag("retention_daily"))
    t = time.perf_counter()
    for day in days:
        run = dag.test(logical_date=datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
        assert str(run.state) == "success", day
    return time.perf_counter() - t


def scheduler(days: list[date], dsn: str, root: Path, home: Path, admin: str) -> dict:
    from tests.e2e.cluster import AirflowCluster

    name = f"airflow_bench_{uuid.uuid4().hex[:8]}"
    metadata = _database(admin, name).replace("postgresql://", "postgresql+psycopg2://", 1)
    cluster = AirflowCluster(home=home, metadata_url=metadata, pipelines_env=_env(dsn, root))
    try:
        cluster.start(["retention_daily"])
        t = time.perf_counter()
        cluster.backfill("retention_daily", days[0].isoformat(), days[-1].isoformat())
        runs = cluster.wait_runs("retention_daily", len(days), timeout=7200, run_type="backfill")
        wall = time.perf_counter() - t
        assert all(r["state"] == "success" for r in runs), runs
        tis = cluster.query("SELECT task_id, queued_dttm, start_date, end_date FROM task_instance "
                            "WHERE dag_id = 'retention_daily' AND state = 'success'")
    finally:
        cluster.stop()
        _drop(admin, name)
    latency = [(ti["start_date"] - ti["queued_dttm"]).total_seconds() for ti in tis if ti["queued_dttm"]]
    run_time = {}
    for ti in tis:
        run_time.setdefault(ti["task_id"], []).append((ti["end_date"] - ti["start_date"]).total_seconds())
    return {"wall": wall, "tasks": len(tis), "queued_to_start_s": statistics.median(latency),
            "task_seconds_median": {k: round(statistics.median(v), 2) for k, v in sorted(run_time.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--installs-per-day", type=int, default=120)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    admin = os.environ.get("PIPELINES_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    from pipelines.retention.generate import RetentionDataSpec, write_days

    tmp = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
    spec = RetentionDataSpec(start=date(2017, 3, 1), days=args.days, installs_per_day=args.installs_per_day,
                             existing_users=10 * args.installs_per_day, bad_row_rate=0.004)
    generated = write_days(spec, tmp / "source")
    days = spec.dates()
    figures: dict = {"days": args.days, "events": generated["events"], "cores": os.cpu_count()}
    names = []
    try:
        for label in ("sequential", "dag_test", "scheduler"):
            name = f"ubm_bench_{label}_{uuid.uuid4().hex[:6]}"
            names.append(name)
            dsn = _database(admin, name)
            root = _copy_raw(tmp / "source", tmp / label / "data")
            print(f"{label} ...", file=sys.stderr, flush=True)
            if label == "sequential":
                figures[label] = {"wall": sequential(days, dsn, root)}
            elif label == "dag_test":
                figures[label] = {"wall": dag_test(days, dsn, root, tmp / label / "airflow")}
            else:
                figures[label] = scheduler(days, dsn, root, tmp / label / "airflow", admin)
    finally:
        for name in names:
            _drop(admin, name)
    floor = figures["sequential"]["wall"]
    print(f"retention_daily over {args.days} days ({figures['events']:,} events), {figures['cores']} cores")
    print(f"{'path':<12}{'wall s':>10}{'runs/min':>10}{'x sequential':>14}")
    for label in ("sequential", "dag_test", "scheduler"):
        wall = figures[label]["wall"]
        print(f"{label:<12}{wall:>10.1f}{args.days / wall * 60:>10.1f}{wall / floor:>14.2f}")
    sched = figures["scheduler"]
    print(f"scheduler: {sched['tasks']} task instances, median queued-to-start {sched['queued_to_start_s']:.2f}s; "
          f"median task run time by task: {sched['task_seconds_median']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()

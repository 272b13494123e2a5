"""``make demo``: the whole platform end to end on one machine, with nothing installed but Python.

Starts the local services (embedded PostgreSQL unless one is configured, moto's DynamoDB API on loopback),
initialises Airflow's metadata DB under ``$AIRFLOW_HOME``, generates the demo data, runs every DAG through
Airflow (``dag.test`` per logical date, the same task code the scheduler runs) and prints what each wrote.
Airflow's own logs go to ``$PIPELINES_HOME/demo.log``; the terminal shows progress and the summary.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipelines.settings import get_settings

DEMO_START = date(2017, 3, 1)


def _airflow_env() -> None:
    """Airflow's home and folders inside the checkout, unless the caller chose others."""
    repo = Path(__file__).resolve().parents[1]
    home = get_settings().home
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(repo / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(repo / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send everything written to fd 1/2 (Airflow's task logs) to ``log_path``; the terminal stays readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _say(text: str) -> None:
    print(text, flush=True)


def run_dag_days(dag_id: str, days: list[date], log_path: Path) -> list[str]:
    """One ``dag.test`` run per day; returns the run states. Runs process the day before their logical date."""
    from airflow.dag_processing.dagbag import DagBag
    from tqdm import tqdm

    with _quiet(log_path):
        bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    states = []
    bar = tqdm(days, desc=f"{dag_id} runs", unit="run", file=sys.__stdout__)
    for day in bar:
        logical = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        with _quiet(log_path):
            run = dag.test(logical_date=logical)
        states.append(str(run.state))
        if str(run.state) != "success":
            bar.close()
            raise RuntimeError(f"{dag_id} failed for {day}; see {log_path}")
    return states


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "  (none)"
    columns = columns or list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  " + "  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  " + "  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _summary(endpoint: str | None) -> None:
    import boto3

    from pipelines import db
    from pipelines.retention import jobs
    from pipelines.retention.q1 import q1_postgres
    from pipelines.settings import dynamodb_config

    report = jobs.report(limit=5)
    _say("\n== retention_daily wrote ==")
    _say("Days loaded (retention_day_loads):\n" + _table(report["days"]))
    _say("Latest complete 7-day cohorts (cohort_retention):\n" + _table(report["cohorts"]))
    _say("Latest daily analytics (daily_event_stats):\n" + _table(report["daily"]))
    quarantined = db.query("SELECT reason, count(*) AS rows FROM quarantine WHERE pipeline = 'retention' "
                           "GROUP BY reason ORDER BY 2 DESC")
    _say("Quarantined rows by reason (quarantine):\n" + _table(quarantined))
    _say("The seed's Q1 (installed 2017-04-01, used 2017-04-02 .. 2017-04-08):\n  "
         + q1_postgres(date(2017, 4, 1), 7).describe())
    runs = db.query("SELECT pipeline, kind, status, count(*) AS runs FROM runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    _say("Run registry (runs):\n" + _table(runs))
    if endpoint:
        tables = boto3.client("dynamodb", **dynamodb_config()).list_tables()["TableNames"]
        _say(f"DynamoDB API (moto, {endpoint}): reachable, tables: {tables or 'none yet'}")


def run_demo(days: int = 40, installs_per_day: int = 150) -> int:
    """Run the demo; returns a process exit code."""
    from pipelines.retention.generate import RetentionDataSpec
    from pipelines.services import local_services

    started = time.monotonic()
    _airflow_env()
    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "demo.log"
    log_path.write_text("")
    _say(f"Platform home: {home}  (Airflow home: {os.environ['AIRFLOW_HOME']}; logs: {log_path})")
    with local_services() as exported:
        pg = "embedded PostgreSQL" if "PIPELINES_PG_DSN" in exported else "configured PostgreSQL"
        _say(f"Services: {pg}; DynamoDB API at {exported.get('PIPELINES_DYNAMODB_ENDPOINT', 'configured')}")
        _say("Initialising Airflow's metadata DB ...")
        with open(log_path, "a") as log:
            subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=log, stderr=log)
        from pipelines.migrate import upgrade

        _say(f"Pipelines schema at revision {upgrade()}")
        spec = RetentionDataSpec(start=DEMO_START, days=days, installs_per_day=installs_per_day,
                                 existing_users=10 * installs_per_day, bad_row_rate=0.004)
        from pipelines.retention import jobs

        generated = jobs.generate(spec)
        _say(f"Generated {generated['events']:,} tracker events over {days} days "
             f"({sum(generated['bad'].values())} bad rows planted: {generated['bad']})")
        run_dag_days("retention_daily", spec.dates(), log_path)
        _summary(exported.get("PIPELINES_DYNAMODB_ENDPOINT"))
    _say(f"\nDemo finished in {time.monotonic() - started:.0f}s. Next: `make airflow` for the UI on "
         "http://localhost:8080, `make test` for the tests.")
    return 0

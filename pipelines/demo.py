"""``make demo``: the whole platform end to end on one machine, with nothing installed but Python.

Starts the local services (embedded PostgreSQL unless one is configured, moto's DynamoDB API on loopback),
initialises Airflow's metadata DB under ``$AIRFLOW_HOME``, then runs each pipeline's part of the demo
(``pipelines/<name>/demo.py``: generate its data, run its DAGs through Airflow with ``dag.test`` per logical
date, the same task code the scheduler runs, and print what it wrote). Airflow's own logs go to
``$PIPELINES_HOME/demo.log``; the terminal shows progress and the summaries.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from pipelines.settings import get_settings

#: The pipelines' demo parts, in the order they run.
PARTS = ("retention", "recs", "sociodemo", "keystrokes", "tagging", "engagement", "ops")


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
def quiet(log_path: Path) -> Iterator[None]:
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


def say(text: str) -> None:
    print(text, flush=True)


def table(rows: Sequence[dict], columns: list[str] | None = None) -> str:
    """Rows as an aligned text table for the terminal."""
    if not rows:
        return "  (none)"
    columns = columns or list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  " + "  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  " + "  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def tasks_ran(run) -> bool:
    """A run can be 'success' with no task run at all (a logical date before the DAG's start_date): catch it."""
    return any(str(ti.state) == "success" for ti in run.get_task_instances())


@dataclass
class DemoContext:
    """What a pipeline's demo part gets: where Airflow logs go, its size knobs, and the DAG runner."""

    log_path: Path
    sizes: dict[str, Any] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    _dags: dict[str, Any] = field(default_factory=dict)

    def quietly(self):
        """A block whose output (library logs, progress of generators) goes to the demo log, not the terminal."""
        return quiet(self.log_path)

    def dag(self, dag_id: str):
        """The parsed DAG (the DagBag is read once)."""
        if not self._dags:
            from airflow.dag_processing.dagbag import DagBag

            with quiet(self.log_path):
                bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
            if bag.import_errors:
                raise RuntimeError(f"DAG import errors: {bag.import_errors}")
            from pipelines.dagkit import without_deadlines

            self._dags.update(without_deadlines(bag.dags))
        return self._dags[dag_id]

    def run_once(self, dag_id: str, logical: datetime, conf: dict | None = None):
        """One ``dag.test`` run; fails loudly when the run failed or ran no task."""
        with quiet(self.log_path):
            run = self.dag(dag_id).test(logical_date=logical, run_conf=conf)
        if str(run.state) != "success" or not tasks_ran(run):
            raise RuntimeError(f"{dag_id} at {logical} failed (or ran no task); see {self.log_path}")
        return run

    def run_days(self, dag_id: str, days: list[date], at: dtime = dtime(0), conf: dict | None = None) -> list[str]:
        """One run per day, as the scheduler would: day D's run has the data interval [D at, D+1 at)."""
        from tqdm import tqdm

        states = []
        for d in tqdm(days, desc=f"{dag_id} runs", unit="run", file=sys.__stdout__):
            run = self.run_once(dag_id, datetime.combine(d + timedelta(days=1), at, tzinfo=UTC), conf)
            states.append(str(run.state))
        return states


def run_demo(days: int = 15, installs_per_day: int = 150, recs_users: int = 8_000,
             sociodemo_users: int = 3_000, only: Sequence[str] | None = None) -> int:
    """Run the demo; returns a process exit code."""
    from pipelines.services import local_services

    started = time.monotonic()
    _airflow_env()
    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "demo.log"
    log_path.write_text("")
    say(f"Platform home: {home}  (Airflow home: {os.environ['AIRFLOW_HOME']}; logs: {log_path})")
    sizes = {"days": days, "installs_per_day": installs_per_day, "recs_users": recs_users,
             "sociodemo_users": sociodemo_users}
    with local_services() as exported:
        pg = "embedded PostgreSQL" if "PIPELINES_PG_DSN" in exported else "configured PostgreSQL"
        say(f"Services: {pg}; DynamoDB API at {exported.get('PIPELINES_DYNAMODB_ENDPOINT', 'configured')}")
        say("Initialising Airflow's metadata DB ...")
        with open(log_path, "a") as log:
            subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=log, stderr=log)
        from pipelines.migrate import upgrade

        say(f"Pipelines schema at revision {upgrade()}")
        ctx = DemoContext(log_path=log_path, sizes=sizes, services=exported)
        timings = []
        for name in only or PARTS:
            try:
                part = importlib.import_module(f"pipelines.{name}.demo")
            except ModuleNotFoundError as exc:
                if exc.name in (f"pipelines.{name}", f"pipelines.{name}.demo"):
                    continue
                raise
            t = time.monotonic()
            say(f"\n######## {name} ########")
            part.run(ctx)
            timings.append({"pipeline": name, "seconds": round(time.monotonic() - t)})
        _platform_summary()
        say("Time per pipeline:\n" + table(timings))
    say(f"\nDemo finished in {time.monotonic() - started:.0f}s. Next: `make airflow` for the UI on "
        "http://localhost:8080, `make test` for the tests.")
    return 0


def _platform_summary() -> None:
    from pipelines import db

    say("\n== Platform ==")
    runs = db.query("SELECT pipeline, kind, status, count(*) AS runs FROM runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    say("Run registry (runs):\n" + table(runs))
    parts = db.query("SELECT pipeline, status, count(*) AS partitions, sum(rows_read) AS rows_read, "
                     "sum(rows_quarantined) AS quarantined FROM ingest_partitions GROUP BY 1, 2 ORDER BY 1, 2")
    say("Ingested partitions (ingest_partitions):\n" + table(parts))

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
from datetime import time as dtime
from pathlib import Path

from pipelines.settings import get_settings

DEMO_START = date(2017, 3, 1)
RECS_DAY = date(2026, 11, 2)


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


def _load_dag(dag_id: str, log_path: Path):
    from airflow.dag_processing.dagbag import DagBag

    with _quiet(log_path):
        bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)


def run_dag_days(dag_id: str, days: list[date], log_path: Path, at: dtime = dtime(0),
                 conf: dict | None = None) -> list[str]:
    """One ``dag.test`` run per day; returns the run states. A manual run processes the last whole data
    interval before its logical date, so day D's run is triggered at D+1 ``at`` (the DAG's cron time)."""
    from tqdm import tqdm

    dag = _load_dag(dag_id, log_path)
    states = []
    bar = tqdm(days, desc=f"{dag_id} runs", unit="run", file=sys.__stdout__)
    for day in bar:
        logical = datetime.combine(day + timedelta(days=1), at, tzinfo=UTC)
        with _quiet(log_path):
            run = dag.test(logical_date=logical, run_conf=conf)
        states.append(str(run.state))
        if str(run.state) != "success" or not _tasks_ran(run):
            bar.close()
            raise RuntimeError(f"{dag_id} failed for {day} (or ran no task); see {log_path}")
    return states


def _tasks_ran(run) -> bool:
    """A run can be 'success' with no task run at all (a logical date before the DAG's start_date): catch it."""
    return any(str(ti.state) == "success" for ti in run.get_task_instances())


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


def _recs_summary() -> None:
    """What recs_daily wrote, and the API answering over HTTP from DynamoDB."""
    import json
    import threading
    import urllib.request

    import uvicorn

    from pipelines import db
    from pipelines.recs.api import create_app
    from pipelines.recs.dynamo import RecsStore
    from pipelines.services import free_port

    _say("\n== recs_daily wrote ==")
    pointer = RecsStore().current() or {}
    _say(f"DynamoDB: live version {pointer.get('current_version')} (snapshot {pointer.get('generated_on')}, "
         f"{pointer.get('item_count')} items); previous: {[h['version'] for h in pointer.get('history', [])]}")
    metrics = ("ndcg_at_10", "precision_at_10", "recall_at_10", "coverage")
    picks = ", ".join(f"round(max(m.value) FILTER (WHERE m.name = '{name}')::numeric, 4) AS {name}" for name in metrics)
    rows = db.query(f"""SELECT substr(m.segment, 7) AS model, {picks}
                       FROM run_metrics m JOIN runs r USING (run_id)
                       WHERE r.run_id = (SELECT run_id FROM runs WHERE pipeline = 'recs' AND kind = 'evaluate'
                                         AND status = 'success' ORDER BY finished_at DESC LIMIT 1)
                         AND m.segment LIKE 'model=%%'
                       GROUP BY m.segment ORDER BY 2 DESC""")
    _say("Held-out evaluation of the live version (run_metrics):\n" + _table(rows))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        user = db.query("SELECT summary->>'sample_user' AS u FROM runs WHERE pipeline = 'recs' AND kind = 'publish' "
                        "AND status = 'success' ORDER BY finished_at DESC LIMIT 1")[0]["u"]
        unknown = "0" * 40
        for path in (f"/users/{user}/recommendations?n=5", f"/users/{unknown}/recommendations?n=3&country=Poland"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                body = json.loads(resp.read())
            _say(f"GET {path}\n  -> {body['source']}: " + ", ".join(r["artist"] for r in body["recommendations"]))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _sociodemo(log_path: Path, n_users: int) -> None:
    """Ten days of viewing events: daily ingest (scoring skipped until a promotion), one weekly training that
    promotes CatBoost explicitly, then a daily run that scores every user."""
    from pipelines import db
    from pipelines.sociodemo import jobs as sd_jobs

    start, n_days = date(2024, 6, 1), 10
    made = sd_jobs.generate(seed=42, n_users=n_users, n_videos=max(2000, n_users // 2), start=start, days=n_days,
                            bad_row_rate=0.002, bad_target_rate=0.01)
    days = [start + timedelta(days=i) for i in range(n_days)]
    _say(f"\nGenerated {made['events']:,} Rutube-format viewing events of {n_users:,} users over {n_days} days "
         f"(bad rows planted: {made['bad_rows']})")
    run_dag_days("sociodemo_daily", days[:-1], log_path, at=dtime(1))
    weekly = _load_dag("sociodemo_train_weekly", log_path)
    _say("sociodemo_train_weekly: TopClass, CatBoost and DeepSets + Time2Vec on the held-out split "
         "(promote=catboost) ...")
    with _quiet(log_path):
        run = weekly.test(logical_date=datetime.combine(days[-1], dtime(3), tzinfo=UTC),
                          run_conf={"promote": "catboost", "deepsets_time_budget_s": 60.0})
    if str(run.state) != "success" or not _tasks_ran(run):
        raise RuntimeError(f"sociodemo_train_weekly failed (or ran no task); see {log_path}")
    run_dag_days("sociodemo_daily", days[-1:], log_path, at=dtime(1))
    _say("\n== sociodemo wrote ==")
    rows = db.query("""SELECT r.model_name AS model,
                              round(max(m.value) FILTER (WHERE m.name = 'contest_score')::numeric, 3) AS contest_score,
                              round(max(m.value) FILTER (WHERE m.name = 'sex_roc_auc')::numeric, 3) AS sex_roc_auc,
                              round(max(m.value) FILTER (WHERE m.name = 'age_f1_weighted')::numeric, 3)
                                  AS age_f1_weighted,
                              round(max(m.value) FILTER (WHERE m.name = 'share_of_oracle_contest_score')::numeric, 3)
                                  AS share_of_oracle
                       FROM runs r JOIN run_metrics m USING (run_id)
                       WHERE r.pipeline = 'sociodemo' AND r.kind = 'train' AND r.status = 'success'
                         AND m.segment = ''
                       GROUP BY r.model_name ORDER BY 2 DESC""")
    oracle = db.query("""SELECT round(max(m.value)::numeric, 3) AS v FROM run_metrics m JOIN runs r USING (run_id)
                         WHERE r.pipeline = 'sociodemo' AND m.segment = 'oracle' AND m.name = 'contest_score'""")
    _say(f"Held-out users, every model beside the oracle (contest score ceiling {oracle[0]['v']}; max 3):\n"
         + _table(rows))
    promoted = db.query("SELECT model_name, promoted_by FROM model_promotions WHERE pipeline = 'sociodemo'")
    _say("Promoted (explicitly): " + ", ".join(f"{p['model_name']} by {p['promoted_by']}" for p in promoted))
    scored = db.query("""SELECT count(*) AS users, round(avg(sex_proba)::numeric, 3) AS mean_p_male,
                                min(model_version) AS model_version, min(as_of) AS as_of
                         FROM sociodemo_predictions""")
    _say("sociodemo_predictions:\n" + _table(scored))


def run_demo(days: int = 40, installs_per_day: int = 150, recs_users: int = 20_000,
             sociodemo_users: int = 5_000) -> int:
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

        from pipelines.recs import jobs as recs_jobs

        recs_days = [RECS_DAY - timedelta(days=1), RECS_DAY]
        for day in recs_days:
            made = recs_jobs.generate(day, n_users=recs_users, n_artists=recs_users, start=recs_days[0])
        _say(f"\nGenerated Last.fm-format snapshots for {recs_days[0]} and {recs_days[1]} "
             f"({made.get('users', recs_users):,} users, {made.get('rows', 0):,} play rows each)")
        run_dag_days("recs_daily", recs_days, log_path, at=dtime(2), conf={"eval_users": 2000})
        _recs_summary()
        _sociodemo(log_path, sociodemo_users)
    _say(f"\nDemo finished in {time.monotonic() - started:.0f}s. Next: `make airflow` for the UI on "
         "http://localhost:8080, `make test` for the tests.")
    return 0

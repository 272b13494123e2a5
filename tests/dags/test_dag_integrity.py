"""Every DAG file: imports cleanly and fast, pulls in nothing heavy, touches no connection at parse time,
and sets the header every DAG must have."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
HEAVY = ("pandas", "numpy", "duckdb", "pyarrow", "psycopg2", "boto3", "torch", "catboost", "sklearn",
         "matplotlib", "pycantonese", "hnswlib", "pipelines")

_PROBE = r"""
import importlib.util, json, sys, time
import airflow.sdk
from airflow.sdk import Connection, Variable
calls = []
def _forbidden(*a, **k):
    calls.append(a)
    raise RuntimeError("connection/variable lookup at parse time")
Connection.get = classmethod(lambda cls, *a, **k: _forbidden(*a))
Variable.get = staticmethod(_forbidden)
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
module = importlib.util.module_from_spec(spec)
start = time.perf_counter()
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
new = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps({"seconds": elapsed, "new_modules": new, "lookups": len(calls)}))
"""


def test_there_are_dags():
    assert DAG_FILES


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_and_light(path):
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["seconds"] < 0.5, f"{path.name} took {probe['seconds']:.2f}s to import"
    assert not set(probe["new_modules"]) & set(HEAVY), f"heavy top-level imports: {probe['new_modules']}"
    assert probe["lookups"] == 0


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_one_dag_per_file_named_after_it(dagbag, path):
    ids = [dag_id for dag_id, dag in dagbag.dags.items() if Path(dag.fileloc).name == path.name]
    assert ids == [path.stem]


def test_every_dag_has_the_header(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.catchup is False, dag_id
        assert dag.start_date.tzinfo is not None, dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"


def test_retention_graph(dagbag):
    dag = dagbag.dags["retention_daily"]
    graph = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert graph == {
        "validate": ["load"],
        "load": ["refresh_cohorts", "refresh_daily_analytics"],
        "refresh_cohorts": [],
        "refresh_daily_analytics": [],
    }
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"


def test_recs_graph(dagbag):
    dag = dagbag.dags["recs_daily"]
    graph = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert graph == {
        "validate": ["build", "evaluate"],
        "build": ["publish", "shards"],
        "shards": ["recommend_shard"],
        "recommend_shard": ["write_shard"],
        "write_shard": ["publish"],
        "publish": ["cleanup"],
        "cleanup": [],
        "evaluate": [],
    }
    assert dag.max_active_runs == 1  # cleanup must never race a publish
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert {"k_neighbours", "n_recs", "weighting", "profile_weight", "neighbours"} <= set(dag.params)

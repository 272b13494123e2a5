"""Every DAG file: imports cleanly, pulls in nothing heavy, touches no connection at parse time, and follows
the platform's DAG conventions (``pipelines/dagkit.py``, ``docs/platform.md``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
HEAVY = ("pandas", "numpy", "duckdb", "pyarrow", "psycopg2", "boto3", "torch", "catboost", "sklearn",
         "matplotlib", "pycantonese", "hnswlib", "sqlalchemy", "requests", "fastapi")
#: The only modules of ``pipelines`` a DAG file may import at parse time (light: airflow.sdk and pendulum).
LIGHT_PIPELINES = {"pipelines", "pipelines.dagkit", "pipelines.ops", "pipelines.ops.notify"}  # notify: airflow.sdk only

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
added = set(sys.modules) - before
new = sorted({m.split(".")[0] for m in added})
ours = sorted(m for m in added if m == "pipelines" or m.startswith("pipelines."))
print(json.dumps({"seconds": elapsed, "new_modules": new, "pipelines_modules": ours, "lookups": len(calls)}))
"""


def test_there_are_dags():
    assert DAG_FILES


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_light(path):
    """How long parsing takes is measured by bench/dag_parse_bench.py; here: what parsing pulls in."""
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert not set(probe["new_modules"]) & set(HEAVY), f"heavy top-level imports: {probe['new_modules']}"
    assert set(probe["pipelines_modules"]) <= LIGHT_PIPELINES, probe["pipelines_modules"]
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
        assert dag.dagrun_timeout is not None, f"{dag_id} has no dagrun_timeout"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"


def test_every_dag_serializes_and_has_an_overrun_deadline(dagbag):
    """What the DAG processor stores: a DAG that does not serialize never reaches the scheduler (a pendulum
    duration inside a deadline alert did that once)."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, dag in dagbag.dags.items():
        assert dag.deadline, f"{dag_id} has no overrun deadline (pipelines.dagkit.overrun_alert)"
        serialized = DagSerialization.to_dict(dag)
        assert serialized["dag"]["dag_id"] == dag_id


def test_every_dag_begins_by_checking_its_conf_and_naming_its_day(dagbag):
    for dag_id, dag in dagbag.dags.items():
        roots = [t.task_id for t in dag.tasks if not t.upstream_task_ids]
        assert roots == ["begin"], f"{dag_id}: roots {roots}"
        assert "day" in dag.params, f"{dag_id} has no day Param"


def test_sensors_wait_without_holding_a_slot_and_give_up(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            if hasattr(task, "poke_interval"):
                assert task.mode == "reschedule" or getattr(task, "deferrable", False), f"{dag_id}.{task.task_id}"
                assert task.timeout and task.timeout < 24 * 3600, f"{dag_id}.{task.task_id}"


def test_mapped_tasks_are_labelled_and_pools_exist(dagbag):
    from pipelines.dagkit import POOLS

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            if getattr(task, "_is_mapped", False) or type(task).__name__ == "MappedOperator":
                template = task.partial_kwargs.get("map_index_template") if hasattr(task, "partial_kwargs") \
                    else getattr(task, "map_index_template", None)
                assert template, f"{dag_id}.{task.task_id} is mapped without a map_index_template"
            assert task.pool in {*POOLS, "default_pool"}, f"{dag_id}.{task.task_id} uses unknown pool {task.pool}"


def test_retention_graph(dagbag):
    dag = dagbag.dags["retention_daily"]
    graph = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert graph == {
        "begin": ["wait_for_drop"],
        "wait_for_drop": ["validate"],
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
        "begin": ["wait_for_snapshot"],
        "wait_for_snapshot": ["validate"],
        "validate": ["build", "evaluate"],
        "build": ["publish", "shards"],
        "shards": ["recommend_shard"],
        "recommend_shard": ["write_shard"],
        "write_shard": ["publish"],
        "evaluate": ["publish"],  # the quality gate needs the evaluation
        "publish": ["cleanup"],
        "cleanup": [],
    }
    assert dag.get_task("publish").pool == dag.get_task("cleanup").pool == "publish"
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert {"k_neighbours", "n_recs", "weighting", "profile_weight", "neighbours", "quality_tolerance"} <= set(
        dag.params)

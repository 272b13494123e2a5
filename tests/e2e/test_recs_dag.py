"""The recommendations DAG run through Airflow (``dag.test``) against real PostgreSQL and a DynamoDB-API server:
mapped shards, the atomic publish, reruns, an older backfill that must not go live, and cleanup."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from pipelines import db
from pipelines.recs.generate import RecsDataSpec, write_snapshot

pytestmark = pytest.mark.e2e

DAY = date(2026, 11, 2)
SPEC = RecsDataSpec(seed=11, n_users=900, n_artists=700, start=DAY - timedelta(days=1))
PARAMS = {"shard_users": 400, "eval_users": 300, "k_neighbours": 20, "svd_dim": 16}


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["recs_daily"]


@pytest.fixture
def store(dynamodb_endpoint, monkeypatch, request):
    from pipelines.recs.dynamo import RecsStore
    from pipelines.settings import get_settings

    monkeypatch.setenv("PIPELINES_DYNAMODB_ENDPOINT", dynamodb_endpoint)
    monkeypatch.setenv("PIPELINES_RECS_TABLE", f"recs_e2e_{request.node.name[:40]}")
    get_settings.cache_clear()
    return RecsStore()


def _run(dag, day: date, **params):
    """A manual run whose data interval is ``day`` (02:00 to 02:00 the next day)."""
    logical = datetime.combine(day + timedelta(days=1), time(2), tzinfo=UTC)
    run = dag.test(logical_date=logical, run_conf={**PARAMS, **params})
    states = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return run, states


def _table(store) -> dict:
    """Every item of the table, as comparable plain data."""
    paginator = store.client.get_paginator("scan")
    items = [i for page in paginator.paginate(TableName=store.table_name) for i in page["Items"]]
    return {(i["user_id"]["S"], i["version"]["S"]): {k: v for k, v in i.items() if k != "published_at"}
            for i in items if i["user_id"]["S"] != "#meta"}


def test_daily_run_publishes_every_user_atomically_and_reruns_identically(dag, pg_dsn, data_root, store):
    write_snapshot(SPEC, data_root, DAY)
    run, states = _run(dag, DAY)
    assert str(run.state) == "success", states
    assert run.data_interval_start.date() == DAY
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "recommend_shard"]
    assert len(mapped) >= 2  # dynamic task mapping really split the users

    pointer = store.current()
    version = pointer["current_version"]
    assert version.startswith("20261102-") and pointer["generated_on"] == DAY.isoformat()
    users = db.query("SELECT summary FROM runs WHERE kind = 'train' AND status = 'success'")[0]["summary"]["n_users"]
    table = _table(store)
    user_items = {k: v for k, v in table.items() if not k[0].startswith("#")}
    assert len(user_items) == users and {v for _, v in user_items} == {version}
    assert all(len(item["items"]["L"]) == 10 for item in user_items.values())
    assert any(k[0] == "#fallback#*#*" for k in table)

    kinds = {r["kind"]: r["status"] for r in db.query("SELECT kind, status FROM runs WHERE pipeline = 'recs'")}
    assert kinds == {"ingest": "success", "train": "success", "publish": "success", "evaluate": "success"}
    metrics = {r["segment"]: r["value"] for r in db.query(
        "SELECT segment, value FROM run_metrics JOIN runs USING (run_id) WHERE kind = 'evaluate' "
        "AND name = 'ndcg_at_10'")}
    assert metrics["model=user_user_cf"] > metrics["model=popularity"]
    assert metrics["model=oracle"] >= metrics["model=user_user_cf"]
    assert db.query("SELECT count(*) AS n FROM quarantine WHERE pipeline = 'recs'")[0]["n"] > 0

    run, states = _run(dag, DAY)  # a rerun of the day: same version, same items
    assert str(run.state) == "success", states
    assert store.current()["current_version"] == version
    assert _table(store) == table


def test_older_backfill_never_goes_live_and_cleanup_keeps_rollback(dag, pg_dsn, data_root, store):
    days = [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]
    for day in days:
        write_snapshot(SPEC, data_root, day)
    for day in (DAY, DAY + timedelta(days=1)):
        run, states = _run(dag, day)
        assert str(run.state) == "success", states
    live = store.current()["current_version"]
    assert live.startswith("20261103-")

    run, states = _run(dag, days[0])  # a backfill of an older day: computed, evaluated, not served
    assert str(run.state) == "success", states
    assert store.current()["current_version"] == live
    assert {v for _, v in _table(store)} == {live, store.versions()[1]}  # older backfill not written
    versions_on_disk = sorted(p.name for p in (data_root / "recs" / "versions").iterdir())
    assert versions_on_disk == sorted(store.versions()[:2])

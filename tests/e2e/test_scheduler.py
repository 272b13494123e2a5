"""The DAGs under the real engine: a scheduler, a DAG processor and an API server (metadata in PostgreSQL),
running ``airflow backfill create`` with the default backfill concurrency (10 runs at once), manual triggers,
and the CeleryExecutor with two real Celery workers on Redis. The tables and the served recommendations must
equal what the sequential path (the CLI, one day after the other) produces."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines import db
from tests.e2e.cluster import AirflowCluster

pytestmark = pytest.mark.e2e

RETENTION_DAYS = [date(2017, 3, 1) + timedelta(days=i) for i in range(6)]
RECS_DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(3)]
RECS_CONF = {"shard_users": 250, "eval_users": 200, "k_neighbours": 20, "svd_dim": 16, "keep_versions": 2}
VOLATILE = {"computed_at", "loaded_at", "run_id", "quarantined_at", "id"}
RETENTION_TABLES = {"piwik_track": "event_date, event_id, uid, time", "user_install": "uid",
                    "user_activity_day": "activity_date, uid", "cohort_retention": "install_date",
                    "daily_event_stats": "day", "daily_top_events": "day, rank",
                    "daily_platform_stats": "day, platform", "retention_day_loads": "day",
                    "quarantine": "partition_key, reason, record::text"}


def _redis_available() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def _database(admin_dsn: str, name: str) -> str:
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return make_dsn(**{**parse_dsn(admin_dsn), "dbname": name})


def _drop(admin_dsn: str, name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _uri(dsn: str, driver: str = "postgresql") -> str:
    from tests.conftest import _libpq_to_uri

    return _libpq_to_uri(dsn).replace("postgresql://", f"{driver}://", 1)


@pytest.fixture(scope="module")
def world(pg_admin_dsn, dynamodb_endpoint, tmp_path_factory):
    """Generated inputs for both DAGs in one data root, and a pipelines database, for the whole module."""
    from pipelines.recs.generate import RecsDataSpec, write_snapshot
    from pipelines.retention.generate import RetentionDataSpec, write_days
    from pipelines.settings import get_settings

    root = tmp_path_factory.mktemp("scheduler") / "data"
    write_days(RetentionDataSpec(start=RETENTION_DAYS[0], days=len(RETENTION_DAYS), installs_per_day=40,
                                 existing_users=150, seed=17, bad_row_rate=0.005), root)
    spec = RecsDataSpec(seed=23, n_users=700, n_artists=500, start=RECS_DAYS[0])
    for day in RECS_DAYS:
        write_snapshot(spec, root, day)
    name = f"ubm_sched_{uuid.uuid4().hex[:10]}"
    dsn = _uri(_database(pg_admin_dsn, name))
    env = {"PIPELINES_PG_DSN": dsn, "PIPELINES_DATA_ROOT": str(root), "PIPELINES_DYNAMODB_ENDPOINT": dynamodb_endpoint,
           "PIPELINES_RECS_TABLE": f"recs_sched_{uuid.uuid4().hex[:6]}", "PIPELINES_HOME": str(root.parent / "home"),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        yield env, root
    get_settings.cache_clear()
    _drop(pg_admin_dsn, name)


def _cluster(pg_admin_dsn, home: Path, env: dict, **kwargs) -> AirflowCluster:
    name = f"airflow_{uuid.uuid4().hex[:10]}"
    metadata = _uri(_database(pg_admin_dsn, name), "postgresql+psycopg2")
    cluster = AirflowCluster(home=home, metadata_url=metadata, pipelines_env=env, **kwargs)
    cluster.metadata_db = name  # type: ignore[attr-defined]
    return cluster


@pytest.fixture(scope="module")
def local_cluster(world, pg_admin_dsn, tmp_path_factory):
    env, _ = world
    cluster = _cluster(pg_admin_dsn, tmp_path_factory.mktemp("airflow-local"), env)
    try:
        yield cluster.start(["retention_daily", "recs_daily"])
    finally:
        cluster.stop()
        _drop(pg_admin_dsn, cluster.metadata_db)


def _snapshot(tables: dict[str, str]) -> dict[str, list[dict]]:
    out = {}
    for table, order in tables.items():
        rows = db.query(f"SELECT * FROM {table} ORDER BY {order}")
        out[table] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return out


def _sequential(pg_admin_dsn, root: Path, tmp: Path, run) -> object:
    """Run ``run()`` against a fresh pipelines database and a copy of the raw inputs (the sequential path)."""
    from pipelines.settings import get_settings

    name = f"ubm_seq_{uuid.uuid4().hex[:10]}"
    copy = tmp / "data"
    shutil.copytree(root / "raw", copy / "raw")
    if (root / "recs" / "raw").exists():
        shutil.copytree(root / "recs" / "raw", copy / "recs" / "raw")
        shutil.copytree(root / "recs" / "truth", copy / "recs" / "truth")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PIPELINES_PG_DSN", _uri(_database(pg_admin_dsn, name)))
            mp.setenv("PIPELINES_DATA_ROOT", str(copy))
            mp.setenv("PIPELINES_RECS_TABLE", f"recs_seq_{uuid.uuid4().hex[:6]}")
            get_settings.cache_clear()
            return run()
    finally:
        get_settings.cache_clear()
        _drop(pg_admin_dsn, name)


def test_a_retention_backfill_through_the_scheduler_equals_the_sequential_path(local_cluster, world, pg_admin_dsn,
                                                                               tmp_path):
    from pipelines.retention import jobs

    _, root = world
    local_cluster.backfill("retention_daily", RETENTION_DAYS[0].isoformat(), RETENTION_DAYS[-1].isoformat())
    runs = local_cluster.wait_runs("retention_daily", len(RETENTION_DAYS), run_type="backfill")
    assert [r["state"] for r in runs] == ["success"] * len(RETENTION_DAYS), runs
    assert [r["data_interval_start"].date() for r in runs] == RETENTION_DAYS
    concurrent = max(sum(1 for o in runs if o["start_date"] < r["end_date"] and r["start_date"] < o["end_date"])
                     for r in runs)
    assert concurrent >= 2  # the backfill really ran days at the same time
    got = _snapshot(RETENTION_TABLES)

    def sequential():
        jobs.run_range(RETENTION_DAYS[0], RETENTION_DAYS[-1])
        return _snapshot(RETENTION_TABLES)

    expected = _sequential(pg_admin_dsn, root, tmp_path, sequential)
    for table in RETENTION_TABLES:
        assert got[table] == expected[table], table


def test_a_recs_backfill_serves_the_newest_day_complete(local_cluster, world, pg_admin_dsn, tmp_path):
    from pipelines.recs import jobs
    from pipelines.recs.dynamo import RecsStore

    _, root = world
    # The runs' logical dates are D 02:00 (the cron time), so the window ends at the last day's 02:00.
    local_cluster.backfill("recs_daily", RECS_DAYS[0].isoformat(), f"{RECS_DAYS[-1]}T02:00:00+00:00", RECS_CONF)
    runs = local_cluster.wait_runs("recs_daily", len(RECS_DAYS), run_type="backfill")
    assert [r["data_interval_start"].date() for r in runs] == RECS_DAYS
    assert [r["state"] for r in runs] == ["success"] * len(RECS_DAYS), runs
    tis = [t for t in local_cluster.task_instances("recs_daily") if t["task_id"] == "recommend_shard"]
    assert len(tis) >= 2 * len(RECS_DAYS) and all(t["rendered_map_index"].startswith("shard ") for t in tis)
    store = RecsStore()
    pointer = store.current()
    assert pointer["generated_on"] == RECS_DAYS[-1].isoformat()
    live = pointer["current_version"]
    items = store.scan_versions()
    assert items[live] == pointer["item_count"]  # every user and fallback list of the live version landed
    on_disk = sorted(p.name for p in (root / "recs" / "versions").iterdir())
    assert live in on_disk and len(on_disk) <= RECS_CONF["keep_versions"] + 1

    def sequential():
        for day in RECS_DAYS:
            jobs.run_day(day, RECS_CONF, shard_users=RECS_CONF["shard_users"], evaluate_users=200,
                         keep=RECS_CONF["keep_versions"])
        seq = RecsStore()
        return seq.current()["current_version"], seq.scan_versions()

    version, seq_items = _sequential(pg_admin_dsn, root, tmp_path, sequential)
    assert version == live and seq_items[version] == items[live]


def test_a_manual_trigger_names_its_day_and_typos_fail_at_once(local_cluster, world):
    run_id = local_cluster.trigger("retention_daily", {"day": RETENTION_DAYS[2].isoformat()})
    bad_id = local_cluster.trigger("retention_daily", {"max_bad_sharre": 0.5})
    runs = {r["run_id"]: r for r in local_cluster.wait_runs("retention_daily", 2, run_type="manual")}
    assert runs[run_id]["state"] == "success" and runs[run_id]["logical_date"] is None  # no logical date at all
    assert runs[bad_id]["state"] == "failed"
    tis = {(t["run_id"], t["task_id"]): t for t in local_cluster.task_instances("retention_daily")}
    assert tis[(bad_id, "begin")]["state"] == "failed" and tis[(bad_id, "begin")]["try_number"] == 1
    logs = "".join(p.read_text(errors="replace") for p in (local_cluster.home / "logs").rglob("*")
                   if p.is_file() and bad_id in str(p))
    assert "unknown Param(s) ['max_bad_sharre']" in logs and "valid Params: ['day', 'max_bad_share']" in logs


@pytest.mark.skipif(not _redis_available(), reason="no Redis on 127.0.0.1:6379 for the Celery broker")
def test_celery_workers_share_the_mapped_shards(world, pg_admin_dsn, tmp_path_factory):
    """recs_daily with the CeleryExecutor and two real workers: the shards spread over both, and the live
    version equals the one the LocalExecutor test and the sequential path produced."""
    import redis

    from pipelines.recs.dynamo import RecsStore

    env, _ = world
    broker_db = 11
    redis.Redis(host="127.0.0.1", port=6379, db=broker_db).flushdb()
    celery_env = {**env, "PIPELINES_RECS_TABLE": f"recs_celery_{uuid.uuid4().hex[:6]}"}
    cluster = _cluster(pg_admin_dsn, tmp_path_factory.mktemp("airflow-celery"), celery_env,
                       executor="CeleryExecutor", workers=2, broker_url=f"redis://127.0.0.1:6379/{broker_db}")
    try:
        cluster.start(["recs_daily"])
        day = RECS_DAYS[-1].isoformat()
        run_id = cluster.trigger("recs_daily", {**RECS_CONF, "shard_users": 120, "day": day})
        runs = cluster.wait_runs("recs_daily", 1)
        assert runs[0]["run_id"] == run_id and runs[0]["state"] == "success", runs
        shards = [t for t in cluster.task_instances("recs_daily") if t["task_id"] in ("recommend_shard",
                                                                                      "write_shard")]
        by_worker: dict[str, list[str]] = {}
        for t in shards:
            by_worker.setdefault(t["hostname"], []).append(f"{t['task_id']}[{t['rendered_map_index']}]")
        print("shards by Celery worker:", {w: len(s) for w, s in by_worker.items()})
        assert set(by_worker) == {"worker1", "worker2"}, by_worker
        os.environ["PIPELINES_RECS_TABLE"] = celery_env["PIPELINES_RECS_TABLE"]
        try:
            pointer = RecsStore().current()
            assert pointer["generated_on"] == day
            assert RecsStore().scan_versions()[pointer["current_version"]] == pointer["item_count"]
        finally:
            os.environ["PIPELINES_RECS_TABLE"] = env["PIPELINES_RECS_TABLE"]
    finally:
        cluster.stop()
        _drop(pg_admin_dsn, cluster.metadata_db)

"""Recommendation jobs against real PostgreSQL and the DynamoDB-API server: the quality gate, evaluation with
nobody to evaluate, the oracle tied to the snapshot it was generated for, and cleanup that never touches a
version another run may still be building."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest

from pipelines import db
from pipelines.errors import PipelineError
from pipelines.recs import jobs, schema
from pipelines.recs.generate import MARKER, RecsDataSpec, snapshot_marker_matches, write_snapshot
from pipelines.storage import DataRoot

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 2)
SPEC = RecsDataSpec(seed=3, n_users=600, n_artists=500, start=DAY - timedelta(days=1))
PARAMS = {"k_neighbours": 20, "svd_dim": 16}


@pytest.fixture
def store(dynamodb_endpoint, monkeypatch, request):
    from pipelines.recs.dynamo import RecsStore
    from pipelines.settings import get_settings

    monkeypatch.setenv("PIPELINES_DYNAMODB_ENDPOINT", dynamodb_endpoint)
    monkeypatch.setenv("PIPELINES_RECS_TABLE", f"recs_jobs_{request.node.name[:40]}")
    get_settings.cache_clear()
    return RecsStore()


def _own_snapshot(root, day: date, users: int = 30, artists_each: int = 1) -> None:
    """A user's own Last.fm files (no generator marker)."""
    folder = root / schema.raw_rel_dir(day)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [hashlib.sha1(f"own-{i}".encode()).hexdigest() for i in range(users)]
    plays = "".join(f"{u}\t\tArtist {(i + j) % 7}\t{10 + j}\n" for i, u in enumerate(ids) for j in range(artists_each))
    (folder / schema.PLAYS_FILE).write_text(plays)
    (folder / schema.PROFILE_FILE).write_text("".join(f"{u}\tm\t30\tPoland\tFeb 1, 2007\n" for u in ids))


def test_the_oracle_belongs_to_its_snapshot_only(pg_dsn, data_root, store):
    write_snapshot(SPEC, data_root, DAY)
    root = DataRoot()
    assert snapshot_marker_matches(root, DAY)["truth"].startswith("seed=")
    assert jobs._oracle_for(root, DAY) is not None
    # The user drops their own files for another day into the same data root: the truth is not theirs.
    other = DAY + timedelta(days=1)
    _own_snapshot(data_root, other, users=40, artists_each=8)
    assert jobs._oracle_for(root, other) is None
    jobs.validate(other)
    result = jobs.evaluate(other, PARAMS, 100)  # used to crash with ZeroDivisionError on share_of_oracle_ndcg
    assert "oracle" not in result["metrics"] and result["metrics"]["user_user_cf"]["ndcg_at_10"] >= 0
    names = {r["name"] for r in db.query("SELECT name FROM run_metrics JOIN runs USING (run_id) "
                                         "WHERE kind = 'evaluate'")}
    assert "share_of_oracle_ndcg" not in names
    # Generated files replaced in place by the user's own: the marker no longer matches.
    (data_root / schema.raw_rel_dir(DAY) / schema.PLAYS_FILE).write_text("")
    assert snapshot_marker_matches(root, DAY) is None and jobs._oracle_for(root, DAY) is None
    assert (data_root / schema.raw_rel_dir(DAY) / MARKER).exists()


def test_evaluation_with_nobody_to_evaluate_is_a_clear_skip(pg_dsn, data_root, store):
    _own_snapshot(data_root, DAY, users=30, artists_each=1)
    jobs.validate(DAY)
    result = jobs.evaluate(DAY, PARAMS, 100)
    assert result["skipped"] is True and "nothing to evaluate" in result["reason"]
    run = db.query("SELECT run_id, status, summary FROM runs WHERE kind = 'evaluate'")[0]
    assert run["status"] == "success" and run["summary"]["skipped"] is True
    assert db.query("SELECT count(*) AS n FROM run_metrics WHERE run_id = %s", (run["run_id"],))[0]["n"] == 0


def test_the_quality_gate_keeps_the_live_version_when_a_new_one_is_worse(pg_dsn, data_root, store):
    for day in (DAY, DAY + timedelta(days=1)):
        write_snapshot(SPEC, data_root, day)
    first = jobs.run_day(DAY, PARAMS, shard_users=300, evaluate_users=200)
    live = store.current()["current_version"]
    assert first["publish"]["published"] and first["publish"]["quality_gate"]["applied"] is False
    second_day = DAY + timedelta(days=1)
    jobs.validate(second_day)
    built = jobs.build(second_day, PARAMS, 300)
    written = [jobs.write_shard(jobs.recommend_shard(s)) for s in built["shards"]]
    worse = {"metrics": {jobs.MODEL_NAME: {"ndcg_at_10": 0.0}}}
    with pytest.raises(PipelineError, match="fails the quality gate"):
        jobs.publish(built["version"], written, worse, quality_tolerance=0.05)
    assert store.current()["current_version"] == live
    assert jobs.publish(built["version"], written, worse, quality_tolerance=1.0)["published"]  # gate off
    assert store.current()["current_version"] == built["version"]


def test_cleanup_spares_versions_a_run_may_still_be_building(pg_dsn, data_root, store):
    for day in (DAY - timedelta(days=1), DAY):
        write_snapshot(SPEC, data_root, day)
    jobs.run_day(DAY - timedelta(days=1), PARAMS, shard_users=600, evaluate_users=0)
    jobs.run_day(DAY, PARAMS, shard_users=600, evaluate_users=0)
    live = store.current()["current_version"]
    versions = data_root / "recs" / "versions"
    for name in ("20261101-deadbeef", "20261102-cafecafe", "20261105-f00df00d"):  # older, same day, newer
        (versions / name / "model").mkdir(parents=True)
    result = jobs.cleanup(keep=1)
    assert result["kept"] == [live]
    assert set(result["spared"]) == {"20261102-cafecafe", "20261105-f00df00d"}
    assert "20261101-deadbeef" in result["removed"]
    assert sorted(p.name for p in versions.iterdir()) == sorted([live, "20261102-cafecafe", "20261105-f00df00d"])

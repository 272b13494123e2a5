"""Every pipeline end to end with its data root on S3 (moto's S3 over HTTP on loopback): raw drops read from
the bucket, staged runs, state, models and reports written to it, and the same results as a local data root."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines import db, ingest
from pipelines.settings import get_settings
from pipelines.storage import DataRoot

pytestmark = pytest.mark.integration

BUCKET = "ubm-data"


@pytest.fixture
def s3_root(dynamodb_endpoint, monkeypatch, tmp_path):
    """An S3 data root on the moto server; yields (local folder to generate into, upload function)."""
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "PIPELINES_S3_ENDPOINT": dynamodb_endpoint,
                       "PIPELINES_DYNAMODB_ENDPOINT": dynamodb_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=dynamodb_endpoint)
    prefix = f"data-{tmp_path.name}"
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("PIPELINES_DATA_ROOT", f"s3://{BUCKET}/{prefix}")
    get_settings.cache_clear()
    local = tmp_path / "generated"
    local.mkdir()

    def upload() -> int:
        n = 0
        for path in sorted(local.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")
                n += 1
        return n

    yield local, upload, (s3, prefix)
    get_settings.cache_clear()


def _keys(s3, prefix: str, under: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/{under}")
    return [o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])]


def test_retention_on_s3(pg_dsn, s3_root):
    from pipelines.retention import jobs
    from pipelines.retention.generate import RetentionDataSpec, write_days
    from tests.retention_truth import read_drops

    local, upload, (s3, prefix) = s3_root
    spec = RetentionDataSpec(start=date(2017, 4, 1), days=4, installs_per_day=30, existing_users=80, seed=4,
                             bad_row_rate=0.01)
    write_days(spec, local)
    assert upload() > 0
    for day in spec.dates():
        jobs.run_day(day)
    truth = read_drops(local, spec.dates())
    assert db.query("SELECT count(*) AS n FROM piwik_track")[0]["n"] == truth.events
    assert any(k.endswith("events.parquet") for k in _keys(s3, prefix, "retention/staged/"))
    assert DataRoot().is_s3


def test_recs_on_s3(pg_dsn, s3_root, monkeypatch, request):
    from pipelines.recs import jobs
    from pipelines.recs.dynamo import RecsStore
    from pipelines.recs.generate import RecsDataSpec, write_snapshot

    local, upload, (s3, prefix) = s3_root
    monkeypatch.setenv("PIPELINES_RECS_TABLE", f"recs_s3_{request.node.name[:30]}")
    day = date(2026, 11, 2)
    write_snapshot(RecsDataSpec(seed=5, n_users=500, n_artists=400, start=day), local, day)
    upload()
    result = jobs.run_day(day, {"k_neighbours": 20, "svd_dim": 16}, shard_users=300, evaluate_users=200)
    assert result["publish"]["published"]
    assert "oracle" in result["evaluate"]["metrics"]  # the marker and the truth are read from the bucket
    assert RecsStore().current()["generated_on"] == day.isoformat()
    keys = _keys(s3, prefix, "recs/")
    assert any(k.startswith("recs/versions/") and k.endswith("manifest.json") for k in keys)
    assert any(k.startswith("recs/reports/") and k.endswith("evaluation.png") for k in keys)


def test_sociodemo_on_s3(pg_dsn, s3_root):
    from pipelines.sociodemo import jobs
    from pipelines.sociodemo.generate import SociodemoSpec, write_dataset

    local, upload, (s3, prefix) = s3_root
    start = date(2024, 6, 1)
    spec = SociodemoSpec(seed=8, n_users=400, n_videos=500, n_authors=60, start=start, days=3)
    write_dataset(spec, local)
    upload()
    for i in range(spec.days):
        jobs.validate(start + timedelta(days=i), 0.05)
        jobs.update_histories(start + timedelta(days=i))
    jobs.validate_targets(0.1)
    last = start + timedelta(days=spec.days - 1)
    trained = jobs.train(last, ["topclass", "catboost"], {"catboost": {"iterations": 30, "depth": 3}})
    jobs.promote("catboost", trained["runs"]["catboost"])
    scored = jobs.score(last)
    assert scored["users"] == db.query("SELECT count(*) AS n FROM sociodemo_predictions")[0]["n"] > 0
    keys = _keys(s3, prefix, "sociodemo/")
    assert any("/features/" in f"/{k}" and k.endswith("features.parquet") for k in keys)
    assert any(k.startswith(f"sociodemo/models/{trained['version']}/") for k in keys)
    assert ingest.accepted("sociodemo", "targets")["staged_uri"].startswith(f"s3://{BUCKET}/")
    assert Path(get_settings().home).exists()

"""The engagement pipeline with its data root on S3 (moto's S3 over HTTP on loopback): the historical file and
a daily drop read from the bucket, staged runs, models and the report written to it, predictions as with a
local root."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines import db, ingest
from pipelines.settings import get_settings

pytestmark = pytest.mark.integration

BUCKET = "ubm-data"


@pytest.fixture
def s3_root(dynamodb_endpoint, monkeypatch, tmp_path):
    """An S3 data root on the moto server; yields (local folder to generate into, upload function, (s3, prefix))."""
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

    def upload() -> None:
        for path in sorted(local.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")

    yield local, upload, (s3, prefix)
    get_settings.cache_clear()


def _keys(s3, prefix: str, under: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/{under}")
    return [o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])]


def test_engagement_on_s3(pg_dsn, s3_root):
    from pipelines.engagement import jobs
    from pipelines.engagement.generate import EngagementSpec, write_day, write_history, write_spec

    local, upload, (s3, prefix) = s3_root
    spec = EngagementSpec(seed=5, start=date(2016, 1, 1), days=92, posts_per_day=100, n_authors=400,
                          bad_row_rate=0.01)
    day = spec.end
    history = write_history(spec, local, "history.csv", spec.start, day - timedelta(days=1))
    drop = write_day(spec, local, day)
    write_spec(spec, local)
    upload()

    assert jobs.pending_history_files() == ["history.csv"]
    converted = jobs.convert_file("history.csv")
    assert converted["rows_valid"] == history["clean"] and converted["reasons"] == history["bad"]
    assert jobs.pending_history_files() == []
    assert jobs.convert_day(day)["rows_valid"] == drop["clean"]
    staged = _keys(s3, prefix, "engagement/staged/")
    assert any("/posts-2016-03--000.parquet" in k for k in staged) and any(k.endswith("summary.json") for k in staged)

    trained = jobs.train(day, ["linear"], eval_rows=500, valid_rows=500)
    assert "oracle" in trained["table"]  # the truth was read from the bucket
    models = _keys(s3, prefix, f"engagement/models/{trained['version']}/")
    assert f"engagement/models/{trained['version']}/linear/weights.npz" in models
    assert f"engagement/models/{trained['version']}/report/learning_curve.png" in models
    jobs.promote("linear", trained["runs"]["linear"])
    scored = jobs.score(day)
    assert scored["posts"] == scored["upserted"] == drop["clean"]
    assert db.query("SELECT count(*) AS n FROM engagement_predictions")[0]["n"] == drop["clean"]
    assert ingest.accepted("engagement", day.isoformat())["staged_uri"].startswith(f"s3://{BUCKET}/{prefix}/")

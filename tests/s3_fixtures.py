"""An S3 data root on the moto server, for the tests that run pipelines on S3 (the fixture is registered by
``tests/integration/conftest.py``)."""

from __future__ import annotations

import pytest

from pipelines.settings import get_settings

BUCKET = "ubm-data"


@pytest.fixture
def s3_root(dynamodb_endpoint, monkeypatch, tmp_path):
    """An S3 data root on the moto server (S3 over HTTP on loopback), a fresh prefix per test; yields (a local
    folder to generate into, a function uploading it to the root, (the boto3 client, the prefix))."""
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


def s3_keys(s3, prefix: str, under: str) -> list[str]:
    """The keys under ``prefix/under``, relative to the data root."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/{under}")
    return [o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])]

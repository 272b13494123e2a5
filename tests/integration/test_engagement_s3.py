"""The engagement pipeline with its data root on S3 (moto's S3 over HTTP on loopback): the historical file and
a daily drop read from the bucket, staged runs, models and the report written to it, predictions as with a
local root."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines import db, ingest
from tests.s3_fixtures import BUCKET, s3_keys

pytestmark = pytest.mark.integration


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
    staged = s3_keys(s3, prefix, "engagement/staged/")
    assert any("/posts-2016-03--000.parquet" in k for k in staged) and any(k.endswith("summary.json") for k in staged)

    trained = jobs.train(day, ["linear"], eval_rows=500, valid_rows=500)
    assert "oracle" in trained["table"]  # the truth was read from the bucket
    models = s3_keys(s3, prefix, f"engagement/models/{trained['version']}/")
    assert f"engagement/models/{trained['version']}/linear/weights.npz" in models
    assert f"engagement/models/{trained['version']}/report/learning_curve.png" in models
    jobs.promote("linear", trained["runs"]["linear"])
    scored = jobs.score(day)
    assert scored["posts"] == scored["upserted"] == drop["clean"]
    assert db.query("SELECT count(*) AS n FROM engagement_predictions")[0]["n"] == drop["clean"]
    assert ingest.accepted("engagement", day.isoformat())["staged_uri"].startswith(f"s3://{BUCKET}/{prefix}/")

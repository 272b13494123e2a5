"""Every pipeline end to end with its data root on S3 (moto's S3 over HTTP on loopback): raw drops read from
the bucket, staged runs, state, models and reports written to it, and the same results as a local data root."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines import db, ingest
from pipelines.settings import get_settings
from pipelines.storage import DataRoot
from tests.s3_fixtures import BUCKET, s3_keys

pytestmark = pytest.mark.integration


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
    assert any(k.endswith("events.parquet") for k in s3_keys(s3, prefix, "retention/staged/"))
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
    keys = s3_keys(s3, prefix, "recs/")
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
    keys = s3_keys(s3, prefix, "sociodemo/")
    assert any("/features/" in f"/{k}" and k.endswith("features.parquet") for k in keys)
    assert any(k.startswith(f"sociodemo/models/{trained['version']}/") for k in keys)
    assert ingest.accepted("sociodemo", "targets")["staged_uri"].startswith(f"s3://{BUCKET}/")
    assert Path(get_settings().home).exists()


def test_keystrokes_on_s3(pg_dsn, s3_root):
    """Pages generated into the bucket, read by the pager from the data root, models and predictions written
    back to it; the truth (the oracle) read from the bucket."""
    from pipelines.keystrokes import jobs

    _, _, (s3, prefix) = s3_root
    made = jobs.generate(n_users=10, mean_samples=16, samples_sigma=0.3, seed=3, bad_rate=0.02, test_share=0.2)
    ingested = jobs.ingest("train", made["train_url"], max_bad_share=0.2, min_samples=4, day="2024-05-01")
    assert ingested["rows_valid"] > 0
    trained = jobs.train(made["train_url"], ["logreg"], "typing", 0.25, 7, {}, "2024-05-01", progress=False)
    assert trained["oracle"]  # the generator's truth, read from the bucket
    assert trained["models"]["logreg"].startswith(f"s3://{BUCKET}/{prefix}/")
    jobs.promote("typing", "logreg", training=trained)
    jobs.ingest("test", made["test_url"], max_bad_share=0.5, day="2024-05-01")
    predicted = jobs.predict(made["test_url"], "typing", day="2024-05-01")
    assert predicted["predicted"] > 0 and predicted["truth"]["scored"] > 0
    assert predicted["final_pred"].startswith(f"s3://{BUCKET}/{prefix}/")
    assert db.query("SELECT count(*) AS n FROM keystrokes_predictions")[0]["n"] == predicted["attempts"]
    keys = s3_keys(s3, prefix, "keystrokes/")
    assert any(k.startswith("keystrokes/generated/") and "/pages/" in k for k in keys)
    assert any(k.endswith("final_pred.json") for k in keys) and any(k.endswith("model.json") for k in keys)


def test_tagging_on_s3(pg_dsn, s3_root):
    """Articles generated into the bucket, validated, segmented (the cache on S3), trained, tagged."""
    from pipelines.tagging import jobs

    _, _, (s3, prefix) = s3_root
    start = date(2024, 6, 3)
    made = jobs.generate(seed=5, corpus_articles=240, start=start, days=1, daily_articles=20, bad_rate=0.03)
    assert all(f.startswith(f"s3://{BUCKET}/{prefix}/") for f in made["files"])
    jobs.validate_corpus(0.1)
    jobs.segment("corpus", workers=1)
    trained = jobs.train(start, jobs.train_config(families=["majority", "tfidf_lr"], views=["words"], grid={},
                                                  cv_folds=3, n_jobs=1))
    assert trained["oracle"] and trained["uri"].startswith(f"s3://{BUCKET}/{prefix}/")
    jobs.promote("tfidf_lr_words", trained["runs"]["tfidf_lr_words"])
    jobs.validate(start, 0.1)
    jobs.segment(start, workers=1)
    tagged = jobs.tag(start)
    written = db.query("SELECT count(DISTINCT article_id) AS n FROM tagging_article_tags")[0]["n"]
    assert tagged["articles"] == written > 0
    keys = s3_keys(s3, prefix, "tagging/")
    assert any(k.startswith(f"tagging/models/{trained['version']}/") for k in keys)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_data_root_trees_round_trip(where, tmp_path, request):
    """put_tree / local_tree / rel_of, what every pipeline publishes models and reports with: sub-folders kept,
    a URI of another root refused."""
    if where == "s3":
        request.getfixturevalue("s3_root")
    else:
        root_dir = tmp_path / "root"
        root_dir.mkdir()
    root = DataRoot() if where == "s3" else DataRoot(str(root_dir))
    local = tmp_path / "model"
    (local / "report").mkdir(parents=True)
    (local / "model.json").write_text("{}")
    (local / "report" / "chart.png").write_bytes(b"\x89PNG")
    uri = root.put_tree(local, "demo/models/v1")
    assert uri == root.join("demo/models/v1") and root.rel_of(uri) == "demo/models/v1"
    back = root.local_tree(root.rel_of(uri))
    assert (back / "model.json").read_text() == "{}" and (back / "report" / "chart.png").read_bytes() == b"\x89PNG"
    for other in (None, "", "s3://elsewhere/demo/models/v1", "file:///tmp/demo/models/v1"):
        with pytest.raises(ValueError, match="not under the data root"):
            root.rel_of(other)

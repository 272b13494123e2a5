"""The tagging jobs against the real PostgreSQL and a temporary data root: quarantine and status written by the
ingest contract, segmentation reruns that skip work, training recorded per model in the registry, explicit
promotion, tags upserted in one transaction, reruns identical, an older day never overwriting a newer one."""

from __future__ import annotations

import json
from datetime import date

import pytest

from pipelines import db, ingest
from pipelines.errors import RunRejected
from pipelines.tagging import jobs, schema

pytestmark = pytest.mark.integration

START = date(2024, 6, 3)
SPEC = {"seed": 5, "corpus_articles": 320, "start": START, "days": 2, "daily_articles": 30, "bad_rate": 0.03}
CONFIG = {"families": ["majority", "tfidf_lr"], "views": ["words", "chars"], "grid": {}, "cv_folds": 3}


def _tags(day: date | None = None) -> list[dict]:
    return db.query("SELECT article_id, tag, probability, rank, model_name, model_version, content_hash, as_of, "
                    "tagged_at FROM tagging_article_tags WHERE %(d)s::date IS NULL OR as_of = %(d)s::date "
                    "ORDER BY article_id, tag", {"d": day})


def _quarantine(partition: str) -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'tagging' AND partition_key = %s "
                    "GROUP BY 1", (partition,))
    return {r["reason"]: r["n"] for r in rows}


@pytest.fixture
def trained(pg_dsn, data_root):
    made = jobs.generate(**SPEC)
    jobs.validate_corpus(0.1)
    jobs.segment("corpus", workers=1)
    result = jobs.train(START, jobs.train_config(**CONFIG, n_jobs=1))
    return made, result


def test_validation_writes_every_planted_reason_and_the_status(pg_dsn, data_root):
    made = jobs.generate(**SPEC)
    corpus = jobs.validate_corpus(0.1)
    assert _quarantine("corpus") == made["planted"]["corpus"]
    assert corpus["status"] == "accepted" and corpus["rows_read"] == corpus["rows_valid"] + corpus["rows_quarantined"]
    day = jobs.validate(START, 0.1)
    assert _quarantine(START.isoformat()) == made["planted"][START.isoformat()]
    row = ingest.accepted("tagging", START.isoformat())
    assert row["rows_valid"] == day["rows_valid"] == SPEC["daily_articles"] - made["planted"][START.isoformat()].get(
        "conflicting_id", 0) // 2
    # the NUL of the planted control-character row is kept visible (U+2400), never sent to Postgres as NUL
    nul = db.query("SELECT record->>'body' AS body FROM quarantine WHERE reason = 'control_characters' LIMIT 1")
    assert nul and "\u2400" in nul[0]["body"]


def test_segmenting_again_segments_nothing(pg_dsn, data_root):
    jobs.generate(**SPEC)
    jobs.validate(START, 0.1)
    first = jobs.segment(START, workers=1)
    again = jobs.segment(START, workers=1)
    assert first["segmented"] == first["unique"] > 0 and first["cached"] == 0
    assert again["segmented"] == 0 and again["cached"] == first["unique"]
    assert db.query("SELECT count(*) AS n FROM runs WHERE kind = 'transform' AND status = 'success'")[0]["n"] == 2


def test_training_records_every_model_beside_baseline_and_oracle(trained, data_root):
    _, result = trained
    runs = db.query("SELECT run_id, model_name, model_version, status, artifact_uri FROM runs "
                    "WHERE pipeline = 'tagging' AND kind = 'train' ORDER BY model_name")
    assert [r["model_name"] for r in runs] == ["majority", "tfidf_lr_chars", "tfidf_lr_words"]
    assert {r["status"] for r in runs} == {"success"} and {r["model_version"] for r in runs} == {result["version"]}
    words_run = next(r["run_id"] for r in runs if r["model_name"] == "tfidf_lr_words")
    segments = {r["segment"] for r in db.query("SELECT DISTINCT segment FROM run_metrics WHERE run_id = %s",
                                              (words_run,))}
    assert {"", "model=majority", "model=tfidf_lr_chars", "model=oracle"} <= segments
    assert {f"tag={t}" for t in schema.TAGS} <= segments
    metrics = {r["name"]: r["value"] for r in db.query(
        "SELECT name, value FROM run_metrics WHERE run_id = %s AND segment = ''", (words_run,))}
    oracle = db.query("SELECT value FROM run_metrics WHERE run_id = %s AND segment = 'model=oracle' "
                      "AND name = 'accuracy'", (words_run,))[0]["value"]
    baseline = db.query("SELECT value FROM run_metrics WHERE run_id = %s AND segment = 'model=majority' "
                        "AND name = 'accuracy'", (words_run,))[0]["value"]
    assert baseline + 0.2 < metrics["accuracy"] < oracle
    assert {"cv_accuracy_mean", "cv_macro_f1_std", "cv_misclassified", "macro_f1", "top1_accuracy"} <= set(metrics)
    folder = data_root / "tagging" / "models" / result["version"]
    assert (folder / "models" / "tfidf_lr_words" / "model.joblib").exists()
    report = (folder / "report" / "report.md").read_text()
    assert "## Words or characters?" in report and "(in-sample)" not in report  # segmentation not measured yet
    assert json.loads((folder / "training.json").read_text())["best"] == result["best"]


def test_promotion_is_explicit_then_tags_are_upserted_and_reruns_are_identical(trained):
    with pytest.raises(jobs.NoPromotedModelError):
        jobs.tag(START)
    assert _tags() == []
    promoted = jobs.promote("best", version=trained[1]["version"])
    assert promoted["model_name"] in ("tfidf_lr_words", "tfidf_lr_chars")
    jobs.validate(START, 0.1)
    first = jobs.tag(START)
    rows = _tags(START)
    articles = {r["article_id"] for r in rows}
    assert len(articles) == first["articles"] == first["articles_written"]
    assert first["tags"] == len(rows) >= len(articles)
    assert {r["rank"] for r in rows} >= {1} and all(0 <= r["probability"] <= 1 for r in rows)
    assert {r["tagged_at"].isoformat() for r in rows} == {"2024-06-04T00:00:00+00:00"}  # the interval's end
    assert "editor_tags" in first  # half the generated drop carries editor tags
    again = jobs.tag(START)
    assert _tags(START) == rows and again["tags"] == first["tags"]
    day_row = db.query("SELECT * FROM tagging_days WHERE day = %s", (START,))[0]
    assert day_row["articles_written"] == first["articles"] and day_row["model_name"] == promoted["model_name"]


def test_an_older_day_never_overwrites_a_newer_tagging(trained, data_root):
    jobs.promote("tfidf_lr_words", trained[1]["runs"]["tfidf_lr_words"])
    older, newer = date(2024, 7, 1), date(2024, 7, 2)
    article = {"id": "shared-1", "title": "恒指最新消息", "body": "今日恒指升咗三百點，股票市場好旺，銀行股帶頭。",
               "published_at": "2024-07-01T08:00:00Z", "tags": []}
    edited = {**article, "body": article["body"] + "明星演唱會門票一早賣晒。", "published_at": "2024-07-02T08:00:00Z"}
    other = {**article, "id": "only-older", "body": "球隊今晚主場作客都要贏，教練話入球係關鍵。"}
    for day, rows in ((older, [article, other]), (newer, [edited])):
        folder = data_root / schema.raw_rel_dir(day.isoformat())
        folder.mkdir(parents=True)
        (folder / "a.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        jobs.validate(day, 0.0)
    jobs.tag(newer)
    newest = [r for r in _tags() if r["article_id"] == "shared-1"]
    result = jobs.tag(older)  # a backfill of the older day
    assert result["articles_written"] == 1  # only-older; shared-1 keeps its newer tags
    assert [r for r in _tags() if r["article_id"] == "shared-1"] == newest
    assert {r["as_of"] for r in newest} == {newer}
    assert {r["article_id"] for r in _tags(older)} == {"only-older"}


def test_a_model_on_another_feature_definition_is_refused(trained, monkeypatch):
    from pipelines.tagging import segment

    jobs.promote("tfidf_lr_words")
    jobs.validate(START, 0.1)
    monkeypatch.setattr(segment, "feature_version", lambda: "another-one")
    with pytest.raises(jobs.FeatureMismatchError, match="retrain"):
        jobs.tag(START)
    assert _tags() == []
    # A refusal, recorded as one (retrying cannot help: the DAG fails the task without retry).
    assert db.query("SELECT status, error FROM runs WHERE kind = 'score'")[0]["status"] == "rejected"


def test_a_rejected_redrop_keeps_the_accepted_day(trained, data_root):
    jobs.promote("tfidf_lr_words")
    jobs.validate(START, 0.1)
    accepted = ingest.accepted("tagging", START.isoformat())
    folder = data_root / schema.raw_rel_dir(START.isoformat())
    (folder / "late.jsonl").write_text('{"id": "x", "body": ""}\n' * 500)
    with pytest.raises(RunRejected, match="rows are bad"):
        jobs.validate(START, 0.1)
    assert ingest.accepted("tagging", START.isoformat())["run_id"] == accepted["run_id"]
    assert jobs.tag(START)["articles"] == accepted["rows_valid"]


def test_segmentation_quality_is_recorded_with_a_report(trained, data_root):
    result = jobs.segmentation_quality()
    assert result["table"]["pycantonese"]["boundary_f1"] > 0.93
    assert 0.8 < result["planted"]["kept_whole"] <= 1.0
    run = db.query("SELECT run_id, kind, model_name, artifact_uri FROM runs WHERE kind = 'evaluate'")[0]
    segments = {r["segment"] for r in db.query("SELECT DISTINCT segment FROM run_metrics WHERE run_id = %s",
                                              (run["run_id"],))}
    assert {"", "model=pycantonese", "model=dag_hmm_heldout", "model=characters", "generated"} <= segments
    folder = data_root / schema.REPORTS_REL / "segmentation"
    report = next(folder.glob("*/segmentation.md")).read_text()
    assert "in-sample" in report and next(folder.glob("*/segmentation_f1.png")).exists()
    retrained = jobs.train(START, jobs.train_config(**{**CONFIG, "families": ["majority"]}, n_jobs=1))
    text = (data_root / "tagging" / "models" / retrained["version"] / "report" / "report.md").read_text()
    assert "## Segmentation quality" in text and "pycantonese (in-sample)" in text

import pytest

from pipelines import db, registry
from pipelines.errors import RunRejected

pytestmark = pytest.mark.integration


def test_a_run_records_params_metrics_and_outcome(pg_dsn):
    with registry.track_run("demo", "train", model_name="catboost", model_version="v1",
                            params={"depth": 6}) as run:
        run.log_metrics({"auc": 0.71, "f1": 0.5})
        run.log_metrics({"auc": 0.8}, segment="class=1")
        run.log_metrics({"auc": 0.72})  # overwrite, not duplicate
        run.artifact_uri = "file:///models/v1"
    rows = registry.list_runs("demo")
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["model_name"], row["artifact_uri"]) == ("success", "catboost", "file:///models/v1")
    assert row["metrics"] == {"auc": 0.72, "f1": 0.5}
    assert db.query("SELECT params FROM runs")[0]["params"] == {"depth": 6}


def test_failures_and_rejections_are_recorded_and_reraised(pg_dsn):
    with pytest.raises(ZeroDivisionError), registry.track_run("demo", "train"):
        1 / 0  # noqa: B018
    with pytest.raises(RunRejected), registry.track_run("demo", "ingest"):
        raise RunRejected("too many bad rows")
    statuses = {r["kind"]: (r["status"], r["error"]) for r in registry.list_runs("demo")}
    assert statuses["train"] == ("failed", "ZeroDivisionError: division by zero")
    assert statuses["ingest"] == ("rejected", "too many bad rows")


def test_compare_and_explicit_promotion(pg_dsn):
    ids = {}
    for version, auc in (("v1", 0.70), ("v2", 0.75)):
        with registry.track_run("demo", "train", model_name="m", model_version=version) as run:
            run.log_metrics({"auc": auc})
        ids[version] = str(run.run_id)
    ranking = registry.compare_models("demo", "auc")
    assert [r["model_version"] for r in ranking] == ["v2", "v1"]
    assert registry.promoted_run("demo", "m") is None  # nothing is promoted implicitly
    registry.promote("demo", "m", ids["v1"])
    assert registry.promoted_run("demo", "m")["model_version"] == "v1"
    with pytest.raises(ValueError, match="not a successful demo/other run"):
        registry.promote("demo", "other", ids["v2"])

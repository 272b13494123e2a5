"""The keystroke jobs against PostgreSQL: reproducible training (same data and Params → same versions and
metrics), one registry run per model with the baselines and the oracle beside it, every version compared on a
new holdout without the attempts it trained on, enrolment of new users into an embedding model without
retraining (used by prediction), and the Analyse page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import db
from pipelines.keystrokes import jobs

pytestmark = pytest.mark.integration

BUDGETS = {"embedding": {"epochs": 15}, "random_forest": {"n_estimators": 40}}
DAY = "2024-05-01"


@pytest.fixture
def dataset(pg_dsn, data_root):
    made = jobs.generate(n_users=16, mean_samples=18, samples_sigma=0.5, seed=3, bad_rate=0.02)
    jobs.ingest("train", made["train_url"], max_bad_share=0.2, min_samples=4, day=DAY)
    return made


def _metrics(run_id: str) -> dict:
    rows = db.query("SELECT name, segment, value FROM run_metrics WHERE run_id = %s", (run_id,))
    return {(r["segment"], r["name"]): r["value"] for r in rows}


def test_training_is_reproducible_and_recorded_per_model(dataset):
    first = jobs.train(dataset["train_url"], ["logreg", "random_forest"], "typing", 0.25, 7, BUDGETS, DAY,
                       progress=False)
    second = jobs.train(dataset["train_url"], ["logreg", "random_forest"], "typing", 0.25, 7, BUDGETS, DAY,
                        progress=False)
    assert first["versions"] == second["versions"] and first["training_id"] == second["training_id"]
    for model in ("logreg", "random_forest"):
        a, b = _metrics(first["runs"][model]), _metrics(second["runs"][model])
        assert {k: v for k, v in a.items() if k[0] != "speed"} == {k: v for k, v in b.items() if k[0] != "speed"}
        segments = {segment for segment, _ in a}
        assert {"", "model=chance", "model=majority", "model=oracle", "model=logreg", "model=random_forest",
                "speed"} <= segments
        assert a[("", "accuracy")] == a[(f"model={model}", "accuracy")]
        assert a[("model=chance", "accuracy")] < a[("", "accuracy")] <= a[("model=oracle", "accuracy")] + 0.02
    other = jobs.train(dataset["train_url"], ["logreg"], "typing", 0.25, 8, BUDGETS, DAY, progress=False)
    assert other["versions"]["logreg"] != first["versions"]["logreg"]  # another seed: another version
    history = jobs.history("typing")
    assert sorted(r["model_version"] for r in history) == sorted({*first["versions"].values(),
                                                                   other["versions"]["logreg"]})
    run = db.query("SELECT params, artifact_uri, summary FROM runs WHERE run_id = %s", (first["runs"]["logreg"],))[0]
    assert run["params"]["type"] == "logreg" and run["params"]["holdout_share"] == 0.25
    assert Path(run["artifact_uri"]).joinpath("model.json").is_file()
    assert Path(run["summary"]["report"]).joinpath("report.md").is_file()


def test_compare_scores_every_version_only_on_attempts_it_never_saw(dataset):
    trained = jobs.train(dataset["train_url"], ["logreg", "random_forest"], "typing", 0.25, 7, BUDGETS, DAY,
                         progress=False)
    same = jobs.compare(dataset["train_url"], "typing", 0.25, 7, day=DAY)
    assert {r["version"] for r in same["versions"]} == set(trained["versions"].values())
    assert all(r["excluded_seen"] == 0 and r["n_eval"] == same["holdout"] for r in same["versions"])
    by_type = {r["type"]: r for r in same["versions"]}
    recorded = {m: _metrics(trained["runs"][m])[("", "accuracy")] for m in trained["runs"]}
    assert by_type["logreg"]["accuracy"] == pytest.approx(recorded["logreg"])  # the same holdout, the same score
    other = jobs.compare(dataset["train_url"], "typing", 0.25, 99, day=DAY)  # another holdout
    for row in other["versions"]:
        assert row["excluded_seen"] > 0  # attempts of the new holdout the version trained on are left out
        assert row["n_eval"] + row["excluded_seen"] == other["holdout"]
    evaluated = db.query("SELECT segment FROM run_metrics WHERE run_id = %s AND name = 'accuracy'",
                         (other["run_id"],))
    assert {r["segment"] for r in evaluated} == {f"model={t}@{v}" for t, v in trained["versions"].items()}
    assert Path(other["report"]).joinpath("compare.md").is_file()


def test_new_users_enrol_without_retraining_and_are_predicted(dataset, data_root):
    trained = jobs.train(dataset["train_url"], ["embedding"], "typing", 0.25, 7, BUDGETS, DAY, progress=False)
    jobs.promote("typing", "embedding", training=trained)
    weights = (Path(trained["models"]["embedding"]) / "state_dict.pt").read_bytes()
    newcomers = jobs.generate(n_users=5, mean_samples=24, samples_sigma=0.2, seed=77, bad_rate=0.0,
                              test_min_samples=5, test_share=0.3)
    jobs.ingest("train", newcomers["train_url"], max_bad_share=0.2, min_samples=2, day=DAY)
    enrolled = jobs.enrol(newcomers["train_url"], "typing", day=DAY)
    assert enrolled["enrolled"] == 5 and enrolled["gallery"] == 16 + 5
    rows = db.query("SELECT user_label, samples, cardinality(embedding) AS dim FROM keystrokes_enrolments")
    assert len(rows) == 5 and {r["dim"] for r in rows} == {64}
    assert (Path(trained["models"]["embedding"]) / "state_dict.pt").read_bytes() == weights  # no retraining
    jobs.ingest("test", newcomers["test_url"], max_bad_share=0.5, day=DAY)
    result = jobs.predict(newcomers["test_url"], "typing", day=DAY)
    truth = result["truth"]
    assert truth["scored"] >= 10 and truth["accuracy"] > 5 / 21  # among all 21 enrolled users
    predicted = db.query("SELECT user_label FROM keystrokes_predictions WHERE status = 'predicted'")
    labels = {r["user_label"] for r in rows}
    assert sum(r["user_label"] in labels for r in predicted) / len(predicted) > 0.5


def test_enrol_refuses_a_classifier(dataset):
    trained = jobs.train(dataset["train_url"], ["logreg"], "typing", 0.25, 7, BUDGETS, DAY, progress=False)
    jobs.promote("typing", "logreg", training=trained)
    from pipelines.keystrokes.errors import BadParams

    with pytest.raises(BadParams, match="only the embedding model enrols users without retraining"):
        jobs.enrol(dataset["train_url"], "typing", day=DAY)


def test_analyse_shows_the_first_rows_with_features(dataset, data_root):
    result = jobs.analyse(dataset["train_url"], rows=12, day=DAY)
    csv = Path(result["csv"])
    lines = csv.read_text().splitlines()
    assert len(lines) == 13 and "lat_01" in lines[0] and "backspaces" in lines[0]
    summary = json.loads((csv.parent / "summary.json").read_text())
    assert summary["shown"] == 12 and summary["users"] + summary["users_dropped"] == 16
    assert (csv.parent / "overview.png").is_file() and (csv.parent / "report.md").is_file()
    from pipelines.keystrokes.errors import BadParams

    with pytest.raises(BadParams, match="between 1 and 1000"):
        jobs.analyse(dataset["train_url"], rows=1001)

"""The keystroke DAGs through Airflow (``dag.test``) against real PostgreSQL: generated pages served over HTTP
on loopback; train (ingest → analyse → train → compare → promote) from the Trigger form's Params, then predict
with the promoted version, then predict again (rerun: identical rows); a second training is compared with the
first; bad Params fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import db
from pipelines.keystrokes import jobs
from pipelines.keystrokes.server import serving

pytestmark = pytest.mark.e2e

MODELS = ["logreg", "random_forest", "gru", "embedding"]
BUDGETS = {"gru_epochs": 3, "embedding_epochs": 3, "random_forest_trees": 60, "analyse_rows": 25}


def _states(run) -> dict:
    states: dict = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return states


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_graphs(dagbag):
    train = dagbag.dags["keystrokes_train"]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in train.tasks} == {
        "begin": ["ingest"], "ingest": ["analyse", "train"], "analyse": [], "train": ["compare", "promote"],
        "compare": ["promote"], "promote": []}
    assert train.params["promote"] == ""  # nothing is promoted unless asked
    assert type(train.timetable).__name__ == "NullTimetable"  # on demand, from the Trigger form
    predict = dagbag.dags["keystrokes_predict"]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in predict.tasks} == {
        "begin": ["ingest"], "ingest": ["predict"], "predict": []}
    analyse = dagbag.dags["keystrokes_analyse"]
    assert [t.task_id for t in analyse.tasks] == ["begin", "ingest", "analyse"]
    from pipelines.keystrokes.schema import MODEL_TYPES

    assert train.params.get_param("models").schema["items"]["enum"] == list(MODEL_TYPES)


def test_train_compare_promote_predict(dagbag, pg_dsn, data_root):
    made = jobs.generate(n_users=24, mean_samples=18, seed=11, bad_rate=0.02)
    folder = data_root / "keystrokes" / "generated" / made["name"]
    train_dag, predict_dag = dagbag.dags["keystrokes_train"], dagbag.dags["keystrokes_predict"]
    with serving(folder) as server:
        conf = {"data_url": server.train_url, "models": MODELS, "model_name": "typing", "promote": "logreg",
                "min_samples": 5, **BUDGETS}
        run = train_dag.test(run_conf=conf)
        assert str(run.state) == "success", _states(run)
        assert all(s == {"success"} for s in _states(run).values())
        trained = db.query("SELECT run_id, model_version, params->>'type' AS type, artifact_uri FROM runs "
                           "WHERE pipeline = 'keystrokes' AND kind = 'train' AND status = 'success'")
        assert sorted(r["type"] for r in trained) == sorted(MODELS)
        segments = {r["segment"] for r in db.query("SELECT DISTINCT segment FROM run_metrics JOIN runs USING (run_id) "
                                                   "WHERE kind = 'train'")}
        assert {"", "model=chance", "model=majority", "model=oracle", *(f"model={m}" for m in MODELS)} <= segments
        logreg = next(r for r in trained if r["type"] == "logreg")
        assert db.query("SELECT run_id, promoted_by FROM model_promotions WHERE pipeline = 'keystrokes'") == [
            {"run_id": logreg["run_id"], "promoted_by": "keystrokes_train"}]
        summary = db.query("SELECT summary FROM runs WHERE run_id = %s", (logreg["run_id"],))[0]["summary"]
        report = _local(summary["report"])
        for name in ("report.md", "user_level_perf.csv", "comparison.png", "user_accuracy_hist.png",
                     "user_insights.png", "metrics.csv"):
            assert (report / name).is_file(), name
        analysis = data_root / "keystrokes" / "analyses"
        csv = next(analysis.glob("*/analysis.csv"))
        assert len(csv.read_text().splitlines()) == 1 + 25
        assert db.query("SELECT count(*) AS n FROM quarantine WHERE pipeline = 'keystrokes'")[0]["n"] > 0
        assert db.query("SELECT count(*) AS n FROM runs WHERE pipeline = 'keystrokes' AND kind = 'evaluate' "
                        "AND status = 'success'")[0]["n"] == 1

        run = predict_dag.test(run_conf={"test_url": server.test_url, "model_name": "typing"})
        assert str(run.state) == "success", _states(run)
        rows = db.query("SELECT * FROM keystrokes_predictions ORDER BY position")
        test_doc = json.loads((folder / "test.json").read_text())["attempts"]
        assert [r["position"] for r in rows] == list(range(len(test_doc)))
        assert {r["model_version"] for r in rows} == {logreg["model_version"]}
        predicted = [r for r in rows if r["status"] == "predicted"]
        assert predicted and all(len(r["top_users"]) == 3 and r["top_probabilities"][0] >= r["top_probabilities"][2]
                                 for r in predicted)
        final_rel = db.query("SELECT final_pred_uri FROM keystrokes_prediction_runs")[0]["final_pred_uri"]
        final = json.loads(_local(final_rel).read_text())
        assert final == [r["user_label"] or "Invalid Input" for r in rows]
        assert "Invalid Input" in final  # the generator plants broken test attempts (seed 11)
        truth = json.loads((folder / "truth.json").read_text())["test_labels"]
        scored = [(f, t) for f, t in zip(final, truth, strict=True) if t is not None and f != "Invalid Input"]
        assert sum(f == t for f, t in scored) / len(scored) > 0.3  # chance is 1/24

        run = predict_dag.test(run_conf={"test_url": server.test_url, "model_name": "typing"})  # rerun
        assert str(run.state) == "success", _states(run)
        assert db.query("SELECT * FROM keystrokes_predictions ORDER BY position") == rows

        # A second training with other Params: the compare task re-evaluates both versions on its holdout.
        run = train_dag.test(run_conf={**conf, "models": ["logreg"], "logreg_max_iter": 50, "promote": ""})
        assert str(run.state) == "success", _states(run)
        evaluated = db.query("SELECT segment FROM run_metrics JOIN runs USING (run_id) WHERE kind = 'evaluate' "
                             "AND name = 'accuracy' ORDER BY started_at DESC, segment")
        latest = {r["segment"] for r in evaluated[: len(MODELS) + 1]}
        assert len(latest) == len(MODELS) + 1  # both logreg versions and the other three types
        assert db.query("SELECT run_id FROM model_promotions")[0]["run_id"] == logreg["run_id"]  # unchanged


def test_bad_params_fail_clearly(dagbag, pg_dsn, data_root):
    from airflow.exceptions import ParamValidationError

    train_dag = dagbag.dags["keystrokes_train"]
    with pytest.raises(ParamValidationError):
        train_dag.test(run_conf={"models": ["logreg"]})  # no data_url
    with pytest.raises(ParamValidationError):
        train_dag.test(run_conf={"data_url": "x", "holdout_share": 0.9})
    with pytest.raises(ParamValidationError):
        train_dag.test(run_conf={"data_url": "x", "models": ["lstm"]})
    run = train_dag.test(run_conf={"data_url": "ftp://example.com/user_x.json", "models": ["logreg"]})
    assert str(run.state) == "failed"
    assert _states(run)["ingest"] == {"failed"}  # a bad Param: failed at once, no retry
    made = jobs.generate(n_users=4, mean_samples=30, seed=2, bad_rate=0.0)
    run = dagbag.dags["keystrokes_predict"].test(run_conf={"test_url": made["test_url"], "model_name": "nobody"})
    assert _states(run)["predict"] == {"failed"}  # nothing promoted: says how to promote, no retry
    run = dagbag.dags["keystrokes_predict"].test(run_conf={"test_url": "x.json", "wat": 1})
    assert _states(run)["begin"] == {"failed"}  # an unknown conf key: refused by begin


def test_demo_part(airflow_db, pg_dsn, data_root, tmp_path, capsys):
    """`make demo`'s keystroke part on its small data: both DAGs through Airflow, the table and the files."""
    from pipelines.demo import DemoContext
    from pipelines.keystrokes import demo

    demo.run(DemoContext(log_path=tmp_path / "demo.log", sizes={"keystrokes_users": 20}))
    out = capsys.readouterr().out
    assert "Held-out comparison" in out and "oracle" in out and "Invalid Input" in out
    assert db.query("SELECT count(*) AS n FROM model_promotions WHERE pipeline = 'keystrokes' "
                    "AND promoted_by = 'demo'")[0]["n"] == 1
    run = db.query("SELECT * FROM keystrokes_prediction_runs")[0]
    assert run["predicted"] > 0 and _local(run["final_pred_uri"]).is_file() and _local(run["csv_uri"]).is_file()

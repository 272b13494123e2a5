"""The keystroke part of ``make demo``: generated pages served over HTTP on loopback, ``keystrokes_train``
(ingest → analyse → train every model with small budgets → compare), an explicit promotion of the most
accurate model, then ``keystrokes_predict`` on the test document; the comparison table and where the files are.
About a minute on 2 cores."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.demo import DemoContext, quiet, say, table

MODEL_NAME = "keystrokes"
#: Small budgets so the demo stays around a minute (the DAG's defaults train longer).
BUDGETS = {"gru_epochs": 8, "embedding_epochs": 10, "catboost_iterations": 40, "random_forest_trees": 100,
           "adaboost_estimators": 50, "analyse_rows": 20}


def run(ctx: DemoContext) -> None:
    from pipelines import db
    from pipelines.keystrokes import jobs
    from pipelines.keystrokes.server import serving
    from pipelines.storage import DataRoot

    users = int(ctx.sizes.get("keystrokes_users", 30))
    made = jobs.generate(n_users=users, mean_samples=16, seed=42, bad_rate=0.02)
    say(f"Generated {made['users']} typists: {made['train_attempts']} training attempts on {made['pages']} pages "
        f"({made['users_on_several_pages']} users on several pages), {made['test_attempts']} test attempts; "
        f"broken attempts planted: {sum(made['planted'].values())}")
    now = datetime.now(UTC).replace(microsecond=0)
    with serving(DataRoot().base / "keystrokes" / "generated" / made["name"]) as server:
        say(f"Serving the pages at {server.train_url} (loopback)")
        say("keystrokes_train: ingest → analyse → train 7 models → compare (small budgets) ...")
        ctx.run_once("keystrokes_train", now, {"data_url": server.train_url, "model_name": MODEL_NAME, **BUDGETS})
        trained = db.query("""SELECT run_id, model_version, params->>'type' AS type, summary FROM runs
                              WHERE pipeline = 'keystrokes' AND kind = 'train' AND status = 'success'
                              ORDER BY finished_at DESC LIMIT 7""")
        report = trained[0]["summary"]["report"]
        rows = db.query("""SELECT substr(m.segment, 7) AS model,
                                  round(max(m.value) FILTER (WHERE m.name = 'accuracy')::numeric, 3) AS accuracy,
                                  round(max(m.value) FILTER (WHERE m.name = 'top3_accuracy')::numeric, 3) AS top3,
                                  round(max(m.value) FILTER (WHERE m.name = 'macro_f1')::numeric, 3) AS macro_f1,
                                  round(max(m.value) FILTER (WHERE m.name = 'eer')::numeric, 3) AS eer
                           FROM run_metrics m WHERE m.run_id = %s AND m.segment LIKE 'model=%%'
                           GROUP BY m.segment ORDER BY 2 DESC""", (trained[0]["run_id"],))
        say("\n== Held-out comparison (every model beside chance, the majority user and the oracle) ==\n"
            + table(rows))
        best = max((r for r in rows if r["model"] not in ("oracle", "chance", "majority")),
                   key=lambda r: r["accuracy"])["model"]
        with quiet(ctx.log_path):
            promoted = jobs.promote(MODEL_NAME, best, by="demo")
        say(f"Promoted {best} ({promoted['model_version']}) explicitly, as an operator would with "
            f"`python -m pipelines keystrokes promote --model-name {MODEL_NAME} --type {best}`")
        say("keystrokes_predict: ingest the test document → predict with the promoted version ...")
        ctx.run_once("keystrokes_predict", now, {"test_url": server.test_url, "model_name": MODEL_NAME})
    predicted = db.query("SELECT * FROM keystrokes_prediction_runs ORDER BY as_of DESC LIMIT 1")[0]
    scored = db.query("SELECT summary FROM runs WHERE pipeline = 'keystrokes' AND kind = 'score' "
                      "ORDER BY finished_at DESC LIMIT 1")[0]["summary"].get("truth") or {}
    say(f"\n== keystrokes_predict wrote ==\n{predicted['attempts']} test attempts: {predicted['predicted']} "
        f"identified, {predicted['invalid']} answered 'Invalid Input'"
        + (f"; {scored['correct']} of {scored['scored']} right against the planted truth "
           f"({scored['accuracy']:.1%})" if scored.get("scored") else ""))
    quarantined = db.query("SELECT reason, count(*) AS attempts FROM quarantine WHERE pipeline = 'keystrokes' "
                           "GROUP BY reason ORDER BY 2 DESC")
    say("Quarantined attempts by reason (quarantine):\n" + table(quarantined))
    say("Files:\n"
        f"  report        {report}/report.md (comparison.png, user_level_perf.csv, user_insights.png)\n"
        f"  final_pred    {predicted['final_pred_uri']}\n"
        f"  predictions   {predicted['csv_uri']} (top-3 users and probabilities)\n"
        f"  analysis      {DataRoot().join('keystrokes', 'analyses')}/<partition>/analysis.csv\n"
        "  every version: python -m pipelines keystrokes compare --history")

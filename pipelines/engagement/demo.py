"""The engagement part of ``make demo``: a historical export and three daily drops (with bad rows planted),
the weekly DAG converting the export and training every model with small budgets, an explicit promotion of
the model with the best validation error, then the daily DAG converting and scoring each new day."""

from __future__ import annotations

from datetime import date, timedelta
from datetime import time as dtime

from pipelines.demo import DemoContext, say, table

START, HISTORY_DAYS, DAILY_DAYS = date(2016, 1, 1), 118, 3  # history to 2016-04-27, then 28-30 April daily
#: Small budgets, so this part stays about a minute on 2 cores (the weekly DAG's defaults are far larger).
TRAIN_CONF = {"models": ["linear", "catboost", "minilm", "neural"], "linear_epochs": 2, "catboost_iterations": 80,
              "catboost_sample_rows": 6_000, "minilm_sample_rows": 600, "neural_epochs": 2, "neural_workers": 2,
              "eval_rows": 1_000, "valid_rows": 600, "promote": ""}


def run(ctx: DemoContext) -> None:
    from pipelines import db
    from pipelines.engagement import jobs

    posts_per_day = ctx.sizes.get("engagement_posts_per_day", 250)
    with ctx.quietly():
        made = jobs.generate(start=START, days=HISTORY_DAYS + DAILY_DAYS, history_days=HISTORY_DAYS,
                             posts_per_day=posts_per_day, bad_row_rate=0.005, seed=42)
    last_history = START + timedelta(days=HISTORY_DAYS - 1)
    say(f"Generated {made['posts']:,} Eluvio-format posts ({made['bytes'] / 1e6:.1f} MB of CSV): one historical "
        f"export to {last_history} and {DAILY_DAYS} daily drops; bad rows planted: {made['bad']}")
    say(f"engagement_train_weekly as of {last_history}: convert the export (one mapped task per file), then the "
        "baselines, linear (streamed SGD), CatBoost, MiniLM embeddings + ridge and the torch model over an "
        "iterable Parquet dataset ...")
    ctx.run_once("engagement_train_weekly", _weekly_logical(last_history),
                 {**TRAIN_CONF, "day": last_history.isoformat()})
    chosen = db.query("""SELECT r.model_name, m.value FROM runs r JOIN run_metrics m USING (run_id)
                         WHERE r.pipeline = 'engagement' AND r.kind = 'train' AND r.status = 'success'
                           AND m.name = 'valid_rmse_log1p' AND m.segment = ''
                           AND r.model_name NOT IN ('mean', 'author_mean')
                         ORDER BY r.finished_at DESC, m.value LIMIT 4""")
    best = min(chosen, key=lambda r: r["value"])["model_name"]
    with ctx.quietly():
        promoted = jobs.promote(best, by="make demo")
    say(f"Promoting {best} explicitly (the lowest validation RMSE; the test months stay untouched by the "
        f"choice): version {promoted['model_version']}")
    days = [last_history + timedelta(days=i + 1) for i in range(DAILY_DAYS)]
    ctx.run_days("engagement_daily", days, at=dtime(2))
    say("\n== engagement wrote ==")
    say("Held-out test month, every model beside the baselines and the oracle (log1p scale; top_decile_prec = "
        "share of the predicted top 10% that really took off):\n" + table(jobs.comparison()))
    quarantined = db.query("SELECT reason, count(*) AS rows FROM quarantine WHERE pipeline = 'engagement' "
                           "GROUP BY reason ORDER BY 2 DESC")
    say("Quarantined rows by reason (quarantine):\n" + table(quarantined))
    scored = db.query("""SELECT as_of, count(*) AS posts, round(avg(predicted_up_votes)::numeric, 2) AS mean_pred,
                                round(max(predicted_up_votes)::numeric, 1) AS max_pred, min(model_name) AS model,
                                min(model_version) AS version
                         FROM engagement_predictions GROUP BY as_of ORDER BY as_of""")
    say("engagement_predictions:\n" + table(scored))
    report = db.query("SELECT summary->>'report' AS report FROM runs WHERE pipeline = 'engagement' AND kind = "
                      "'train' AND status = 'success' ORDER BY finished_at DESC LIMIT 1")
    if report:
        say(f"Report with charts (learning curves, comparison, calibration, drift): {report[0]['report']}")


def _weekly_logical(as_of: date):
    """A logical date whose weekly interval ends the day after ``as_of`` (the ``day`` Param names it anyway)."""
    from datetime import UTC, datetime

    return datetime.combine(as_of + timedelta(days=1), dtime(4), tzinfo=UTC)

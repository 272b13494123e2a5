"""The socio-demographic part of ``make demo``: nine daily runs (scoring skipped until a promotion), one weekly
training that promotes CatBoost explicitly, then a daily run that scores every user."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from pipelines.demo import DemoContext, say, table


def run(ctx: DemoContext) -> None:
    from pipelines import db
    from pipelines.sociodemo import jobs

    n_users = ctx.sizes.get("sociodemo_users", 3_000)
    start, n_days = date(2024, 6, 1), 10
    with ctx.quietly():
        made = jobs.generate(seed=42, n_users=n_users, n_videos=max(2000, n_users // 2), start=start, days=n_days,
                             bad_row_rate=0.002, bad_target_rate=0.01)
    days = [start + timedelta(days=i) for i in range(n_days)]
    say(f"Generated {made['events']:,} Rutube-format viewing events of {n_users:,} users over {n_days} days "
        f"(bad rows planted: {made['bad_rows']})")
    ctx.run_days("sociodemo_daily", days[:-1], at=dtime(1))
    say("sociodemo_train_weekly: TopClass, CatBoost and DeepSets + Time2Vec on the held-out split "
        "(promote=catboost) ...")
    ctx.run_once("sociodemo_train_weekly", datetime.combine(days[-1], dtime(3), tzinfo=UTC),
                 {"promote": "catboost", "catboost_iterations": 300, "deepsets_max_epochs": 6})
    ctx.run_days("sociodemo_daily", days[-1:], at=dtime(1))
    say("\n== sociodemo wrote ==")
    rows = db.query("""SELECT r.model_name AS model,
                              round(max(m.value) FILTER (WHERE m.name = 'contest_score')::numeric, 3) AS contest_score,
                              round(max(m.value) FILTER (WHERE m.name = 'sex_roc_auc')::numeric, 3) AS sex_roc_auc,
                              round(max(m.value) FILTER (WHERE m.name = 'age_f1_weighted')::numeric, 3)
                                  AS age_f1_weighted,
                              round(max(m.value) FILTER (WHERE m.name = 'share_of_oracle_contest_score')::numeric, 3)
                                  AS share_of_oracle
                       FROM runs r JOIN run_metrics m USING (run_id)
                       WHERE r.pipeline = 'sociodemo' AND r.kind = 'train' AND r.status = 'success'
                         AND m.segment = ''
                       GROUP BY r.model_name ORDER BY 2 DESC""")
    oracle = db.query("""SELECT round(max(m.value)::numeric, 3) AS v FROM run_metrics m JOIN runs r USING (run_id)
                         WHERE r.pipeline = 'sociodemo' AND m.segment = 'oracle' AND m.name = 'contest_score'""")
    say(f"Held-out users, every model beside the oracle (contest score ceiling {oracle[0]['v']}; max 3):\n"
        + table(rows))
    promoted = db.query("SELECT model_name, promoted_by FROM model_promotions WHERE pipeline = 'sociodemo'")
    say("Promoted (explicitly): " + ", ".join(f"{p['model_name']} by {p['promoted_by']}" for p in promoted))
    scored = db.query("""SELECT count(*) AS users, round(avg(sex_proba)::numeric, 3) AS mean_p_male,
                                min(model_version) AS model_version, min(as_of) AS as_of
                         FROM sociodemo_predictions""")
    say("sociodemo_predictions:\n" + table(scored))

"""The retention part of ``make demo``: days of tracker drops ending on 2017-04-09 through ``retention_daily``
(enough for the seed's Q1 about 2017-04-01), then what it wrote."""

from __future__ import annotations

from datetime import date, timedelta

from pipelines.demo import DemoContext, say, table

DEMO_END = date(2017, 4, 9)  # the seed's Q1 asks about installs on 04-01 and use until 04-08


def run(ctx: DemoContext) -> None:
    from pipelines import db
    from pipelines.retention import jobs
    from pipelines.retention.generate import RetentionDataSpec
    from pipelines.retention.q1 import q1_postgres

    installs = ctx.sizes.get("installs_per_day", 150)
    days = ctx.sizes.get("days", 15)
    spec = RetentionDataSpec(start=DEMO_END - timedelta(days=days - 1), days=days, installs_per_day=installs,
                             existing_users=10 * installs, bad_row_rate=0.004)
    with ctx.quietly():
        generated = jobs.generate(spec)
    say(f"Generated {generated['events']:,} tracker events over {spec.days} days "
        f"({sum(generated['bad'].values())} bad rows planted: {generated['bad']})")
    ctx.run_days("retention_daily", spec.dates())
    report = jobs.report(limit=5)
    say("\n== retention_daily wrote ==")
    say("Days loaded (retention_day_loads):\n" + table(report["days"]))
    say("Latest complete 7-day cohorts (cohort_retention):\n" + table(report["cohorts"]))
    say("Latest daily analytics (daily_event_stats):\n" + table(report["daily"]))
    quarantined = db.query("SELECT reason, count(*) AS rows FROM quarantine WHERE pipeline = 'retention' "
                           "GROUP BY reason ORDER BY 2 DESC")
    say("Quarantined rows by reason (quarantine):\n" + table(quarantined))
    say("The seed's Q1 (installed 2017-04-01, used 2017-04-02 .. 2017-04-08):\n  "
        + q1_postgres(date(2017, 4, 1), 7).describe())

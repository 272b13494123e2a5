"""The operations part of ``make demo`` (runs after the pipelines' parts): every training and evaluation run
gets its self-contained HTML report, then the demo says what the alerts table holds and where the page is."""

from __future__ import annotations

from pipelines import db


def run(ctx) -> None:
    from pipelines.demo import say, table
    from pipelines.ops import jobs
    from pipelines.ops.config import URL_PREFIX

    runs = jobs.runs_to_report(missing_only=True)
    say(f"Writing the HTML report of {len(runs)} training/evaluation run(s) beside their artifacts ...")
    done = jobs.render_reports(runs)
    if done["failed"]:
        say("Reports that could not be written:\n" + table([{"run": k, "why": v} for k, v in done["failed"].items()]))
    by_pipeline: dict[str, int] = {}
    for uri in done["written"].values():
        pipeline = uri.split("/models/")[0].rsplit("/", 1)[-1] if "/models/" in uri else "other"
        by_pipeline[pipeline] = by_pipeline.get(pipeline, 0) + 1
    say("Reports written:\n" + table([{"pipeline": p, "reports": n} for p, n in sorted(by_pipeline.items())]))
    alerts = db.query("SELECT kind, severity, count(*) AS alerts FROM alerts GROUP BY 1, 2 ORDER BY 1, 2")
    say("Alerts raised during the demo (alerts table):\n" + table(alerts))
    say(f"The operations page: `make airflow`, then http://localhost:8080 → 'Pipelines' in the navigation "
        f"(or http://localhost:8080{URL_PREFIX}/).")

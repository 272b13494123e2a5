"""The retention pipeline's steps, as the DAG's tasks and the CLI call them. Each is idempotent per day."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, timedelta

from pipelines import db, registry
from pipelines.days import as_day as _day
from pipelines.days import day_interval as _interval
from pipelines.errors import RunRejected
from pipelines.migrate import ensure_schema
from pipelines.retention import analytics, ingest, schema
from pipelines.retention.generate import RetentionDataSpec, write_days
from pipelines.settings import get_settings, pg_dsn
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)


def generate(spec: RetentionDataSpec | None = None, **overrides) -> dict:
    """Write generated tracker drops into the data root (local roots only)."""
    spec = spec or RetentionDataSpec(**overrides)
    root = DataRoot()
    if root.is_s3:
        raise ValueError("generate writes to a local data root; upload the drops yourself for S3")
    result = write_days(spec, root.base)
    result["spec"] = {k: str(v) for k, v in asdict(spec).items()}
    return result


def validate(day: str | date, max_bad_share: float | None = None) -> dict:
    """Validate and stage a day's drop; on rejection store the quarantine, record it, and raise."""
    day = _day(day)
    threshold = get_settings().max_bad_share if max_bad_share is None else max_bad_share
    ensure_schema(pg_dsn())
    root = DataRoot()
    with registry.track_run(schema.PIPELINE, "ingest", params={"day": day, "max_bad_share": threshold},
                            interval=_interval(day)) as run:
        try:
            result = ingest.validate_day(day, root, threshold)
        except RunRejected:
            if root.exists(f"{schema.staging_rel_dir(day)}/summary.json"):
                ingest.record_rejection(day, root, str(run.run_id))
            raise
        finally:
            run.artifact_uri = root.join(schema.staging_rel_dir(day))
        run.summary = result.as_dict()
        run.log_metrics({"rows_read": result.rows_read, "rows_valid": result.rows_valid,
                         "rows_bad": result.rows_bad, "bad_share": result.bad_share})
        run.log_metrics({f"quarantined_{r}": n for r, n in result.reasons.items()}, segment=f"day={day}")
    return {**result.as_dict(), "run_id": str(run.run_id)}


def load(day: str | date, run_id: str | None = None) -> dict:
    """Replace the day's events and derived per-user rows (one transaction)."""
    ensure_schema(pg_dsn())
    return ingest.load_day(_day(day), run_id=run_id)


def cohorts(day: str | date, affected_install_dates: list[str] | None = None) -> dict:
    """Recompute the cohorts a load of ``day`` can have changed."""
    dates = analytics.dates_to_refresh(_day(day), affected_install_dates or [])
    return {"cohorts_refreshed": analytics.refresh_cohorts(dates), "dates": [d.isoformat() for d in dates]}


def daily_analytics(day: str | date, affected_install_dates: list[str] | None = None) -> dict:
    """Recompute the day's Q2 analytics (and days whose new-user counts moved)."""
    days = sorted({_day(day), *(_day(d) for d in affected_install_dates or [])})
    return {"days_refreshed": analytics.refresh_daily_analytics(days)}


def run_day(day: str | date, max_bad_share: float | None = None) -> dict:
    """Every step for one day, in order (what one DAG run does)."""
    validated = validate(day, max_bad_share)
    loaded = load(day, validated["run_id"])
    affected = loaded["affected_install_dates"]
    return {"validate": validated, "load": loaded, "cohorts": cohorts(day, affected),
            "analytics": daily_analytics(day, affected)}


def run_range(start: str | date, end: str | date, max_bad_share: float | None = None) -> list[dict]:
    """Days ``start`` .. ``end`` (both included), in order: a backfill without Airflow."""
    from tqdm import tqdm

    first, last = _day(start), _day(end)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [run_day(d, max_bad_share) for d in tqdm(days, desc="retention days", unit="day", disable=None)]


def report(limit: int = 10) -> dict:
    """What the pipeline has written: load status, latest cohorts, latest daily stats."""
    ensure_schema(pg_dsn())
    return {
        "days": db.query("SELECT status, count(*) AS days, sum(rows_loaded) AS events, "
                         "sum(rows_quarantined) AS quarantined FROM retention_day_loads GROUP BY status"),
        "cohorts": db.query("SELECT install_date, cohort_size, retained_7d_users, round(retention_7d::numeric, 3) "
                            "AS retention_7d, round(day1_retention::numeric, 3) AS d1, "
                            "round(day30_retention::numeric, 3) AS d30 FROM cohort_retention "
                            "WHERE retention_7d IS NOT NULL ORDER BY install_date DESC LIMIT %s", (limit,)),
        "daily": db.query("SELECT day, events, active_users, new_users, returning_users, "
                          "round(events_per_user_mean::numeric, 2) AS ev_per_user FROM daily_event_stats "
                          "ORDER BY day DESC LIMIT %s", (limit,)),
    }

"""The retention pipeline's steps, as the DAG's tasks and the CLI call them. Each is idempotent per day."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, timedelta

from pipelines import db
from pipelines import ingest as ingest_contract
from pipelines.days import as_day as _day
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


def drop_ready(day: str | date) -> bool:
    """Whether the day's drop has arrived (what ``wait_for_drop`` pokes)."""
    return ingest_contract.drop_ready(DataRoot(), schema.raw_rel_dir(_day(day)))


def validate(day: str | date, max_bad_share: float | None = None) -> dict:
    """Validate and stage a day's drop under the ingest contract; past the threshold, record why and raise."""
    day = _day(day)
    threshold = get_settings().max_bad_share if max_bad_share is None else max_bad_share
    result = ingest.validate_day(day, DataRoot(), threshold)
    return {**result.as_dict(), "day": day.isoformat()}


def load(day: str | date) -> dict:
    """Replace the day's events and derived per-user rows with its accepted run (one transaction), then apply
    the staging retention policy (loaded days' staged runs are kept ``keep_staged_days``)."""
    ensure_schema(pg_dsn())
    loaded = ingest.load_day(_day(day))
    loaded["pruned"] = prune(_day(day))["removed"]
    return loaded


def prune(day: date) -> dict:
    """Staging retention, for days older than ``PIPELINES_KEEP_STAGED_DAYS`` before ``day``: every attempt but
    the accepted run goes, and the accepted run too once the day is loaded (its rows are in Postgres; reloading
    such a day re-ingests its raw drop). Newer days keep their newest other attempt for inspection."""
    cutoff = (day - timedelta(days=get_settings().keep_staged_days)).isoformat()
    removed = ingest_contract.prune_staging(schema.PIPELINE, keep_attempts=0, before=cutoff)["removed"]
    loaded = db.query("""SELECT p.partition_key FROM ingest_partitions p
                         JOIN retention_day_loads l ON l.day = p.partition_key::date AND l.run_id = p.run_id
                         WHERE p.pipeline = %s AND p.partition_key < %s AND p.staged_uri IS NOT NULL""",
                      (schema.PIPELINE, cutoff))
    for row in loaded:
        removed += ingest_contract.prune_staging(schema.PIPELINE, keep_attempts=0, drop_accepted=True,
                                                 only=row["partition_key"])["removed"]
    removed += ingest_contract.prune_staging(schema.PIPELINE, keep_attempts=1)["removed"]
    return {"removed": removed}


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
    loaded = load(day)
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

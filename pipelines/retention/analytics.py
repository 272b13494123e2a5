"""Cohort retention (Q1 generalised) and daily raw-event analytics (Q2), recomputed per affected date.

Definitions (all days are UTC calendar days, windows include both ends):

* a user's **install date** D is the day of their earliest ``FIRST_INSTALL`` event;
* the **cohort** of D is every user whose install date is D;
* **active on day X**: at least one event of any name on X;
* ``retained_7d_users``: cohort members active at least once in D+1 .. D+7 (the seed's Q1);
* ``active_dN_users`` / ``dayN_retention``: members active exactly on D+N (N = 1, 7, 30).

A figure whose window contains a day that is not loaded yet is NULL, never 0: "unknown", not "nobody".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta

from pipelines import db

log = logging.getLogger(__name__)

_COHORTS = """
WITH cohort AS (
    SELECT uid, install_date FROM user_install WHERE install_date = ANY(%(dates)s::date[])
), activity AS (
    SELECT c.install_date, c.uid, a.activity_date - c.install_date AS day_n
    FROM cohort c
    JOIN user_activity_day a ON a.uid = c.uid
     AND a.activity_date BETWEEN c.install_date + 1 AND c.install_date + 30
), sizes AS (
    SELECT install_date, count(*) AS cohort_size FROM cohort GROUP BY install_date
), active AS (
    SELECT install_date,
           count(*) FILTER (WHERE day_n = 1)  AS d1,
           count(*) FILTER (WHERE day_n = 7)  AS d7,
           count(*) FILTER (WHERE day_n = 30) AS d30,
           count(DISTINCT uid) FILTER (WHERE day_n BETWEEN 1 AND 7) AS r7
    FROM activity GROUP BY install_date
), observed AS (
    SELECT s.install_date,
           count(l.day) FILTER (WHERE l.day = s.install_date + 1) = 1 AS has_d1,
           count(l.day) FILTER (WHERE l.day = s.install_date + 7) = 1 AS has_d7,
           count(l.day) FILTER (WHERE l.day = s.install_date + 30) = 1 AS has_d30,
           count(l.day) FILTER (WHERE l.day BETWEEN s.install_date + 1 AND s.install_date + 7) = 7 AS has_w7,
           count(l.day) AS days_observed
    FROM sizes s
    LEFT JOIN retention_day_loads l
      ON l.status = 'loaded' AND l.day BETWEEN s.install_date + 1 AND s.install_date + 30
    GROUP BY s.install_date
)
INSERT INTO cohort_retention (install_date, cohort_size, active_d1_users, active_d7_users, active_d30_users,
                              retained_7d_users, day1_retention, day7_retention, day30_retention, retention_7d,
                              days_observed, computed_at)
SELECT s.install_date, s.cohort_size,
       CASE WHEN o.has_d1 THEN coalesce(a.d1, 0) END,
       CASE WHEN o.has_d7 THEN coalesce(a.d7, 0) END,
       CASE WHEN o.has_d30 THEN coalesce(a.d30, 0) END,
       CASE WHEN o.has_w7 THEN coalesce(a.r7, 0) END,
       CASE WHEN o.has_d1 THEN coalesce(a.d1, 0)::float8 / s.cohort_size END,
       CASE WHEN o.has_d7 THEN coalesce(a.d7, 0)::float8 / s.cohort_size END,
       CASE WHEN o.has_d30 THEN coalesce(a.d30, 0)::float8 / s.cohort_size END,
       CASE WHEN o.has_w7 THEN coalesce(a.r7, 0)::float8 / s.cohort_size END,
       o.days_observed, now()
FROM sizes s JOIN observed o USING (install_date) LEFT JOIN active a USING (install_date)
"""

_DAILY_STATS = """
WITH per_user AS (
    SELECT a.uid, a.events, (i.install_date = a.activity_date) AS is_new
    FROM user_activity_day a LEFT JOIN user_install i USING (uid)
    WHERE a.activity_date = %(day)s
)
INSERT INTO daily_event_stats (day, events, active_users, new_users, returning_users, events_per_user_mean,
                               events_per_user_p50, events_per_user_p90, events_per_user_p99,
                               events_per_user_max, sessions, computed_at)
SELECT %(day)s, sum(events), count(*), count(*) FILTER (WHERE is_new),
       count(*) FILTER (WHERE is_new IS NOT TRUE), avg(events),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY events),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY events),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY events),
       max(events),
       (SELECT count(DISTINCT session_id) FROM piwik_track WHERE event_date = %(day)s),
       now()
FROM per_user
HAVING count(*) > 0
"""

_TOP_EVENTS = """
INSERT INTO daily_top_events (day, rank, event_name, events, users)
SELECT %(day)s, rank, event_name, events, users FROM (
    SELECT event_name, count(*) AS events, count(DISTINCT uid) AS users,
           row_number() OVER (ORDER BY count(*) DESC, event_name) AS rank
    FROM piwik_track WHERE event_date = %(day)s GROUP BY event_name
) t WHERE rank <= %(top)s
"""

_PLATFORMS = """
INSERT INTO daily_platform_stats (day, platform, active_users, events)
SELECT %(day)s, coalesce(platform, 'unknown'), count(DISTINCT uid), count(*)
FROM piwik_track WHERE event_date = %(day)s GROUP BY 2
"""


def dates_to_refresh(day: date, affected: Iterable[str | date] = ()) -> list[date]:
    """Cohorts a load of ``day`` can change: its own horizon plus cohorts whose membership moved."""
    dates = {day - timedelta(days=k) for k in range(31)}
    dates |= {d if isinstance(d, date) else date.fromisoformat(d) for d in affected}
    return sorted(dates)


def refresh_cohorts(dates: list[date], dsn: str | None = None) -> int:
    """Recompute the cohort rows of ``dates`` in one transaction; returns how many cohorts exist among them."""
    with db.transaction(dsn) as cur:
        # Serialised with loads: a refresh sees every load committed before it, so the last one wins correctly
        # whatever order a backfill runs the days in.
        db.advisory_xact_lock(cur, "retention.derived")
        cur.execute("DELETE FROM cohort_retention WHERE install_date = ANY(%s::date[])", (dates,))
        cur.execute(_COHORTS, {"dates": dates})
        return cur.rowcount


def refresh_daily_analytics(days: list[date], top_n: int = 10, dsn: str | None = None) -> int:
    """Recompute daily stats, top events and platform split for ``days``; returns days with data."""
    written = 0
    with db.transaction(dsn) as cur:
        db.advisory_xact_lock(cur, "retention.derived")
        for table in ("daily_event_stats", "daily_top_events", "daily_platform_stats"):
            cur.execute(f"DELETE FROM {table} WHERE day = ANY(%s::date[])", (days,))
        for day in days:
            cur.execute(_DAILY_STATS, {"day": day})
            written += cur.rowcount
            cur.execute(_TOP_EVENTS, {"day": day, "top": top_n})
            cur.execute(_PLATFORMS, {"day": day})
    return written

"""Retention analytics: raw tracker events, derived user-day tables, cohorts and daily analytics.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("""
    -- The tracker's event log, named as in the seed so its SQL runs unchanged. One calendar day (UTC) is
    -- replaced as a unit by each daily load.
    CREATE TABLE piwik_track (
        event_id       text,
        uid            text NOT NULL,
        time           timestamptz NOT NULL,
        event_name     text NOT NULL,
        event_category text,
        idsite         integer,
        platform       text,
        app_version    text,
        country        text,
        session_id     text,
        event_date     date NOT NULL
    );
    CREATE INDEX piwik_track_event_date ON piwik_track (event_date);
    CREATE INDEX piwik_track_installs ON piwik_track (uid, time) WHERE event_name = 'FIRST_INSTALL';

    -- Per-day load bookkeeping: which days are present (cohort windows over missing days stay NULL).
    CREATE TABLE retention_day_loads (
        day              date PRIMARY KEY,
        status           text NOT NULL CHECK (status IN ('loaded', 'rejected')),
        files            integer NOT NULL,
        rows_read        bigint NOT NULL,
        rows_loaded      bigint NOT NULL,
        rows_quarantined bigint NOT NULL,
        bad_share        double precision NOT NULL,
        reasons          jsonb NOT NULL DEFAULT '{}'::jsonb,
        run_id           uuid,
        loaded_at        timestamptz NOT NULL DEFAULT now()
    );

    -- Derived, much smaller than the log: one row per user and active day.
    CREATE TABLE user_activity_day (
        uid           text NOT NULL,
        activity_date date NOT NULL,
        events        integer NOT NULL,
        PRIMARY KEY (activity_date, uid)
    );
    CREATE INDEX user_activity_day_uid ON user_activity_day (uid, activity_date);

    -- Each user's install date: the day of their earliest FIRST_INSTALL event.
    CREATE TABLE user_install (
        uid          text PRIMARY KEY,
        install_date date NOT NULL
    );
    CREATE INDEX user_install_date ON user_install (install_date);

    -- Q1 generalised. NULL means "window not fully loaded yet", never "nobody came back".
    CREATE TABLE cohort_retention (
        install_date      date PRIMARY KEY,
        cohort_size       integer NOT NULL,
        active_d1_users   integer,
        active_d7_users   integer,
        active_d30_users  integer,
        retained_7d_users integer,          -- active at least once in D+1 .. D+7
        day1_retention    double precision,
        day7_retention    double precision,
        day30_retention   double precision,
        retention_7d      double precision,
        days_observed     integer NOT NULL, -- loaded days among D+1 .. D+30
        computed_at       timestamptz NOT NULL DEFAULT now()
    );

    -- Q2: raw event analytics per day.
    CREATE TABLE daily_event_stats (
        day                  date PRIMARY KEY,
        events               bigint NOT NULL,
        active_users         integer NOT NULL,
        new_users            integer NOT NULL,
        returning_users      integer NOT NULL,
        events_per_user_mean double precision,
        events_per_user_p50  double precision,
        events_per_user_p90  double precision,
        events_per_user_p99  double precision,
        events_per_user_max  integer,
        sessions             integer,
        computed_at          timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE daily_top_events (
        day        date NOT NULL,
        rank       integer NOT NULL,
        event_name text NOT NULL,
        events     bigint NOT NULL,
        users      integer NOT NULL,
        PRIMARY KEY (day, rank)
    );
    CREATE TABLE daily_platform_stats (
        day          date NOT NULL,
        platform     text NOT NULL,
        active_users integer NOT NULL,
        events       bigint NOT NULL,
        PRIMARY KEY (day, platform)
    );
    """)

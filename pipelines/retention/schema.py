"""The ``piwik_track`` input contract: columns, known event names and where a day's drop lives."""

from __future__ import annotations

import os
from datetime import date

PIPELINE = "retention"

REQUIRED_COLUMNS = ("uid", "time", "event_name")
OPTIONAL_COLUMNS = ("event_id", "event_category", "idsite", "platform", "app_version", "country", "session_id")
TABLE_COLUMNS = ("event_id", "uid", "time", "event_name", "event_category", "idsite", "platform", "app_version",
                 "country", "session_id", "event_date")

INSTALL_EVENT = "FIRST_INSTALL"
#: Event names the app emits. Anything else is quarantined as ``unknown_event``; extend with
#: ``PIPELINES_RETENTION_EXTRA_EVENTS`` (comma-separated) when the app ships a new event.
EVENT_NAMES = frozenset({
    INSTALL_EVENT, "APP_OPEN", "SCREEN_VIEW", "SEARCH", "PLAY", "SHARE", "PURCHASE", "PUSH_OPEN", "SETTINGS",
    "LOGIN", "LOGOUT", "UNINSTALL",
})

#: Quarantine reasons, in the order they are checked (a row gets the first that applies).
REASONS = ("malformed_csv", "control_characters", "missing_uid", "bad_time", "unknown_event", "outside_day",
           "duplicate")
#: Reasons that do not count towards the bad-row share (a re-sent event is not bad data, just repeated).
BENIGN_REASONS = frozenset({"duplicate", "empty_file"})  # counted and quarantined, not bad rows

#: Retention horizon: a day's load can change the cohorts of the previous this-many days.
HORIZON_DAYS = 30


def known_events() -> frozenset[str]:
    extra = {e.strip() for e in os.environ.get("PIPELINES_RETENTION_EXTRA_EVENTS", "").split(",") if e.strip()}
    return EVENT_NAMES | extra


def raw_rel_dir(day: date) -> str:
    """Where the tracker drops a day's export(s) under the data root."""
    return f"raw/piwik_track/dt={day:%Y-%m-%d}"

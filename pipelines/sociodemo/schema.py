"""The socio-demographic pipeline's contracts: the contest's raw formats, staged formats, paths and reasons.

Raw input (the Rutube Junior ML contest's formats), under the data root:

* ``sociodemo/raw/events/dt=YYYY-MM-DD/*.parquet``, one or more files per UTC day: ``event_timestamp``
  (timestamp, UTC; a naive timestamp is read as UTC), ``region``, ``ua_device_type``, ``ua_client_type``,
  ``ua_os``, ``ua_client_name`` (strings), ``total_watchtime`` (int, **seconds** watched in the event),
  ``rutube_video_id`` (string, ``video_123456``), ``viewer_uid`` (int)
* ``sociodemo/raw/video_info/video_info.parquet``: ``rutube_video_id``, ``title``, ``category`` (strings),
  ``duration`` (int, **milliseconds**, as in the contest), ``author_id`` (int)
* ``sociodemo/raw/targets/targets.parquet``: ``viewer_uid`` (int), ``age`` (int, years), ``sex``
  (``male``/``female``), ``age_class`` (int 0-3, see :data:`AGE_CLASSES`)

Staged (``sociodemo/staged/dt=YYYY-MM-DD/``): ``events.parquet`` (the clean events joined to the catalogue,
columns :data:`STAGED_EVENT_TYPES`), ``quarantine.parquet`` (``reason``, ``source``, ``record`` as JSON) and
``summary.json`` (counts, status, and the SHA-256 of ``events.parquet``, which the feature state uses to notice
a re-staged day). Targets are staged under ``sociodemo/staged/targets/``.

Days and hours are UTC calendar days and hours (:data:`pipelines.settings.TIMEZONE`).
"""

from __future__ import annotations

from datetime import date

PIPELINE = "sociodemo"

#: Raw event columns and their Arrow types, in the contest's order.
RAW_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_timestamp", "timestamp[ms, tz=UTC]"),
    ("region", "string"),
    ("ua_device_type", "string"),
    ("ua_client_type", "string"),
    ("ua_os", "string"),
    ("ua_client_name", "string"),
    ("total_watchtime", "int64"),
    ("rutube_video_id", "string"),
    ("viewer_uid", "int64"),
)
VIDEO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rutube_video_id", "string"),
    ("title", "string"),
    ("category", "string"),
    ("duration", "int64"),
    ("author_id", "int64"),
)
TARGET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("viewer_uid", "int64"),
    ("age", "int32"),
    ("sex", "string"),
    ("age_class", "int32"),
)

#: Staged event columns and their DuckDB types: the raw columns, typed, plus the catalogue's ``category``,
#: ``author_id`` and ``video_duration`` (ms), the event's ``event_date`` and ``watch_fraction`` (watch time over
#: the video's duration, NULL for a zero-length video). Feature configs may use any of these.
STAGED_EVENT_TYPES: dict[str, str] = {
    "viewer_uid": "BIGINT",
    "event_timestamp": "TIMESTAMP WITH TIME ZONE",
    "event_date": "DATE",
    "region": "VARCHAR",
    "ua_device_type": "VARCHAR",
    "ua_client_type": "VARCHAR",
    "ua_os": "VARCHAR",
    "ua_client_name": "VARCHAR",
    "total_watchtime": "BIGINT",
    "rutube_video_id": "VARCHAR",
    "category": "VARCHAR",
    "author_id": "BIGINT",
    "video_duration": "BIGINT",
    "watch_fraction": "DOUBLE",
}
INTEGER_TYPES = frozenset({"BIGINT", "INTEGER", "SMALLINT"})
NUMERIC_TYPES = INTEGER_TYPES | {"DOUBLE"}

#: Event quarantine reasons, in the order they are checked (a row gets the first that applies).
EVENT_REASONS = ("missing_uid", "bad_timestamp", "outside_day", "unknown_video", "missing_watchtime",
                 "negative_watchtime", "absurd_watchtime", "duplicate")
#: The reasons the generator plants (one problem per planted row, so each is counted exactly once).
PLANTED_EVENT_REASONS = ("missing_uid", "outside_day", "unknown_video", "negative_watchtime", "absurd_watchtime",
                         "duplicate")
#: A re-sent event is not bad data, just repeated: it does not count towards the bad-row share.
BENIGN_EVENT_REASONS = frozenset({"duplicate"})
#: A watch time above this many seconds in one event is not viewing but a broken counter.
ABSURD_WATCHTIME_SECONDS = 86_400
#: ... and so is one above this multiple of the video's duration (rewatching a few times is normal).
ABSURD_DURATION_MULTIPLE = 20

#: Target quarantine reasons, in checking order. ``no_events`` marks a valid target whose user has no staged
#: event: it stays in the staged targets (``has_events = false``) and is listed for the record, not rejected.
TARGET_REASONS = ("missing_uid", "impossible_age", "bad_sex", "bad_age_class", "age_class_mismatch",
                  "conflicting_uid", "duplicate", "no_events")
PLANTED_TARGET_REASONS = ("missing_uid", "impossible_age", "bad_sex", "bad_age_class", "age_class_mismatch",
                          "duplicate")
BENIGN_TARGET_REASONS = frozenset({"duplicate", "no_events"})
AGE_RANGE = (5, 100)
SEXES = ("male", "female")
#: ``age_class`` → (lowest age, highest age), the contest's classes. Ages below 19 have no class.
AGE_CLASSES: dict[int, tuple[int, int]] = {0: (19, 25), 1: (26, 30), 2: (31, 35), 3: (36, AGE_RANGE[1])}


def age_class_of(age: int) -> int | None:
    """The contest's class of an age, or None (under 19 or impossible)."""
    for cls, (low, high) in AGE_CLASSES.items():
        if low <= age <= high:
            return cls
    return None


def age_class_sql(column: str) -> str:
    """SQL for :func:`age_class_of`."""
    whens = " ".join(f"WHEN {column} BETWEEN {low} AND {high} THEN {cls}" for cls, (low, high) in AGE_CLASSES.items())
    return f"(CASE {whens} END)"


def raw_events_rel_dir(day: date) -> str:
    return f"sociodemo/raw/events/dt={day.isoformat()}"


VIDEO_INFO_REL = "sociodemo/raw/video_info/video_info.parquet"
TARGETS_REL = "sociodemo/raw/targets/targets.parquet"
STAGED_ROOT = "sociodemo/staged"
STAGED_TARGETS_DIR = f"{STAGED_ROOT}/targets"


def staged_rel_dir(day: date) -> str:
    return f"{STAGED_ROOT}/dt={day.isoformat()}"


def state_rel_dir(kind: str, version: str, day: date) -> str:
    """One day of feature state: ``daily`` partials, ``pairs_<column>`` sets or the ``cumulative`` all-time
    partials, each under the version (hash) of what it holds, so a config change never reads stale state."""
    return f"sociodemo/state/{kind}/version={version}/dt={day.isoformat()}"


def features_rel_dir(as_of: date, version: str) -> str:
    return f"sociodemo/features/as_of={as_of.isoformat()}/version={version}"


def user_sets_rel_dir(as_of: date, max_items: int, window_days: int | None) -> str:
    window = "all" if window_days is None else f"{window_days}d"
    return f"sociodemo/user_sets/as_of={as_of.isoformat()}/window={window}/max_items={max_items}"

"""Validate a day of viewing events and the targets with DuckDB (out of core); stage the clean rows.

``validate_day`` reads every Parquet file of the day's drop, joins the video catalogue, and gives each row the
first reason that applies (:data:`~pipelines.sociodemo.schema.EVENT_REASONS`). It stages the clean events
(joined to the catalogue) and the quarantined rows with their reason, and writes ``summary.json`` last: the
summary is the commit marker, and only days whose summary says ``accepted`` are read downstream
(:func:`accepted_days`). A rejected day (too many bad rows, or no valid row) still gets its quarantine and
summary, so ops can see why, but its events are not used.

``validate_targets`` rejects impossible targets row by row (impossible age, unknown sex, age class out of
range or inconsistent with the age, conflicting rows for one user) and counts target users without any
accepted event: they stay in the staged targets with ``has_events = false`` (they get no features; a scorer
gives them the prior) and are listed in the quarantine under ``no_events``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from pipelines import duck
from pipelines.errors import InputSchemaError, MissingPartitionError, RunRejected
from pipelines.sociodemo import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

_REQUIRED_EVENT_COLUMNS = ("event_timestamp", "total_watchtime", "rutube_video_id", "viewer_uid")
_REQUIRED_VIDEO_COLUMNS = ("rutube_video_id", "category", "duration", "author_id")


@dataclass
class DayValidation:
    """What validation found in one day's drop."""

    day: str
    files: int
    rows_read: int
    rows_valid: int
    users: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    status: str = "accepted"
    events_sha256: str | None = None
    staged_uri: str | None = None
    video_info_duplicates: int = 0

    @property
    def rows_bad(self) -> int:
        return sum(n for r, n in self.reasons.items() if r not in schema.BENIGN_EVENT_REASONS)

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_read if self.rows_read else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_bad": self.rows_bad, "bad_share": round(self.bad_share, 6),
                "rows_quarantined": sum(self.reasons.values())}


@dataclass
class TargetValidation:
    """What validation found in the targets."""

    rows_read: int
    rows_valid: int
    reasons: dict[str, int] = field(default_factory=dict)
    users_with_events: int = 0
    users_without_events: int = 0
    sex_counts: dict[str, int] = field(default_factory=dict)
    age_class_counts: dict[str, int] = field(default_factory=dict)
    event_days: list[str] = field(default_factory=list)
    status: str = "accepted"
    staged_uri: str | None = None

    @property
    def rows_bad(self) -> int:
        return sum(n for r, n in self.reasons.items() if r not in schema.BENIGN_TARGET_REASONS)

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_read if self.rows_read else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_bad": self.rows_bad, "bad_share": round(self.bad_share, 6)}


# --------------------------------------------------------------------------- reading the staged area
def accepted_days(root: DataRoot | None = None, through: date | None = None) -> list[date]:
    """Days whose staged events were accepted (their summary says so), in order, up to ``through``."""
    return list(accepted_sources(root, through))


def accepted_sources(root: DataRoot | None = None, through: date | None = None) -> dict[date, str]:
    """``{day: SHA-256 of its staged events}`` of every accepted day up to ``through``, in day order."""
    root = root or DataRoot()
    sources = {}
    for day in _staged_day_dirs(root):
        if through is not None and day > through:
            continue
        summary = read_summary(root, day)
        if summary and summary.get("status") == "accepted":
            sources[day] = summary["events_sha256"]
    return sources


def read_summary(root: DataRoot, day: date) -> dict | None:
    rel = f"{schema.staged_rel_dir(day)}/summary.json"
    return json.loads(root.read_bytes(rel)) if root.exists(rel) else None


def _staged_day_dirs(root: DataRoot) -> list[date]:
    if not root.is_s3:
        base = root.base / schema.STAGED_ROOT
        names = [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    else:  # "folders" are common prefixes; DataRoot.list only lists files
        paginator = root._s3().get_paginator("list_objects_v2")
        prefix = root._key(schema.STAGED_ROOT).rstrip("/") + "/"
        names = [cp["Prefix"][len(prefix):].rstrip("/")
                 for page in paginator.paginate(Bucket=root.bucket, Prefix=prefix, Delimiter="/")
                 for cp in page.get("CommonPrefixes", [])]
    return sorted(date.fromisoformat(n[3:]) for n in names if n.startswith("dt="))


def staged_events_path(root: DataRoot, day: date) -> Path:
    """Local path of an accepted day's staged events (mirrored from S3 when needed)."""
    return root.local_dir(schema.staged_rel_dir(day)) / "events.parquet"


# --------------------------------------------------------------------------- events
def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except Exception as exc:
        raise InputSchemaError(f"{path.name}: not a readable Parquet file ({exc})") from exc


def _raw_select(files: list[Path]) -> str:
    """SELECT of the raw columns over every file; optional columns missing everywhere become NULL."""
    present: set[str] = set()
    for path in files:
        columns = _parquet_columns(path)
        missing = [c for c in _REQUIRED_EVENT_COLUMNS if c not in columns]
        if missing:
            raise InputSchemaError(f"{path.name}: required column(s) {missing} missing (has {columns})")
        present.update(columns)
    cols = ", ".join(f'"{c}"' if c in present else f'NULL AS "{c}"' for c, _ in schema.RAW_EVENT_COLUMNS)
    return (f"SELECT {cols}, parse_filename(filename) AS source FROM read_parquet({duck.sql_paths(files)}, "
            "union_by_name = true, filename = true, hive_partitioning = false)")


VIDEOS_SQL = """
SELECT CAST(rutube_video_id AS VARCHAR) AS video_id, CAST(category AS VARCHAR) AS category,
       TRY_CAST(author_id AS BIGINT) AS author_id, TRY_CAST(duration AS BIGINT) AS duration
FROM read_parquet({path}, hive_partitioning = false)
WHERE rutube_video_id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY rutube_video_id
                           ORDER BY duration DESC NULLS LAST, category, author_id, title) = 1
"""

_CLASSIFY = """
CREATE TABLE classified AS
WITH raw AS ({raw}), typed AS (
    SELECT r.*, TRY_CAST(r.viewer_uid AS BIGINT) AS uid_t, TRY_CAST(r.event_timestamp AS TIMESTAMPTZ) AS ts_t,
           TRY_CAST(r.total_watchtime AS BIGINT) AS wt_t, CAST(r.rutube_video_id AS VARCHAR) AS video_t,
           v.video_id IS NOT NULL AS known_video, v.category, v.author_id AS video_author, v.duration AS video_duration
    FROM raw r LEFT JOIN videos v ON v.video_id = CAST(r.rutube_video_id AS VARCHAR)
), reasoned AS (
    SELECT *, CASE
        WHEN uid_t IS NULL THEN 'missing_uid'
        WHEN ts_t IS NULL THEN 'bad_timestamp'
        WHEN CAST(ts_t AS DATE) <> $day THEN 'outside_day'
        WHEN NOT known_video THEN 'unknown_video'
        WHEN wt_t IS NULL THEN 'missing_watchtime'
        WHEN wt_t < 0 THEN 'negative_watchtime'
        WHEN wt_t > {max_seconds} OR (video_duration > 0 AND wt_t * 1000 > {multiple} * video_duration)
            THEN 'absurd_watchtime'
    END AS first_reason
    FROM typed
)
SELECT *, CASE
    WHEN first_reason IS NOT NULL THEN first_reason
    -- the same view sent twice: keep the copy with the longest watch time (a re-sent heartbeat)
    WHEN row_number() OVER (PARTITION BY first_reason IS NULL, uid_t, video_t, ts_t
                            ORDER BY wt_t DESC, region, ua_device_type, ua_client_type, ua_os, ua_client_name,
                                     source) > 1 THEN 'duplicate'
END AS reason
FROM reasoned
"""

_STAGED_EVENTS = """
SELECT uid_t AS viewer_uid, ts_t AS event_timestamp, CAST(ts_t AS DATE) AS event_date,
       CAST(region AS VARCHAR) AS region, CAST(ua_device_type AS VARCHAR) AS ua_device_type,
       CAST(ua_client_type AS VARCHAR) AS ua_client_type, CAST(ua_os AS VARCHAR) AS ua_os,
       CAST(ua_client_name AS VARCHAR) AS ua_client_name, wt_t AS total_watchtime, video_t AS rutube_video_id,
       category, video_author AS author_id, video_duration,
       CASE WHEN video_duration > 0 THEN wt_t * 1000.0 / video_duration END AS watch_fraction
FROM classified WHERE reason IS NULL
ORDER BY viewer_uid, event_timestamp, rutube_video_id
"""

_EVENT_QUARANTINE = """
SELECT $day AS day, reason, source,
       to_json({viewer_uid: viewer_uid, event_timestamp: event_timestamp, region: region,
                ua_device_type: ua_device_type, ua_client_type: ua_client_type, ua_os: ua_os,
                ua_client_name: ua_client_name, total_watchtime: total_watchtime,
                rutube_video_id: rutube_video_id})::VARCHAR AS record
FROM classified WHERE reason IS NOT NULL
ORDER BY reason, source, record
"""


def video_info_path(root: DataRoot) -> Path:
    if not root.exists(schema.VIDEO_INFO_REL):
        raise MissingPartitionError(f"no video catalogue at {root.join(schema.VIDEO_INFO_REL)}")
    folder, name = schema.VIDEO_INFO_REL.rsplit("/", 1)
    path = root.local_dir(folder) / name
    columns = _parquet_columns(path)
    missing = [c for c in _REQUIRED_VIDEO_COLUMNS if c not in columns]
    if missing:
        raise InputSchemaError(f"{name}: required column(s) {missing} missing (has {columns})")
    return path


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def validate_day(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05) -> DayValidation:
    """Validate one day's event drop; stage clean events, quarantined rows and a summary under the data root.

    Raises:
        MissingPartitionError: no file for the day, or no video catalogue (retryable: the drop may be late).
        InputSchemaError: a file lacks a required column or is not Parquet.
        RunRejected: bad rows above ``max_bad_share`` (duplicates do not count), or no valid row at all.
    """
    root = root or DataRoot()
    rel = schema.raw_events_rel_dir(day)
    names = [r for r in root.list(rel) if r.endswith(".parquet")]
    if not names:
        raise MissingPartitionError(f"no events drop for {day} under {root.join(rel)}")
    local = root.local_dir(rel)
    files = [local / Path(n).name for n in names]
    videos_path = video_info_path(root)
    result = DayValidation(day=day.isoformat(), files=len(files), rows_read=0, rows_valid=0)
    staged = schema.staged_rel_dir(day)
    with tempfile.TemporaryDirectory(prefix="sociodemo-validate-") as tmp:
        workdir = Path(tmp)
        con = duck.connect(workdir)
        con.execute(f"CREATE TABLE videos AS {VIDEOS_SQL.format(path=duck.sql_path(videos_path))}")
        rows = con.execute(f"SELECT count(*) FROM {duck.read_parquet([videos_path])}").fetchone()[0]
        result.video_info_duplicates = rows - con.execute("SELECT count(*) FROM videos").fetchone()[0]
        con.execute(_CLASSIFY.format(raw=_raw_select(files), max_seconds=schema.ABSURD_WATCHTIME_SECONDS,
                                     multiple=schema.ABSURD_DURATION_MULTIPLE), {"day": day})
        counts = dict(con.execute("SELECT coalesce(reason, 'valid'), count(*) FROM classified GROUP BY 1").fetchall())
        result.rows_valid = counts.pop("valid", 0)
        result.reasons = {r: counts[r] for r in schema.EVENT_REASONS if counts.get(r)}
        result.rows_read = result.rows_valid + sum(result.reasons.values())
        result.users = con.execute("SELECT count(DISTINCT uid_t) FROM classified WHERE reason IS NULL").fetchone()[0]
        quarantine = workdir / "quarantine.parquet"
        con.execute(f"COPY ({_EVENT_QUARANTINE}) TO {duck.sql_path(quarantine)} (FORMAT parquet)", {"day": day})
        rejection = _rejection(result, max_bad_share)
        if rejection:
            result.status = "rejected"
        else:
            events = workdir / "events.parquet"
            con.execute(f"COPY ({_STAGED_EVENTS}) TO {duck.sql_path(events)} (FORMAT parquet, COMPRESSION zstd)")
            result.events_sha256 = _sha256(events)
            result.staged_uri = root.put_file(events, f"{staged}/events.parquet")
        con.close()
        root.put_file(quarantine, f"{staged}/quarantine.parquet")
        if rejection and not root.is_s3:  # an earlier accepted attempt's events must not linger next to it
            (root.base / staged / "events.parquet").unlink(missing_ok=True)
        root.put_bytes(json.dumps(result.as_dict(), indent=2).encode(), f"{staged}/summary.json")  # commit marker
    log.info("validated %s: %s", day, result.as_dict())
    if rejection:
        raise RunRejected(rejection)
    return result


def _rejection(result: DayValidation, max_bad_share: float) -> str | None:
    if result.bad_share > max_bad_share:
        return (f"{result.day}: {result.rows_bad} of {result.rows_read} rows are bad ({result.bad_share:.2%} > "
                f"threshold {max_bad_share:.2%}); reasons {result.reasons}. Rows are in the quarantine.")
    if result.rows_valid == 0:
        return f"{result.day}: no valid event ({result.rows_read} rows read, reasons {result.reasons})"
    return None


# --------------------------------------------------------------------------- targets
_TARGETS_CLASSIFY = """
CREATE TABLE targets AS
WITH typed AS (
    SELECT viewer_uid, age, sex, age_class, file_row_number AS row_no,
           TRY_CAST(viewer_uid AS BIGINT) AS uid_t, TRY_CAST(age AS INTEGER) AS age_t,
           CAST(sex AS VARCHAR) AS sex_t, TRY_CAST(age_class AS INTEGER) AS class_t
    FROM read_parquet({path}, file_row_number = true, hive_partitioning = false)
), reasoned AS (
    SELECT *, CASE
        WHEN uid_t IS NULL THEN 'missing_uid'
        WHEN age_t IS NULL OR age_t NOT BETWEEN {age_low} AND {age_high} THEN 'impossible_age'
        WHEN sex_t IS NULL OR sex_t NOT IN ({sexes}) THEN 'bad_sex'
        WHEN class_t IS NULL OR class_t NOT BETWEEN 0 AND 3 THEN 'bad_age_class'
        WHEN class_t IS DISTINCT FROM {class_of_age} THEN 'age_class_mismatch'
    END AS first_reason
    FROM typed
), grouped AS (
    SELECT *, count(DISTINCT (age_t, sex_t, class_t)) OVER (PARTITION BY first_reason IS NULL, uid_t) AS versions,
           row_number() OVER (PARTITION BY first_reason IS NULL, uid_t ORDER BY row_no) AS copy_no
    FROM reasoned
)
SELECT *, CASE
    WHEN first_reason IS NOT NULL THEN first_reason
    WHEN versions > 1 THEN 'conflicting_uid'  -- which row is right is unknowable: drop the user's label
    WHEN copy_no > 1 THEN 'duplicate'
END AS reason
FROM grouped
"""


def validate_targets(root: DataRoot | None = None, max_bad_share: float = 0.05, through: date | None = None
                     ) -> TargetValidation:
    """Validate the targets; stage valid ones (with ``has_events``) under ``sociodemo/staged/targets/``.

    "Has events" means an event on an accepted day up to ``through`` (default: every accepted day).

    Raises:
        MissingPartitionError: no targets file.
        InputSchemaError: a required column is missing.
        RunRejected: rejected rows above ``max_bad_share`` (duplicates and no-event users do not count), or no
            valid target at all.
    """
    root = root or DataRoot()
    if not root.exists(schema.TARGETS_REL):
        raise MissingPartitionError(f"no targets at {root.join(schema.TARGETS_REL)}")
    folder, name = schema.TARGETS_REL.rsplit("/", 1)
    path = root.local_dir(folder) / name
    columns = _parquet_columns(path)
    missing = [c for c, _ in schema.TARGET_COLUMNS if c not in columns]
    if missing:
        raise InputSchemaError(f"{name}: required column(s) {missing} missing (has {columns})")
    days = accepted_days(root, through)
    result = TargetValidation(rows_read=0, rows_valid=0, event_days=[d.isoformat() for d in days])
    with tempfile.TemporaryDirectory(prefix="sociodemo-targets-") as tmp:
        workdir = Path(tmp)
        con = duck.connect(workdir)
        con.execute(_TARGETS_CLASSIFY.format(
            path=duck.sql_path(path), age_low=schema.AGE_RANGE[0], age_high=schema.AGE_RANGE[1],
            sexes=", ".join(f"'{s}'" for s in schema.SEXES), class_of_age=schema.age_class_sql("age_t")))
        if days:
            files = [staged_events_path(root, d) for d in days]
            con.execute(f"CREATE TABLE active AS SELECT DISTINCT viewer_uid FROM {duck.read_parquet(files)}")
        else:
            con.execute("CREATE TABLE active (viewer_uid BIGINT)")
        con.execute("""CREATE TABLE valid AS
            SELECT t.uid_t AS viewer_uid, t.age_t AS age, t.sex_t AS sex, t.class_t AS age_class,
                   a.viewer_uid IS NOT NULL AS has_events
            FROM targets t LEFT JOIN active a ON a.viewer_uid = t.uid_t WHERE t.reason IS NULL""")
        counts = dict(con.execute("SELECT coalesce(reason, 'valid'), count(*) FROM targets GROUP BY 1").fetchall())
        result.rows_valid = counts.pop("valid", 0)
        result.rows_read = result.rows_valid + sum(counts.values())
        result.users_with_events = con.execute("SELECT count(*) FROM valid WHERE has_events").fetchone()[0]
        result.users_without_events = result.rows_valid - result.users_with_events
        counts["no_events"] = result.users_without_events
        result.reasons = {r: counts[r] for r in schema.TARGET_REASONS if counts.get(r)}
        result.sex_counts = dict(con.execute("SELECT sex, count(*) FROM valid GROUP BY 1 ORDER BY 1").fetchall())
        result.age_class_counts = {str(k): v for k, v in con.execute(
            "SELECT age_class, count(*) FROM valid GROUP BY 1 ORDER BY 1").fetchall()}
        quarantine = workdir / "quarantine.parquet"
        con.execute(f"""COPY (
            SELECT reason, to_json({{viewer_uid: viewer_uid, age: age, sex: sex, age_class: age_class}})::VARCHAR
                   AS record
            FROM targets WHERE reason IS NOT NULL
            UNION ALL
            SELECT 'no_events', to_json({{viewer_uid: viewer_uid, age: age, sex: sex, age_class: age_class}})::VARCHAR
            FROM valid WHERE NOT has_events
            ORDER BY 1, 2
        ) TO {duck.sql_path(quarantine)} (FORMAT parquet)""")
        rejection = None
        if result.bad_share > max_bad_share:
            rejection = (f"targets: {result.rows_bad} of {result.rows_read} rows are bad ({result.bad_share:.2%} > "
                         f"threshold {max_bad_share:.2%}); reasons {result.reasons}")
        elif result.rows_valid == 0:
            rejection = f"targets: no valid row ({result.rows_read} read, reasons {result.reasons})"
        if rejection:
            result.status = "rejected"
        else:
            staged = workdir / "targets.parquet"
            con.execute(f"COPY (SELECT * FROM valid ORDER BY viewer_uid) TO {duck.sql_path(staged)} "
                        "(FORMAT parquet)")
            result.staged_uri = root.put_file(staged, f"{schema.STAGED_TARGETS_DIR}/targets.parquet")
        con.close()
        root.put_file(quarantine, f"{schema.STAGED_TARGETS_DIR}/quarantine.parquet")
        root.put_bytes(json.dumps(result.as_dict(), indent=2).encode(), f"{schema.STAGED_TARGETS_DIR}/summary.json")
    log.info("validated targets: %s", result.as_dict())
    if rejection:
        raise RunRejected(rejection)
    return result

"""Validate a day of viewing events and the targets with DuckDB (out of core), on the platform's ingest contract.

``validate_day`` reads every Parquet file of the day's drop, joins the video catalogue, and gives each row the
first reason that applies (:data:`~pipelines.sociodemo.schema.EVENT_REASONS`). It stages the clean events
(joined to the catalogue) in the run's own folder; :mod:`pipelines.ingest` decides, publishes and commits the
quarantine and the day's status last. Downstream steps read only accepted days (:func:`accepted_days`,
:func:`staged_events_path`), so a rejected or failed day is never folded into the histories.

``validate_targets`` rejects impossible targets row by row (impossible age, unknown sex, age class out of
range or inconsistent with the age, conflicting rows for one user) and counts target users without any
accepted event: they stay in the staged targets with ``has_events = false`` (they get no features; a scorer
gives them the prior) and are listed in the quarantine under ``no_events``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date
from pathlib import Path

from pipelines import duck, ingest
from pipelines.days import day_interval
from pipelines.errors import InputSchemaError, MissingPartitionError
from pipelines.sociodemo import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

_REQUIRED_EVENT_COLUMNS = ("event_timestamp", "total_watchtime", "rutube_video_id", "viewer_uid")
_REQUIRED_VIDEO_COLUMNS = ("rutube_video_id", "category", "duration", "author_id")


TARGETS_PARTITION = "targets"


# --------------------------------------------------------------------------- reading the accepted partitions
def accepted_days(root: DataRoot | None = None, through: date | None = None) -> list[date]:
    """Days whose events were accepted, in order, up to ``through``."""
    return list(accepted_sources(root, through))


def accepted_sources(root: DataRoot | None = None, through: date | None = None) -> dict[date, str]:
    """``{day: SHA-256 of its accepted staged events}`` up to ``through``, in day order (what the history
    builder keys its per-day state on: a re-validated day with other content is re-aggregated)."""
    rows = ingest.accepted_partitions(schema.PIPELINE, through=None if through is None else through.isoformat())
    return {date.fromisoformat(k): r["extra"].get("events_sha256") or str(r["run_id"])
            for k, r in rows.items() if k != TARGETS_PARTITION}


def staged_events_path(root: DataRoot, day: date) -> Path:
    """Local path of an accepted day's staged events (mirrored from S3 when needed)."""
    return ingest.accepted_dir(schema.PIPELINE, day.isoformat(), root) / "events.parquet"


def staged_targets_path(root: DataRoot | None = None) -> Path:
    """Local path of the accepted targets."""
    return ingest.accepted_dir(schema.PIPELINE, TARGETS_PARTITION, root) / "targets.parquet"


# --------------------------------------------------------------------------- events
def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except Exception as exc:
        raise InputSchemaError(f"{path.name}: not a readable Parquet file ({exc})") from exc


def _check_files(files: list[ingest.DropFile], result: ingest.IngestResult) -> list[Path]:
    """The files whose footer is readable and which have the required columns; the others are reported."""
    good = []
    for item in files:
        try:
            columns = _parquet_columns(item.path)
        except InputSchemaError as exc:
            result.unread(item.name, "unreadable_file", str(exc))
            continue
        missing = [c for c in _REQUIRED_EVENT_COLUMNS if c not in columns]
        if missing:
            result.unread(item.name, "bad_header", f"required column(s) {missing} missing (has {columns})")
            continue
        good.append(item.path)
    return good


def _raw_select(files: list[Path]) -> str:
    """SELECT of the raw columns over every file; optional columns missing everywhere become NULL."""
    import pyarrow.parquet as pq

    present: set[str] = set()
    for path in files:
        present.update(pq.read_schema(path).names)
    cols = ", ".join(f'"{c}"' if c in present else f'NULL AS "{c}"' for c, _ in schema.RAW_EVENT_COLUMNS)
    return (f"SELECT {cols}, parse_filename(filename) AS source FROM read_parquet({duck.sql_paths(files)}, "
            "union_by_name = true, filename = true, hive_partitioning = false)")


def _unreadable_pages(con, files: list[Path], result: ingest.IngestResult) -> list[Path]:
    """Read each file whole (every page decompressed); report those that fail (a corrupt page, a truncated
    file) and return the others. Only called when reading the drop as a whole failed."""
    good = []
    for path in files:
        try:
            # hash() of every value forces every page to be decompressed (count or min may use metadata only)
            con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {duck.read_parquet([path])}").fetchall()
            good.append(path)
        except Exception as exc:  # duckdb.Error and friends: the file is reported, not the whole day crashed
            result.unread(path.name, "unreadable_file", ingest.short_error(exc))
    return good


VIDEOS_SQL = """
SELECT CAST(rutube_video_id AS VARCHAR) AS video_id,
       __CLEAN_CATEGORY__ AS category,
       TRY_CAST(author_id AS BIGINT) AS author_id, TRY_CAST(duration AS BIGINT) AS duration
FROM read_parquet({path}, hive_partitioning = false)
WHERE rutube_video_id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY rutube_video_id
                           ORDER BY duration DESC NULLS LAST, category, author_id, title) = 1
""".replace("__CLEAN_CATEGORY__", ingest.clean_text_sql("CAST(category AS VARCHAR)"))

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
       {region} AS region, {device} AS ua_device_type, {client_type} AS ua_client_type, {os} AS ua_os,
       {client_name} AS ua_client_name, wt_t AS total_watchtime, video_t AS rutube_video_id,
       category, video_author AS author_id, video_duration,
       CASE WHEN video_duration > 0 THEN wt_t * 1000.0 / video_duration END AS watch_fraction
FROM classified WHERE reason IS NULL
ORDER BY viewer_uid, event_timestamp, rutube_video_id
""".format(**{alias: ingest.clean_text_sql(f"CAST({col} AS VARCHAR)") for alias, col in (
    ("region", "region"), ("device", "ua_device_type"), ("client_type", "ua_client_type"), ("os", "ua_os"),
    ("client_name", "ua_client_name"))})

_EMPTY_RAW = "SELECT " + ", ".join(f'NULL::VARCHAR AS "{c}"' for c, _ in schema.RAW_EVENT_COLUMNS) + \
    ", NULL::VARCHAR AS source WHERE false"

_EVENT_QUARANTINE = """
SELECT source, reason, NULL::VARCHAR AS detail,
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


def _day_validator(day: date, root: DataRoot) -> ingest.Validator:
    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        items = ingest.read_drop(root, schema.raw_events_rel_dir(day), ("parquet",), result, "events drop")
        videos_path = video_info_path(root)
        files = _check_files(items, result)
        con = duck.connect(staging.workdir)
        try:
            con.execute(f"CREATE TABLE videos AS {VIDEOS_SQL.format(path=duck.sql_path(videos_path))}")
            rows = con.execute(f"SELECT count(*) FROM {duck.read_parquet([videos_path])}").fetchone()[0]
            result.extra["video_info_duplicates"] = rows - con.execute("SELECT count(*) FROM videos").fetchone()[0]
            classify = lambda paths: _CLASSIFY.format(  # noqa: E731
                raw=_raw_select(paths) if paths else _EMPTY_RAW, max_seconds=schema.ABSURD_WATCHTIME_SECONDS,
                multiple=schema.ABSURD_DURATION_MULTIPLE)
            try:
                con.execute(classify(files), {"day": day})
            except Exception:  # a corrupt page somewhere: find the file, report it, read the others
                con.execute("DROP TABLE IF EXISTS classified")
                files = _unreadable_pages(con, files, result)
                con.execute(classify(files), {"day": day})
            result.files = [p.name for p in files]
            counts = dict(con.execute("SELECT coalesce(reason, 'valid'), count(*) FROM classified "
                                      "GROUP BY 1").fetchall())
            result.rows_valid = counts.pop("valid", 0)
            for reason in schema.EVENT_REASONS:
                result.add(reason, counts.get(reason, 0))
            result.rows_read = result.rows_valid + sum(result.reasons.values())
            result.extra["users"] = con.execute("SELECT count(DISTINCT uid_t) FROM classified "
                                                "WHERE reason IS NULL").fetchone()[0]
            con.execute(f"COPY ({_EVENT_QUARANTINE}) TO {duck.sql_path(staging.path('quarantine.parquet'))} "
                        "(FORMAT parquet)")
            events = staging.path("events.parquet")
            con.execute(f"COPY ({_STAGED_EVENTS}) TO {duck.sql_path(events)} (FORMAT parquet, COMPRESSION zstd)")
            result.extra["events_sha256"] = _sha256(events)
        finally:
            con.close()

    return validate


def validate_day(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05) -> ingest.IngestResult:
    """Validate one day's event drop under the ingest contract; stage clean events in the run's folder.

    Raises:
        MissingPartitionError: no file for the day, or no video catalogue (retryable: the drop may be late).
        RunRejected: bad rows above ``max_bad_share`` (duplicates do not count), no valid row at all, or a
            file that cannot be read (not Parquet, a corrupt page, a required column missing).
    """
    root = root or DataRoot()
    return ingest.run_ingest(schema.PIPELINE, day.isoformat(), _day_validator(day, root), max_bad_share=max_bad_share,
                             params={"day": day}, interval=day_interval(day), root=root,
                             benign_reasons=schema.BENIGN_EVENT_REASONS)


def inspect_day(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05,
                workspace: ingest.Workspace | None = None) -> ingest.IngestResult:
    """:func:`validate_day` without PostgreSQL or publishing (previews, unit tests, fuzzing)."""
    return ingest.inspect(schema.PIPELINE, day.isoformat(), _day_validator(day, root or DataRoot()),
                          max_bad_share=max_bad_share, benign_reasons=schema.BENIGN_EVENT_REASONS,
                          workspace=workspace)


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


def _targets_validator(root: DataRoot, through: date | None) -> ingest.Validator:
    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        if not root.exists(schema.TARGETS_REL):
            raise MissingPartitionError(f"no targets at {root.join(schema.TARGETS_REL)}")
        folder, name = schema.TARGETS_REL.rsplit("/", 1)
        path = root.local_dir(folder) / name
        try:
            columns = _parquet_columns(path)
        except InputSchemaError as exc:
            result.unread(name, "unreadable_file", str(exc))
            return
        missing = [c for c, _ in schema.TARGET_COLUMNS if c not in columns]
        if missing:
            result.unread(name, "bad_header", f"required column(s) {missing} missing (has {columns})")
            return
        days = accepted_days(root, through)
        result.extra["event_days"] = [d.isoformat() for d in days]
        con = duck.connect(staging.workdir)
        try:
            try:
                con.execute(_TARGETS_CLASSIFY.format(
                    path=duck.sql_path(path), age_low=schema.AGE_RANGE[0], age_high=schema.AGE_RANGE[1],
                    sexes=", ".join(f"'{s}'" for s in schema.SEXES), class_of_age=schema.age_class_sql("age_t")))
            except Exception as exc:  # a corrupt page: the file is reported and the targets rejected
                result.unread(name, "unreadable_file", ingest.short_error(exc))
                return
            result.files = [name]
            if days:
                files = [staged_events_path(root, d) for d in days]
                con.execute(f"CREATE TABLE active AS SELECT DISTINCT viewer_uid FROM {duck.read_parquet(files)}")
            else:
                con.execute("CREATE TABLE active (viewer_uid BIGINT)")
            con.execute("""CREATE TABLE valid AS
                SELECT t.uid_t AS viewer_uid, t.age_t AS age, t.sex_t AS sex, t.class_t AS age_class,
                       a.viewer_uid IS NOT NULL AS has_events
                FROM targets t LEFT JOIN active a ON a.viewer_uid = t.uid_t WHERE t.reason IS NULL""")
            counts = dict(con.execute("SELECT coalesce(reason, 'valid'), count(*) FROM targets "
                                      "GROUP BY 1").fetchall())
            result.rows_valid = counts.pop("valid", 0)
            result.rows_read = result.rows_valid + sum(counts.values())
            with_events = con.execute("SELECT count(*) FROM valid WHERE has_events").fetchone()[0]
            result.extra["users_with_events"] = with_events
            result.extra["users_without_events"] = result.rows_valid - with_events
            counts["no_events"] = result.rows_valid - with_events  # kept (no features: the prior), listed
            for reason in schema.TARGET_REASONS:
                result.add(reason, counts.get(reason, 0))
            result.extra["sex_counts"] = dict(con.execute(
                "SELECT sex, count(*) FROM valid GROUP BY 1 ORDER BY 1").fetchall())
            result.extra["age_class_counts"] = {str(k): v for k, v in con.execute(
                "SELECT age_class, count(*) FROM valid GROUP BY 1 ORDER BY 1").fetchall()}
            record = "to_json({viewer_uid: viewer_uid, age: age, sex: sex, age_class: age_class})::VARCHAR"
            con.execute(f"""COPY (
                SELECT $name AS source, reason, NULL::VARCHAR AS detail, {record} AS record
                FROM targets WHERE reason IS NOT NULL
                UNION ALL
                SELECT $name, 'no_events', 'kept: no accepted event, so no features', {record}
                FROM valid WHERE NOT has_events
                ORDER BY 2, 4
            ) TO {duck.sql_path(staging.path('quarantine.parquet'))} (FORMAT parquet)""", {"name": name})
            con.execute(f"COPY (SELECT * FROM valid ORDER BY viewer_uid) TO "
                        f"{duck.sql_path(staging.path('targets.parquet'))} (FORMAT parquet)")
        finally:
            con.close()

    return validate


def validate_targets(root: DataRoot | None = None, max_bad_share: float = 0.05,
                     through: date | None = None) -> ingest.IngestResult:
    """Validate the targets under the ingest contract (partition ``targets``); stage the valid ones with
    ``has_events`` ("an event on an accepted day up to ``through``", default: every accepted day).

    Raises:
        MissingPartitionError: no targets file.
        RunRejected: rejected rows above ``max_bad_share`` (duplicates and no-event users do not count), no
            valid target at all, or a file that cannot be read (or lacks a required column).
    """
    root = root or DataRoot()
    return ingest.run_ingest(schema.PIPELINE, TARGETS_PARTITION, _targets_validator(root, through),
                             max_bad_share=max_bad_share, params={"targets": True, "through": through}, root=root,
                             benign_reasons=schema.BENIGN_TARGET_REASONS)

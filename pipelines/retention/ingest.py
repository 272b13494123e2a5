"""Extract and validate one day's tracker drop (DuckDB, out of core), then load it into Postgres atomically.

Validation follows the platform's ingest contract (:mod:`pipelines.ingest`): ``read_drop`` reads every file
of the day as text, classifies each row (first matching reason wins, see :data:`~pipelines.retention.schema.
REASONS`) and writes the valid events and the quarantined rows into the run's own staging folder; the contract
decides, publishes and commits the quarantine and the day's status last. Past the bad-row threshold the day is
rejected: its quarantine is recorded (unless an earlier accepted drop of the day stays in place) and nothing is
loaded.

``load_day`` loads the day's *accepted* staged run (never "whatever lies in the folder"): it replaces the day in
``piwik_track`` and every table derived per user in one transaction, so a rerun or a backfill of the same day
leaves the same state and readers see either the old or the new day.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from datetime import date
from pathlib import Path

from pipelines import db, duck, ingest
from pipelines.errors import InputSchemaError, MissingPartitionError
from pipelines.retention import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv")


def _header(item: ingest.DropFile, path: Path) -> list[str]:
    """The file's column names (empty for an empty file), split on the file type's delimiter."""
    with ingest.open_text(path, None if item.compression == "bz2" else item.compression) as handle:
        return [c.strip().lstrip("\ufeff") for c in next(csv.reader(handle, delimiter=item.delimiter), [])]


def _read_file(con, i: int, item: ingest.DropFile, workdir: Path, result: ingest.IngestResult) -> None:
    """Load one file's rows as text into ``raw``; malformed lines go to ``rejects``."""
    path = ingest.plain_path(item, workdir)
    present = _header(item, path)
    if not present:
        result.extra["empty_files"].append(item.name)
        return
    # The header fixes the columns, so a line with more or fewer fields is rejected, not re-sniffed.
    if len(set(present)) != len(present):
        raise InputSchemaError(f"{item.name}: duplicate column names in header {present}")
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in present]
    if missing:
        raise InputSchemaError(f"{item.name}: required column(s) {missing} missing (has {present})")
    columns = "{" + ", ".join("'{}': 'VARCHAR'".format(c.replace("'", "''")) for c in present) + "}"
    reader = (f"read_csv(?, columns = {columns}, header = true, hive_partitioning = false, delim = ?, "
              "quote = '\"', escape = '\"', "  # RFC 4180, never sniffed: a stray ' must not become a quote
              f"compression = '{ingest.duckdb_compression(item)}', store_rejects = true, rejects_table = 'rej_{i}', "
              f"rejects_scan = 'scan_{i}')")
    known = [c for c in (*schema.REQUIRED_COLUMNS, *schema.OPTIONAL_COLUMNS) if c in present]
    select = ", ".join(f'"{c}"' for c in known)
    con.execute(f"INSERT INTO raw ({select}, source) SELECT {select}, ? FROM {reader}",
                [item.name, str(path), item.delimiter])
    # DuckDB may report one error per surplus field: one quarantined row per rejected line.
    con.execute(f"INSERT INTO rejects SELECT ?, line, string_agg(DISTINCT error_type || ': ' || error_message, "
                f"'; '), any_value(csv_line) FROM rej_{i} GROUP BY line", [item.name])
    n_rows = con.execute("SELECT count(*) FROM raw WHERE source = ?", [item.name]).fetchone()[0]
    if n_rows == 0 and con.execute("SELECT count(*) FROM rejects WHERE source = ?", [item.name]).fetchone()[0] == 0:
        result.extra["empty_files"].append(item.name)


def _read_files(con, files: list[ingest.DropFile], workdir: Path, result: ingest.IngestResult) -> None:
    """Every file's rows into ``raw``; a file DuckDB cannot read is reported, its partial rows dropped."""
    cols = ", ".join(f"{c} VARCHAR" for c in (*schema.REQUIRED_COLUMNS, *schema.OPTIONAL_COLUMNS))
    con.execute(f"CREATE TABLE raw ({cols}, source VARCHAR)")
    con.execute("CREATE TABLE rejects (source VARCHAR, line BIGINT, detail VARCHAR, csv_line VARCHAR)")
    for i, item in enumerate(files):
        try:
            _read_file(con, i, item, workdir, result)
            result.files.append(item.name)
        except InputSchemaError as exc:  # the file is reported (and quarantined by name); the day is rejected
            result.unread(item.name, "bad_header", str(exc))
        except Exception as exc:  # truncated gzip, broken bz2, undecodable compression: report the file
            con.execute("DELETE FROM raw WHERE source = ?", [item.name])
            con.execute("DELETE FROM rejects WHERE source = ?", [item.name])
            result.unread(item.name, "unreadable_file", ingest.short_error(exc))


_CLASSIFY = """
CREATE TABLE classified AS
WITH typed AS (
    SELECT *, nullif(trim(uid), '') AS uid_clean, TRY_CAST(trim(time) AS TIMESTAMPTZ) AS ts,
           trim(event_name) AS name_clean
    FROM raw
), reasoned AS (
    SELECT *, CASE
        WHEN regexp_matches(coalesce(uid, '') || coalesce(time, '') || coalesce(event_name, ''), $control)
            THEN 'control_characters'
        WHEN uid_clean IS NULL THEN 'missing_uid'
        WHEN ts IS NULL THEN 'bad_time'
        WHEN name_clean IS NULL OR NOT list_contains($known, name_clean) THEN 'unknown_event'
        WHEN CAST(ts AS DATE) <> $day THEN 'outside_day'
    END AS first_reason
    FROM typed
)
SELECT *, CASE
    WHEN first_reason IS NOT NULL THEN first_reason
    WHEN row_number() OVER (PARTITION BY first_reason IS NULL, uid_clean, ts, name_clean
                            ORDER BY source, event_id) > 1 THEN 'duplicate'
END AS reason
FROM reasoned
"""


def _validator(day: date, root: DataRoot) -> ingest.Validator:
    """Read the day's drop into the run's workspace: ``events.parquet`` (valid rows) and ``quarantine.parquet``."""

    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        files = ingest.read_drop(root, schema.raw_rel_dir(day), FORMATS, result, "piwik_track export")
        result.extra["empty_files"] = []
        con = duck.connect(staging.workdir)
        try:
            _read_files(con, files, staging.workdir, result)
            con.execute(_CLASSIFY, {"known": sorted(schema.known_events()), "day": day,
                                    "control": ingest.CONTROL_CHARS})
            counts = dict(con.execute("SELECT coalesce(reason, 'valid'), count(*) FROM classified "
                                      "GROUP BY 1").fetchall())
            malformed = con.execute("SELECT count(*) FROM rejects").fetchone()[0]
            result.rows_valid = counts.pop("valid", 0)
            for reason, n in {**counts, "malformed_csv": malformed}.items():
                result.add(reason, n)
            result.rows_read = result.rows_valid + sum(result.reasons.values())
            result.add("empty_file", len(result.extra["empty_files"]))  # quarantined by name, not a row
            clean = ingest.clean_text_sql
            con.execute(f"""COPY (
                SELECT {clean('event_id')} AS event_id, uid_clean AS uid, ts AS time, name_clean AS event_name,
                       {clean('event_category')} AS event_category, TRY_CAST(idsite AS INTEGER) AS idsite,
                       {clean('platform')} AS platform, {clean('app_version')} AS app_version,
                       {clean('country')} AS country, {clean('session_id')} AS session_id,
                       CAST(ts AS DATE) AS event_date
                FROM classified WHERE reason IS NULL
            ) TO {duck.sql_path(staging.path('events.parquet'))} (FORMAT parquet)""")
            con.execute(f"""COPY (
                SELECT source, reason, NULL::VARCHAR AS detail,
                       to_json({{event_id: event_id, uid: uid, time: time, event_name: event_name,
                                 platform: platform, session_id: session_id}})::VARCHAR AS record
                FROM classified WHERE reason IS NOT NULL
                UNION ALL
                SELECT source, 'malformed_csv', 'line ' || line || ': ' || detail,
                       to_json({{csv_line: csv_line}})::VARCHAR
                FROM rejects
                UNION ALL
                SELECT unnest($empty), 'empty_file', 'the file has no data rows', NULL
            ) TO {duck.sql_path(staging.path('quarantine.parquet'))} (FORMAT parquet)""",
                        {"empty": result.extra["empty_files"]})
        finally:
            con.close()

    return validate


def inspect_day(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05,
                workspace: ingest.Workspace | None = None) -> ingest.IngestResult:
    """Validate a day's drop without writing anything (a preview; what the unit tests and fuzzers call)."""
    return ingest.inspect(schema.PIPELINE, day.isoformat(), _validator(day, root or DataRoot()),
                          max_bad_share=max_bad_share, benign_reasons=schema.BENIGN_REASONS, workspace=workspace)


def validate_day(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05) -> ingest.IngestResult:
    """Validate one day's drop under the ingest contract: stage its valid rows in the run's own folder, then
    commit its quarantine and status (accepted, or rejected with the previous accepted run kept).

    Raises:
        MissingPartitionError: no file for the day (retryable: the drop may be late).
        InputSchemaError: a file lacks a required column.
        RunRejected: bad rows above ``max_bad_share``, no valid row at all, or a file that cannot be read.
    """
    from pipelines.days import day_interval

    return ingest.run_ingest(schema.PIPELINE, day.isoformat(), _validator(day, root or DataRoot()),
                             max_bad_share=max_bad_share, params={"day": day}, interval=day_interval(day),
                             root=root, benign_reasons=schema.BENIGN_REASONS)


def _parquet_as_csv(parquet: Path, out: Path, columns: list[str]) -> Path:
    """A staged Parquet file as a CSV for COPY (streamed by DuckDB, not held in memory), in a private folder."""
    con = duck.connect(out.parent)
    try:
        con.execute(f"COPY (SELECT {', '.join(columns)} FROM {duck.read_parquet([parquet])}) "
                    f"TO {duck.sql_path(out)} (FORMAT csv, HEADER true)")
    finally:
        con.close()
    return out


def _record_load(cur, day: date, partition: dict, loaded: int) -> None:
    cur.execute(
        """INSERT INTO retention_day_loads (day, status, files, rows_read, rows_loaded, rows_quarantined,
                                            bad_share, reasons, run_id, loaded_at)
           VALUES (%(day)s, 'loaded', %(files)s, %(rows_read)s, %(rows_loaded)s, %(rows_quarantined)s,
                   %(bad_share)s, %(reasons)s, %(run_id)s, now())
           ON CONFLICT (day) DO UPDATE SET status = EXCLUDED.status, files = EXCLUDED.files,
               rows_read = EXCLUDED.rows_read, rows_loaded = EXCLUDED.rows_loaded,
               rows_quarantined = EXCLUDED.rows_quarantined, bad_share = EXCLUDED.bad_share,
               reasons = EXCLUDED.reasons, run_id = EXCLUDED.run_id, loaded_at = now()""",
        {"day": day, "files": partition["files"], "rows_read": partition["rows_read"], "rows_loaded": loaded,
         "rows_quarantined": partition["rows_quarantined"], "bad_share": partition["bad_share"],
         "reasons": json.dumps(partition["reasons"]), "run_id": str(partition["run_id"])},
    )


_LOAD_DERIVED = """
-- uids whose install date may change: installs of this day, before and after the swap
INSERT INTO _touched SELECT DISTINCT uid FROM piwik_track
    WHERE event_date = %(day)s AND event_name = %(install)s ON CONFLICT DO NOTHING;
INSERT INTO _affected SELECT DISTINCT install_date FROM user_install
    WHERE uid IN (SELECT uid FROM _touched) ON CONFLICT DO NOTHING;
DELETE FROM user_install WHERE uid IN (SELECT uid FROM _touched);
INSERT INTO user_install (uid, install_date)
    SELECT uid, min(event_date) FROM piwik_track
    WHERE event_name = %(install)s AND uid IN (SELECT uid FROM _touched) GROUP BY uid;
INSERT INTO _affected SELECT DISTINCT install_date FROM user_install
    WHERE uid IN (SELECT uid FROM _touched) ON CONFLICT DO NOTHING;
DELETE FROM user_activity_day WHERE activity_date = %(day)s;
INSERT INTO user_activity_day (uid, activity_date, events)
    SELECT uid, event_date, count(*) FROM piwik_track WHERE event_date = %(day)s GROUP BY uid, event_date;
"""


def load_day(day: date, root: DataRoot | None = None) -> dict:
    """Replace the day's events and per-user derived rows with its *accepted* run, in one transaction.

    The day's partition lock is held from reading the accepted pointer to the commit, so a concurrent ingest
    of the same day cannot slip in between: the loaded events are always the accepted run's, and
    ``retention_day_loads`` names that run. Returns ``{"rows_loaded": n, "affected_install_dates": [...]}``:
    the cohorts whose membership this load may have changed (beyond the day's own retention horizon).
    """
    root = root or DataRoot()
    partition = day.isoformat()
    columns = list(schema.TABLE_COLUMNS)
    with tempfile.TemporaryDirectory(prefix="retention-load-") as tmp, db.transaction() as cur:
        ingest.lock_partition(cur, schema.PIPELINE, partition)
        cur.execute("SELECT * FROM ingest_partitions WHERE pipeline = %s AND partition_key = %s "
                    "AND status = 'accepted'", (schema.PIPELINE, partition))
        row = cur.fetchone()
        if row is None:
            raise MissingPartitionError(f"retention {day} has no accepted ingest: validate it first (a rejected "
                                        "drop is never loaded)")
        accepted = dict(zip([d.name for d in cur.description], row, strict=True))
        rel = ingest.staged_rel_of(accepted, root)
        events_csv = _parquet_as_csv(root.local_dir(rel) / "events.parquet", Path(tmp) / "events.csv", columns)
        db.advisory_xact_lock(cur, "retention.derived")  # derived tables are shared across days
        cur.execute("CREATE TEMP TABLE _touched (uid text PRIMARY KEY) ON COMMIT DROP")
        cur.execute("CREATE TEMP TABLE _affected (install_date date PRIMARY KEY) ON COMMIT DROP")
        cur.execute("INSERT INTO _touched SELECT DISTINCT uid FROM piwik_track "
                    "WHERE event_date = %s AND event_name = %s", (day, schema.INSTALL_EVENT))
        cur.execute("DELETE FROM piwik_track WHERE event_date = %s", (day,))
        with open(events_csv, encoding="utf-8") as stream:
            loaded = db.copy_csv(cur, "piwik_track", columns, stream)
        if loaded != accepted["rows_valid"]:
            raise RuntimeError(f"{day}: the accepted run staged {accepted['rows_valid']} rows but COPY loaded "
                               f"{loaded}")
        cur.execute(_LOAD_DERIVED, {"day": day, "install": schema.INSTALL_EVENT})
        cur.execute("SELECT install_date FROM _affected ORDER BY 1")
        affected = [r[0].isoformat() for r in cur.fetchall()]
        _record_load(cur, day, accepted, loaded)
    log.info("loaded %s: %d events from run %s; install dates touched: %s", day, loaded, accepted["run_id"],
             affected)
    return {"day": partition, "rows_loaded": loaded, "affected_install_dates": affected,
            "ingest_run_id": str(accepted["run_id"])}

"""Extract and validate one day's tracker drop (DuckDB, out of core), then load it into Postgres atomically.

``validate_day`` reads every CSV of the day as text, classifies each row (first matching reason wins, see
:data:`~pipelines.retention.schema.REASONS`), and stages two Parquet files in the data root: the valid
events and the quarantined rows with their reason. Past the bad-row threshold the day is rejected: the
quarantine is still written (so ops can see why) but no event is loaded.

``load_day`` replaces the day in ``piwik_track`` and every table derived per user in one transaction, so a
rerun or a backfill of the same day leaves the same state and readers see either the old or the new day.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from pipelines import db
from pipelines.errors import InputSchemaError, MissingPartitionError, RunRejected
from pipelines.retention import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


@dataclass
class DayValidation:
    """What validation found in one day's drop."""

    day: str
    files: int
    rows_read: int
    rows_valid: int
    reasons: dict[str, int] = field(default_factory=dict)
    empty_files: list[str] = field(default_factory=list)
    staged_uri: str | None = None

    @property
    def rows_bad(self) -> int:
        return sum(n for r, n in self.reasons.items() if r not in schema.BENIGN_REASONS)

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_read if self.rows_read else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_bad": self.rows_bad, "bad_share": round(self.bad_share, 6),
                "rows_quarantined": sum(self.reasons.values())}


def _duckdb(workdir: Path):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET temp_directory = ?", [str(workdir / "spill")])  # spill instead of running out of RAM
    con.execute("SET memory_limit = '2GB'")
    con.execute("SET preserve_insertion_order = false")
    return con


def _header(path: Path) -> list[str]:
    """The file's column names (empty for an empty file)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as handle:
        return [c.strip().lstrip("\ufeff") for c in next(csv.reader(handle), [])]


def _read_files(con, files: list[Path], result: DayValidation) -> None:
    """Load every file's rows as text into ``raw``; malformed lines go to ``rejects``."""
    cols = ", ".join(f"{c} VARCHAR" for c in (*schema.REQUIRED_COLUMNS, *schema.OPTIONAL_COLUMNS))
    con.execute(f"CREATE TABLE raw ({cols}, source VARCHAR)")
    con.execute("CREATE TABLE rejects (source VARCHAR, line BIGINT, detail VARCHAR, csv_line VARCHAR)")
    for i, path in enumerate(files):
        present = _header(path)
        if not present:
            result.empty_files.append(path.name)
            continue
        # The header fixes the columns, so a line with more or fewer fields is rejected, not re-sniffed.
        if len(set(present)) != len(present):
            raise InputSchemaError(f"{path.name}: duplicate column names in header {present}")
        columns = "{" + ", ".join("'{}': 'VARCHAR'".format(c.replace("'", "''")) for c in present) + "}"
        reader = (f"read_csv(?, columns = {columns}, header = true, hive_partitioning = false, "
                  f"store_rejects = true, rejects_table = 'rej_{i}', rejects_scan = 'scan_{i}')")
        missing = [c for c in schema.REQUIRED_COLUMNS if c not in present]
        if missing:
            raise InputSchemaError(f"{path.name}: required column(s) {missing} missing (has {present})")
        known = [c for c in (*schema.REQUIRED_COLUMNS, *schema.OPTIONAL_COLUMNS) if c in present]
        select = ", ".join(f'"{c}"' for c in known)
        con.execute(f"INSERT INTO raw ({select}, source) SELECT {select}, ? FROM {reader}", [path.name, str(path)])
        # DuckDB may report one error per surplus field: one quarantined row per rejected line.
        con.execute(f"INSERT INTO rejects SELECT ?, line, string_agg(DISTINCT error_type || ': ' || error_message, "
                    f"'; '), any_value(csv_line) FROM rej_{i} GROUP BY line", [path.name])
        n_rows = con.execute("SELECT count(*) FROM raw WHERE source = ?", [path.name]).fetchone()[0]
        if n_rows == 0 and con.execute("SELECT count(*) FROM rejects WHERE source = ?", [path.name]).fetchone()[0] == 0:
            result.empty_files.append(path.name)


_CLASSIFY = """
CREATE TABLE classified AS
WITH typed AS (
    SELECT *, nullif(trim(uid), '') AS uid_clean, TRY_CAST(trim(time) AS TIMESTAMPTZ) AS ts,
           trim(event_name) AS name_clean
    FROM raw
), reasoned AS (
    SELECT *, CASE
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


def validate_day(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05) -> DayValidation:
    """Validate one day's drop and stage valid rows and quarantined rows under the data root.

    Raises:
        MissingPartitionError: no file for the day (retryable: the drop may be late).
        InputSchemaError: a file lacks a required column.
        RunRejected: bad rows above ``max_bad_share``, or no valid row at all.
    """
    root = root or DataRoot()
    rel = schema.raw_rel_dir(day)
    names = [r for r in root.list(rel) if r.endswith(_CSV_SUFFIXES)]
    if not names:
        raise MissingPartitionError(f"no piwik_track export for {day} under {root.join(rel)}")
    local = root.local_dir(rel)
    files = [local / Path(n).name for n in names]
    result = DayValidation(day=day.isoformat(), files=len(files), rows_read=0, rows_valid=0)
    with tempfile.TemporaryDirectory(prefix="retention-") as tmp:
        workdir = Path(tmp)
        con = _duckdb(workdir)
        _read_files(con, files, result)
        con.execute(_CLASSIFY, {"known": sorted(schema.known_events()), "day": day})
        counts = dict(con.execute("SELECT coalesce(reason, 'valid'), count(*) FROM classified GROUP BY 1").fetchall())
        malformed = con.execute("SELECT count(*) FROM rejects").fetchone()[0]
        result.rows_valid = counts.pop("valid", 0)
        result.reasons = {r: n for r, n in {**counts, "malformed_csv": malformed}.items() if n}
        result.rows_read = result.rows_valid + sum(result.reasons.values())
        staged = schema.staging_rel_dir(day)
        events_path, quarantine_path = workdir / "events.parquet", workdir / "quarantine.parquet"
        con.execute(f"""COPY (
            SELECT event_id, uid_clean AS uid, ts AS time, name_clean AS event_name, event_category,
                   TRY_CAST(idsite AS INTEGER) AS idsite, platform, app_version, country, session_id,
                   CAST(ts AS DATE) AS event_date
            FROM classified WHERE reason IS NULL
        ) TO '{events_path}' (FORMAT parquet)""")
        con.execute(f"""COPY (
            SELECT source, reason, NULL::VARCHAR AS detail,
                   to_json({{event_id: event_id, uid: uid, time: time, event_name: event_name,
                             platform: platform, session_id: session_id}})::VARCHAR AS record
            FROM classified WHERE reason IS NOT NULL
            UNION ALL
            SELECT source, 'malformed_csv', 'line ' || line || ': ' || detail, to_json({{csv_line: csv_line}})::VARCHAR
            FROM rejects
            UNION ALL
            SELECT unnest($empty), 'empty_file', 'the file has no data rows', NULL
        ) TO '{quarantine_path}' (FORMAT parquet)""", {"empty": result.empty_files})
        con.close()
        result.staged_uri = root.put_file(events_path, f"{staged}/events.parquet").rsplit("/", 1)[0]
        root.put_file(quarantine_path, f"{staged}/quarantine.parquet")
        root.put_bytes(json.dumps(result.as_dict(), indent=2).encode(), f"{staged}/summary.json")
    log.info("validated %s: %s", day, result.as_dict())
    if result.bad_share > max_bad_share:
        raise RunRejected(
            f"{day}: {result.rows_bad} of {result.rows_read} rows are bad ({result.bad_share:.2%} > "
            f"threshold {max_bad_share:.2%}); reasons {result.reasons}. Rows are in the quarantine table."
        )
    if result.rows_valid == 0:
        raise RunRejected(f"{day}: the drop has no valid event ({result.rows_read} rows read, "
                          f"reasons {result.reasons}, "
                          f"empty files: {result.empty_files}); refusing to write an empty day")
    return result


def _parquet_as_csv(path: Path, query: str) -> Path:
    """Turn a staged Parquet file into a CSV for COPY (streamed by DuckDB, not held in memory)."""
    import duckdb

    out = path.with_suffix(".csv")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({query.format(path=path)}) TO '{out}' (FORMAT csv, HEADER true)")
    con.close()
    return out


def write_quarantine(cur, day: date, staged_dir: Path) -> int:
    """Replace the day's quarantine rows with the staged ones."""
    cur.execute("DELETE FROM quarantine WHERE pipeline = %s AND partition_key = %s",
                (schema.PIPELINE, day.isoformat()))
    import pyarrow.parquet as pq

    if pq.ParquetFile(staged_dir / "quarantine.parquet").metadata.num_rows == 0:
        return 0  # a clean day: no DuckDB conversion, no COPY
    csv_path = _parquet_as_csv(
        staged_dir / "quarantine.parquet",
        f"SELECT '{schema.PIPELINE}' AS pipeline, '{day.isoformat()}' AS partition_key, source, reason, detail, "
        "record FROM '{path}'",
    )
    with open(csv_path) as stream:
        return db.copy_csv(cur, "quarantine", ["pipeline", "partition_key", "source", "reason", "detail", "record"],
                           stream)


def _record_load(cur, day: date, summary: dict, status: str, run_id: str | None) -> None:
    cur.execute(
        """INSERT INTO retention_day_loads (day, status, files, rows_read, rows_loaded, rows_quarantined,
                                            bad_share, reasons, run_id, loaded_at)
           VALUES (%(day)s, %(status)s, %(files)s, %(rows_read)s, %(rows_loaded)s, %(rows_quarantined)s,
                   %(bad_share)s, %(reasons)s, %(run_id)s, now())
           ON CONFLICT (day) DO UPDATE SET status = EXCLUDED.status, files = EXCLUDED.files,
               rows_read = EXCLUDED.rows_read, rows_loaded = EXCLUDED.rows_loaded,
               rows_quarantined = EXCLUDED.rows_quarantined, bad_share = EXCLUDED.bad_share,
               reasons = EXCLUDED.reasons, run_id = EXCLUDED.run_id, loaded_at = now()""",
        {"day": day, "status": status, "files": summary["files"], "rows_read": summary["rows_read"],
         "rows_loaded": summary["rows_valid"] if status == "loaded" else 0,
         "rows_quarantined": summary["rows_quarantined"], "bad_share": summary["bad_share"],
         "reasons": json.dumps(summary["reasons"]), "run_id": run_id},
    )


def record_rejection(day: date, root: DataRoot | None = None, run_id: str | None = None) -> None:
    """Store a rejected day's quarantine and mark it rejected, leaving its events untouched."""
    root = root or DataRoot()
    rel = schema.staging_rel_dir(day)
    staged = root.local_dir(rel)
    summary = json.loads(root.read_bytes(f"{rel}/summary.json"))
    with db.transaction() as cur:
        db.advisory_xact_lock(cur, f"retention.day.{day}")
        write_quarantine(cur, day, staged)
        cur.execute("SELECT status FROM retention_day_loads WHERE day = %s", (day,))
        row = cur.fetchone()
        if row is None or row[0] != "loaded":  # a previously good load of the day stays in place
            _record_load(cur, day, summary, "rejected", run_id)


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


def load_day(day: date, root: DataRoot | None = None, run_id: str | None = None) -> dict:
    """Replace the day's events and per-user derived rows in one transaction.

    Returns ``{"rows_loaded": n, "affected_install_dates": [...]}``: the cohorts whose membership this load
    may have changed (beyond the day's own retention horizon).
    """
    root = root or DataRoot()
    rel = schema.staging_rel_dir(day)
    if not root.exists(f"{rel}/events.parquet"):
        raise MissingPartitionError(f"{day} has not been validated: nothing staged under {root.join(rel)}")
    staged = root.local_dir(rel)
    summary = json.loads(root.read_bytes(f"{rel}/summary.json"))
    columns = list(schema.TABLE_COLUMNS)
    events_csv = _parquet_as_csv(staged / "events.parquet", f"SELECT {', '.join(columns)} FROM '{{path}}'")
    try:
        with db.transaction() as cur:
            db.advisory_xact_lock(cur, "retention.derived")  # derived tables are shared across days
            cur.execute("CREATE TEMP TABLE _touched (uid text PRIMARY KEY) ON COMMIT DROP")
            cur.execute("CREATE TEMP TABLE _affected (install_date date PRIMARY KEY) ON COMMIT DROP")
            cur.execute("INSERT INTO _touched SELECT DISTINCT uid FROM piwik_track "
                        "WHERE event_date = %s AND event_name = %s", (day, schema.INSTALL_EVENT))
            cur.execute("DELETE FROM piwik_track WHERE event_date = %s", (day,))
            with open(events_csv) as stream:
                loaded = db.copy_csv(cur, "piwik_track", columns, stream)
            if loaded != summary["rows_valid"]:
                raise RuntimeError(f"{day}: staged {summary['rows_valid']} rows but COPY loaded {loaded}")
            cur.execute(_LOAD_DERIVED, {"day": day, "install": schema.INSTALL_EVENT})
            cur.execute("SELECT install_date FROM _affected ORDER BY 1")
            affected = [r[0].isoformat() for r in cur.fetchall()]
            write_quarantine(cur, day, staged)
            _record_load(cur, day, summary, "loaded", run_id)
    finally:
        events_csv.unlink(missing_ok=True)
    log.info("loaded %s: %d events; install dates touched: %s", day, loaded, affected)
    return {"day": day.isoformat(), "rows_loaded": loaded, "affected_install_dates": affected}

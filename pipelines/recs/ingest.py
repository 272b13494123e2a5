"""Validate one day's Last.fm snapshot out of core (DuckDB) and stage it as dense-id Parquet.

Each line is read as one text column and split on tabs in SQL, so a tab inside an artist name (the line then
has more than four fields) is repaired rather than lost: the fields between the mbid and the plays are the
name. A play row is dropped with the first reason of :data:`~pipelines.recs.schema.PLAYS_BAD_REASONS`;
repairs of kept rows (merged duplicates, tab-split names, nulled profile fields, users without a profile) are
recorded too, under :data:`~pipelines.recs.schema.BENIGN_REASONS`, and do not count as bad. Artist names get
exactly ``schema.clean_artist_name`` / ``schema.artist_key``: Python runs on the distinct raw names only (far
fewer than rows) and DuckDB joins the result back.

Outputs, under ``schema.staged_rel_dir(day)``: ``interactions``, ``users``, ``artists`` (schemas in
:mod:`pipelines.recs.schema`), ``quarantine.parquet`` and ``summary.json``, published as one set. Past the
bad-row threshold, or with nothing valid, only the quarantine and the summary are published (so ops can see
why) and :class:`~pipelines.errors.RunRejected` is raised.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa

from pipelines import db
from pipelines.errors import MissingPartitionError, RunRejected
from pipelines.recs import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

STAGED_FILES = ("interactions.parquet", "users.parquet", "artists.parquet", "quarantine.parquet", "summary.json")


@dataclass
class SnapshotValidation:
    """What validation found in one day's snapshot."""

    day: str
    rows_read: int = 0  # lines of the plays file
    rows_valid: int = 0  # play lines kept (duplicates still counted separately)
    rows_bad: int = 0
    profile_rows_read: int = 0
    profile_rows_valid: int = 0  # profile lines kept (the first of each user)
    profile_rows_bad: int = 0
    interactions: int = 0  # (user, artist) pairs after merging duplicates
    users: int = 0
    users_with_profile: int = 0
    cold_start_users: int = 0  # a profile and no plays
    artists: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    status: str = "accepted"
    staged_uri: str | None = None

    @property
    def bad_share(self) -> float:
        """The worse of the two files' shares of bad lines (a broken profile file must not hide behind plays)."""
        plays = self.rows_bad / self.rows_read if self.rows_read else 0.0
        profile = self.profile_rows_bad / self.profile_rows_read if self.profile_rows_read else 0.0
        return max(plays, profile)

    def as_dict(self) -> dict:
        return {**asdict(self), "bad_share": round(self.bad_share, 6),
                "rows_quarantined": sum(self.reasons.values())}


def _duckdb(workdir: Path):
    import duckdb

    # A database file, not memory: tables are compressed and spill, so a 17.5M-row day fits a small worker.
    con = duckdb.connect(str(workdir / "work.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET temp_directory = ?", [str(workdir / "spill")])
    con.execute("SET memory_limit = '2GB'")
    con.execute("SET preserve_insertion_order = false")
    return con


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _lines(path: Path, rejects: str) -> str:
    """A read_csv over ``path`` giving each line whole (NUL as the delimiter: it does not occur in text)."""
    return (f"read_csv({_quoted(path)}, delim = '\\0', quote = '', escape = '', header = false, new_line = '\\n', "
            f"columns = {{'line': 'VARCHAR'}}, auto_detect = false, strict_mode = false, store_rejects = true, "
            f"rejects_table = '{rejects}', rejects_scan = '{rejects}_scan')")


_HEX40 = "'[0-9a-f]{40}'"

_PLAYS_RAW = """
CREATE TABLE plays_raw AS
WITH lines AS (SELECT line, string_split(line, chr(9)) AS parts FROM {reader} WHERE line IS NOT NULL)
SELECT len(parts) AS n_fields, parts[1] AS user_raw,
       CASE WHEN len(parts) >= 4 THEN parts[2] END AS mbid_raw,
       CASE WHEN len(parts) >= 4 THEN array_to_string(list_slice(parts, 3, -2), ' ') END AS name_raw,
       CASE WHEN len(parts) >= 4 THEN parts[-1] END AS plays_raw,
       CASE WHEN len(parts) < 4 THEN line END AS line
FROM lines
"""

_PLAYS_CHECKED = f"""
CREATE TABLE plays AS
WITH typed AS (
    SELECT p.*, lower(trim(user_raw)) AS user_id, nullif(lower(trim(mbid_raw)), '') AS mbid, n.name_id,
           n.key_id, n.clean_name, trim(plays_raw) AS plays_txt,
           regexp_full_match(trim(plays_raw), '[+-]?[0-9]+') AS plays_int
    FROM plays_raw p LEFT JOIN names n USING (name_raw)
), numbered AS (
    SELECT *, CASE WHEN plays_int THEN TRY_CAST(plays_txt AS HUGEINT) END AS plays_num FROM typed
), reasoned AS (
    SELECT *, CASE
        WHEN n_fields < 4 THEN 'malformed_line'
        WHEN NOT regexp_full_match(user_id, {_HEX40}) THEN 'bad_user_id'
        WHEN clean_name = '' THEN 'missing_artist'
        WHEN NOT plays_int THEN 'bad_plays'
        WHEN starts_with(plays_txt, '-') OR plays_num = 0 THEN 'nonpositive_plays'
        WHEN plays_num IS NULL OR plays_num > {schema.MAX_PLAUSIBLE_PLAYS} THEN 'absurd_plays'
    END AS reason
    FROM numbered
)
SELECT reason, n_fields, user_id, name_id, key_id, mbid,
       CASE WHEN reason IS NULL THEN CAST(plays_num AS BIGINT) END AS plays,
       CASE WHEN n_fields < 4 THEN to_json({{line: line}})::VARCHAR
            WHEN reason IS NOT NULL OR n_fields > 4
            THEN to_json({{user_id: user_raw, mbid: mbid_raw, artist_name: name_raw, plays: plays_raw}})::VARCHAR
       END AS record
FROM reasoned
"""

_PROFILE = f"""
CREATE TABLE profile AS
WITH parsed AS (
    SELECT rowid AS line_no, line, string_split(line, chr(9)) AS parts FROM profile_lines
), checked AS (
    SELECT line_no, line, len(parts) = 5 AS five, lower(trim(parts[1])) AS user_id,
           lower(trim(parts[2])) AS gender_raw, trim(parts[3]) AS age_raw, trim(parts[4]) AS country_raw,
           trim(parts[5]) AS signup_raw
    FROM parsed
), reasoned AS (
    SELECT *, CASE WHEN NOT five THEN 'malformed_line'
                   WHEN NOT regexp_full_match(user_id, {_HEX40}) THEN 'bad_user_id' END AS bad_reason
    FROM checked
)
SELECT *, CASE
    WHEN bad_reason IS NOT NULL THEN bad_reason
    WHEN row_number() OVER (PARTITION BY bad_reason IS NULL, user_id ORDER BY line_no) > 1 THEN 'duplicate_profile'
END AS reason,
    CASE WHEN gender_raw IN {schema.GENDERS} THEN gender_raw END AS gender,
    CASE WHEN regexp_full_match(age_raw, '[+-]?[0-9]{{1,4}}')
          AND CAST(age_raw AS INTEGER) BETWEEN {schema.AGE_RANGE[0]} AND {schema.AGE_RANGE[1]}
         THEN CAST(age_raw AS SMALLINT) END AS age,
    nullif(country_raw, '') AS country,
    CAST(try_strptime(signup_raw, '{schema.SIGNUP_FORMAT}') AS DATE) AS signup_date
FROM reasoned
"""

_AGE_BAND = "CASE " + " ".join(f"WHEN p.age BETWEEN {low} AND {high} THEN '{label}'"
                              for label, low, high in schema.AGE_BANDS) + " END"

_MODEL = f"""
CREATE TABLE pairs AS
SELECT user_id, key_id, CAST(sum(plays) AS BIGINT) AS plays, count(*) AS n_rows
FROM plays WHERE reason IS NULL GROUP BY user_id, key_id;

CREATE TABLE users AS
WITH ids AS (SELECT DISTINCT user_id FROM pairs UNION SELECT user_id FROM profile WHERE reason IS NULL),
counts AS (SELECT user_id, count(*) AS n_artists FROM pairs GROUP BY user_id)
SELECT CAST(row_number() OVER (ORDER BY ids.user_id) - 1 AS INTEGER) AS user_idx, ids.user_id, p.gender,
       p.age, {_AGE_BAND} AS age_band, p.country, p.signup_date, p.user_id IS NOT NULL AS has_profile,
       CAST(coalesce(c.n_artists, 0) AS INTEGER) AS n_artists
FROM ids LEFT JOIN (SELECT * FROM profile WHERE reason IS NULL) p USING (user_id)
LEFT JOIN counts c USING (user_id);

CREATE TABLE artists AS
WITH totals AS (SELECT key_id, count(*) AS listeners, sum(plays) AS plays FROM pairs GROUP BY key_id),
name_rows AS (SELECT name_id, count(*) AS n FROM plays WHERE reason IS NULL GROUP BY name_id),
spellings AS (  -- the most common cleaned spelling of the artist
    SELECT n.key_id, n.clean_name FROM name_rows r JOIN names n USING (name_id) GROUP BY n.key_id, n.clean_name
    QUALIFY row_number() OVER (PARTITION BY n.key_id ORDER BY sum(r.n) DESC, n.clean_name) = 1
),
ids AS (
    SELECT key_id, mbid FROM plays WHERE reason IS NULL AND mbid IS NOT NULL GROUP BY key_id, mbid
    QUALIFY row_number() OVER (PARTITION BY key_id ORDER BY count(*) DESC, mbid) = 1
),
keys AS (SELECT DISTINCT key_id, artist_key FROM names)
SELECT CAST(row_number() OVER (ORDER BY k.artist_key) - 1 AS INTEGER) AS artist_idx, k.artist_key,
       s.clean_name AS artist_name, i.mbid, CAST(t.listeners AS INTEGER) AS listeners,
       CAST(t.plays AS BIGINT) AS plays, t.key_id
FROM totals t JOIN keys k USING (key_id) JOIN spellings s USING (key_id) LEFT JOIN ids i USING (key_id);
"""

_QUARANTINE = f"""
CREATE TABLE quarantine AS
WITH merged AS (  -- every row of a (user, artist) beyond the one with the most plays was merged into it
    SELECT p.*, n.clean_name FROM plays p SEMI JOIN (SELECT user_id, key_id FROM pairs WHERE n_rows > 1) d
        USING (user_id, key_id) JOIN names n USING (name_id)
    WHERE p.reason IS NULL
    QUALIFY row_number() OVER (PARTITION BY user_id, p.key_id ORDER BY plays DESC, name_id, mbid) > 1
), profile_kept AS (SELECT * FROM profile WHERE reason IS NULL)
SELECT $plays AS source, coalesce(reason, 'tab_in_name_repaired') AS reason, CASE coalesce(reason, '')
        WHEN 'malformed_line' THEN n_fields || ' tab-separated field(s), expected 4'
        WHEN 'bad_user_id' THEN 'user id is not 40 hex digits'
        WHEN 'missing_artist' THEN 'the artist name is empty'
        WHEN 'bad_plays' THEN 'plays is not an integer'
        WHEN 'nonpositive_plays' THEN 'plays <= 0'
        WHEN 'absurd_plays' THEN 'plays > {schema.MAX_PLAUSIBLE_PLAYS}'
        ELSE 'kept: ' || n_fields || ' fields, the middle ones joined as the artist name' END AS detail, record
FROM plays WHERE reason IS NOT NULL OR n_fields > 4
UNION ALL
SELECT $plays, 'duplicate_merged', 'kept: plays summed into the same user and artist',
       to_json({{user_id: user_id, mbid: mbid, artist_name: clean_name, plays: plays}})::VARCHAR
FROM merged
UNION ALL
SELECT $plays, 'user_without_profile', 'kept: has plays but no profile row', to_json({{user_id: user_id}})::VARCHAR
FROM (SELECT DISTINCT user_id FROM pairs) ANTI JOIN profile_kept USING (user_id)
UNION ALL
SELECT $profile, reason, CASE reason WHEN 'malformed_line' THEN 'expected 5 tab-separated fields'
                                  WHEN 'bad_user_id' THEN 'user id is not 40 hex digits'
                                  ELSE 'dropped: the first row of the user is kept' END,
       to_json({{line: line}})::VARCHAR
FROM profile WHERE reason IS NOT NULL
UNION ALL
SELECT $profile, 'bad_gender_nulled', 'kept with gender NULL (not m/f)', to_json({{line: line}})::VARCHAR
FROM profile_kept WHERE gender_raw <> '' AND gender IS NULL
UNION ALL
SELECT $profile, 'bad_age_nulled', 'kept with age NULL (outside {schema.AGE_RANGE[0]}..{schema.AGE_RANGE[1]})',
       to_json({{line: line}})::VARCHAR
FROM profile_kept WHERE age_raw <> '' AND age IS NULL
UNION ALL
SELECT $profile, 'bad_signup_nulled', 'kept with signup NULL (not like "Feb 1, 2007")', to_json({{line: line}})::VARCHAR
FROM profile_kept WHERE signup_raw <> '' AND signup_date IS NULL
UNION ALL
SELECT source, 'malformed_line', 'unreadable line ' || line || ': ' || detail, to_json({{line: csv_line}})::VARCHAR
FROM reader_rejects
"""


def _read(con, plays: Path, profile: Path) -> None:
    """Load both files: plays parsed on the way in (no order needed), profile lines in file order."""
    con.execute(_PLAYS_RAW.format(reader=_lines(plays, "rej_plays")))
    con.execute("SET preserve_insertion_order = true")  # rowid = file order: "the first profile row" wins
    con.execute(f"CREATE TABLE profile_lines AS SELECT line FROM {_lines(profile, 'rej_profile')} "
                "WHERE line IS NOT NULL")
    con.execute("SET preserve_insertion_order = false")
    con.execute("CREATE TABLE reader_rejects (source VARCHAR, line BIGINT, detail VARCHAR, csv_line VARCHAR)")
    for table, source in (("rej_plays", schema.PLAYS_FILE), ("rej_profile", schema.PROFILE_FILE)):
        con.execute(f"INSERT INTO reader_rejects SELECT ?, line, string_agg(DISTINCT error_type, '; '), "
                    f"any_value(csv_line) FROM {table} GROUP BY line", [source])


def _clean_names(con) -> None:
    """``names(name_id, name_raw, clean_name, artist_key, key_id)`` for the distinct raw names, computed with
    the schema's own Python; the integer ids (in sorted order) keep the big aggregations off strings."""
    raw = con.sql("SELECT DISTINCT name_raw FROM plays_raw WHERE name_raw IS NOT NULL").to_arrow_table()
    names = sorted(raw.column(0).to_pylist())
    clean = [n if n.isascii() and n.isprintable() and "  " not in n and n.strip() == n
             else schema.clean_artist_name(n) for n in names]  # the fast path is the identity of the full one
    keys = [c.casefold() for c in clean]
    key_id = {k: i for i, k in enumerate(sorted(set(keys)))}
    table = pa.table({"name_id": pa.array(range(len(names)), pa.int32()), "name_raw": pa.array(names, pa.string()),
                      "clean_name": pa.array(clean, pa.string()), "artist_key": pa.array(keys, pa.string()),
                      "key_id": pa.array([key_id[k] for k in keys], pa.int32())})
    con.register("names_py", table)
    con.execute("CREATE TABLE names AS SELECT * FROM names_py")
    con.unregister("names_py")


def _count(con, sql: str, params: list | None = None) -> int:
    return int(con.execute(sql, params or []).fetchone()[0])


def _summarise(con, result: SnapshotValidation) -> None:
    reasons = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason").fetchall())
    result.reasons = {r: int(n) for r, n in reasons.items()}
    by_file = dict(con.execute(
        "SELECT source, count(*) FROM quarantine WHERE reason IN (SELECT unnest($bad)) GROUP BY source",
        {"bad": sorted({*schema.PLAYS_BAD_REASONS, *schema.PROFILE_BAD_REASONS})}).fetchall())
    result.rows_bad = int(by_file.get(schema.PLAYS_FILE, 0))
    result.profile_rows_bad = int(by_file.get(schema.PROFILE_FILE, 0))
    rejects = dict(con.execute("SELECT source, count(*) FROM reader_rejects GROUP BY source").fetchall())
    result.rows_read = _count(con, "SELECT count(*) FROM plays") + int(rejects.get(schema.PLAYS_FILE, 0))
    result.profile_rows_read = (_count(con, "SELECT count(*) FROM profile_lines")
                                + int(rejects.get(schema.PROFILE_FILE, 0)))
    result.rows_valid = _count(con, "SELECT count(*) FROM plays WHERE reason IS NULL")
    result.profile_rows_valid = _count(con, "SELECT count(*) FROM profile WHERE reason IS NULL")
    result.interactions = _count(con, "SELECT count(*) FROM pairs")
    result.users, result.users_with_profile, result.cold_start_users = (int(v) for v in con.execute(
        "SELECT count(*), count(*) FILTER (has_profile), count(*) FILTER (n_artists = 0) FROM users").fetchone())
    result.artists = _count(con, "SELECT count(*) FROM artists")


def _rejection(result: SnapshotValidation, max_bad_share: float) -> str | None:
    if result.bad_share > max_bad_share:
        return (f"{result.day}: {result.bad_share:.2%} of lines are bad (threshold {max_bad_share:.2%}): "
                f"{result.rows_bad} of {result.rows_read} play lines, {result.profile_rows_bad} of "
                f"{result.profile_rows_read} profile lines; reasons {result.reasons}. Rows are in the quarantine.")
    if result.rows_valid == 0:
        return f"{result.day}: no valid play row ({result.rows_read} lines read, reasons {result.reasons})"
    if result.profile_rows_valid == 0:
        return (f"{result.day}: no valid profile row ({result.profile_rows_read} lines read); the profile export "
                "looks broken")
    return None


_COPIES = {
    "interactions.parquet": "SELECT u.user_idx, a.artist_idx, p.plays FROM pairs p JOIN users u USING (user_id) "
                            "JOIN artists a USING (key_id) ORDER BY u.user_idx, a.artist_idx",
    "users.parquet": "SELECT user_idx, user_id, gender, age, age_band, country, signup_date, has_profile, n_artists "
                     "FROM users ORDER BY user_idx",
    "artists.parquet": "SELECT artist_idx, artist_key, artist_name, mbid, listeners, plays FROM artists "
                       "ORDER BY artist_idx",
}


def _build(local: Path, workdir: Path, build: Path, result: SnapshotValidation, max_bad_share: float) -> str | None:
    """Validate in DuckDB and write the staged files into ``build``; returns why the day is rejected, if it is."""
    con = _duckdb(workdir)
    try:
        _read(con, local / schema.PLAYS_FILE, local / schema.PROFILE_FILE)
        _clean_names(con)
        con.execute(_PLAYS_CHECKED)
        con.execute("DROP TABLE plays_raw")
        con.execute(_PROFILE)
        con.execute(_MODEL)
        con.execute(_QUARANTINE, {"plays": schema.PLAYS_FILE, "profile": schema.PROFILE_FILE})
        _summarise(con, result)
        reason = _rejection(result, max_bad_share)
        result.status = "rejected" if reason else "accepted"
        con.execute(f"COPY (SELECT source, reason, detail, record FROM quarantine ORDER BY source, reason, record, "
                    f"detail) TO {_quoted(build / 'quarantine.parquet')} (FORMAT parquet)")
        if not reason:  # a rejected day stages its quarantine only: nothing downstream may read it
            for name, query in _COPIES.items():
                con.execute(f"COPY ({query}) TO {_quoted(build / name)} (FORMAT parquet)")
    finally:
        con.close()
    (build / "summary.json").write_text(json.dumps(result.as_dict(), indent=2))
    return reason


def validate_snapshot(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05) -> SnapshotValidation:
    """Validate one day's snapshot and stage it (or only its quarantine, when rejected) under the data root.

    Raises:
        MissingPartitionError: a file of the day is missing (retryable: the drop may be late).
        RunRejected: bad lines above ``max_bad_share`` in either file, or no valid play or profile row.
    """
    root = root or DataRoot()
    raw_rel, rel = schema.raw_rel_dir(day), schema.staged_rel_dir(day)
    missing = [n for n in (schema.PLAYS_FILE, schema.PROFILE_FILE) if not root.exists(f"{raw_rel}/{n}")]
    if missing:
        raise MissingPartitionError(f"recs snapshot for {day} incomplete: {missing} missing under {root.join(raw_rel)}")
    local = root.local_dir(raw_rel)
    result = SnapshotValidation(day=day.isoformat(), staged_uri=root.join(rel))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recs-ingest-") as tmp:
        if root.is_s3:
            build = Path(tmp) / "staged"
        else:  # next to the destination, so the final rename stays on one file system
            dest = root.base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            build = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
            shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        try:
            reason = _build(local, Path(tmp), build, result, max_bad_share)
            root.put_dir(build, rel, last="summary.json")  # readers start from summary.json
        finally:
            shutil.rmtree(build, ignore_errors=True)
    log.info("validated recs %s in %.1fs: %s", day, time.perf_counter() - started, result.as_dict())
    if reason:
        raise RunRejected(reason)
    return result


def write_quarantine(day: date, root: DataRoot | None = None, dsn: str | None = None) -> int:
    """Replace the day's ``recs`` rows of the ``quarantine`` table with the staged ones, in one transaction."""
    import duckdb

    from pipelines.migrate import ensure_schema
    from pipelines.settings import pg_dsn

    root = root or DataRoot()
    rel = schema.staged_rel_dir(day)
    if not root.exists(f"{rel}/quarantine.parquet"):
        raise MissingPartitionError(f"recs {day} has not been validated: no quarantine under {root.join(rel)}")
    staged = root.local_dir(rel)
    dsn = dsn or pg_dsn()
    ensure_schema(dsn)
    with tempfile.TemporaryDirectory(prefix="recs-quarantine-") as tmp:
        csv_path = Path(tmp) / "quarantine.csv"
        con = duckdb.connect()
        con.execute(f"COPY (SELECT '{schema.PIPELINE}' AS pipeline, '{day.isoformat()}' AS partition_key, source, "
                    f"reason, detail, record FROM {_quoted(staged / 'quarantine.parquet')}) TO {_quoted(csv_path)} "
                    "(FORMAT csv, HEADER true)")
        con.close()
        with db.transaction(dsn) as cur, open(csv_path) as stream:
            db.advisory_xact_lock(cur, f"recs.quarantine.{day}")
            cur.execute("DELETE FROM quarantine WHERE pipeline = %s AND partition_key = %s",
                        (schema.PIPELINE, day.isoformat()))
            n = db.copy_csv(cur, "quarantine", ["pipeline", "partition_key", "source", "reason", "detail", "record"],
                            stream)
    log.info("recs %s: %d quarantine rows in Postgres", day, n)
    return n

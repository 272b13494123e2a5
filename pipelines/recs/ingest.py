"""Validate one day's Last.fm snapshot out of core (DuckDB) and stage it as dense-id Parquet, on the platform's
ingest contract (:mod:`pipelines.ingest`).

Each line is read as one text column and split on tabs in SQL, so a tab inside an artist name (the line then
has more than four fields) is repaired rather than lost: the fields between the mbid and the plays are the
name. A play row is dropped with the first reason of :data:`~pipelines.recs.schema.PLAYS_BAD_REASONS`;
repairs of kept rows (merged duplicates, tab-split names, nulled profile fields, users without a profile) are
recorded too, under :data:`~pipelines.recs.schema.BENIGN_REASONS`, and do not count as bad. Artist names get
exactly ``schema.clean_artist_name`` / ``schema.artist_key``: Python runs on the distinct raw names only (far
fewer than rows) and DuckDB joins the result back.

The run stages ``interactions``, ``users`` and ``artists`` (schemas in :mod:`pipelines.recs.schema`) and
``quarantine.parquet`` in its own folder; the contract decides (the worse of the two files' bad shares against
``max_bad_share``, and no valid play or profile row rejects the day), publishes and commits the quarantine and
the day's status last. Readers use only the accepted run (:func:`staged_dir`).
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

import pyarrow as pa

from pipelines import ingest
from pipelines.days import day_interval
from pipelines.errors import MissingPartitionError
from pipelines.recs import schema
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

STAGED_FILES = ("interactions.parquet", "users.parquet", "artists.parquet", "quarantine.parquet", "summary.json")
#: The two files of a snapshot, any compression; anything else in the folder is reported as unsupported.
FILES = {"plays": schema.PLAYS_FILE, "profile": schema.PROFILE_FILE}


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
           lower(trim(parts[2])) AS gender_raw, trim(parts[3]) AS age_raw,
           trim({ingest.clean_text_sql("parts[4]")}) AS country_raw,
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


def _read(con, plays: Path, profile: Path, result: ingest.IngestResult) -> bool:
    """Load both files: plays parsed on the way in (no order needed), profile lines in file order. A file
    DuckDB cannot read (a truncated gzip stream) is reported on ``result``; returns whether both were read."""
    steps = (  # (file, SQL, keep file order): profile rowid = file order, so "the first profile row" wins
        (plays, _PLAYS_RAW.format(reader=_lines(plays, "rej_plays")), False),
        (profile, f"CREATE TABLE profile_lines AS SELECT line FROM {_lines(profile, 'rej_profile')} "
                  "WHERE line IS NOT NULL", True),
    )
    for path, sql, ordered in steps:
        con.execute(f"SET preserve_insertion_order = {str(ordered).lower()}")
        try:
            con.execute(sql)
        except Exception as exc:  # duckdb.Error: the file is reported, the day rejected, nothing staged
            result.unread(path.name, "unreadable_file", ingest.short_error(exc))
    con.execute("SET preserve_insertion_order = false")
    if result.files_unread:
        return False
    con.execute("CREATE TABLE reader_rejects (source VARCHAR, line BIGINT, detail VARCHAR, csv_line VARCHAR)")
    for table, source in (("rej_plays", schema.PLAYS_FILE), ("rej_profile", schema.PROFILE_FILE)):
        con.execute(f"INSERT INTO reader_rejects SELECT ?, line, string_agg(DISTINCT error_type, '; '), "
                    f"any_value(csv_line) FROM {table} GROUP BY line", [source])
    return True


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


def _summarise(con, result: ingest.IngestResult) -> None:
    reasons = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason").fetchall())
    for reason, n in reasons.items():
        result.add(reason, int(n))
    by_file = dict(con.execute(
        "SELECT source, count(*) FROM quarantine WHERE reason IN (SELECT unnest($bad)) GROUP BY source",
        {"bad": sorted({*schema.PLAYS_BAD_REASONS, *schema.PROFILE_BAD_REASONS})}).fetchall())
    rejects = dict(con.execute("SELECT source, count(*) FROM reader_rejects GROUP BY source").fetchall())
    extra = result.extra
    result.rows_read = _count(con, "SELECT count(*) FROM plays") + int(rejects.get(schema.PLAYS_FILE, 0))
    result.rows_valid = _count(con, "SELECT count(*) FROM plays WHERE reason IS NULL")
    extra["rows_bad_plays"] = int(by_file.get(schema.PLAYS_FILE, 0))
    extra["profile_rows_bad"] = int(by_file.get(schema.PROFILE_FILE, 0))
    extra["profile_rows_read"] = (_count(con, "SELECT count(*) FROM profile_lines")
                                  + int(rejects.get(schema.PROFILE_FILE, 0)))
    extra["profile_rows_valid"] = _count(con, "SELECT count(*) FROM profile WHERE reason IS NULL")
    extra["interactions"] = _count(con, "SELECT count(*) FROM pairs")
    extra["users"], extra["users_with_profile"], extra["cold_start_users"] = (int(v) for v in con.execute(
        "SELECT count(*), count(*) FILTER (has_profile), count(*) FILTER (n_artists = 0) FROM users").fetchone())
    extra["artists"] = _count(con, "SELECT count(*) FROM artists")
    if result.rows_valid and not extra["profile_rows_valid"]:
        result.reject(f"no valid profile row ({extra['profile_rows_read']} lines read); the profile export looks "
                      "broken")


def bad_share(result: ingest.IngestResult) -> float:
    """The worse of the two files' shares of bad lines (a broken profile file must not hide behind plays)."""
    extra = result.extra
    plays = extra.get("rows_bad_plays", 0) / result.rows_read if result.rows_read else 0.0
    profile_read = extra.get("profile_rows_read", 0)
    profile = extra.get("profile_rows_bad", 0) / profile_read if profile_read else 0.0
    extra["bad_share_rule"] = (f"the worse of plays {plays:.2%} and profile {profile:.2%}: "
                               f"{extra.get('rows_bad_plays', 0)} of {result.rows_read} play lines, "
                               f"{extra.get('profile_rows_bad', 0)} of {profile_read} profile lines")
    return max(plays, profile)


_COPIES = {
    "interactions.parquet": "SELECT u.user_idx, a.artist_idx, p.plays FROM pairs p JOIN users u USING (user_id) "
                            "JOIN artists a USING (key_id) ORDER BY u.user_idx, a.artist_idx",
    "users.parquet": "SELECT user_idx, user_id, gender, age, age_band, country, signup_date, has_profile, n_artists "
                     "FROM users ORDER BY user_idx",
    "artists.parquet": "SELECT artist_idx, artist_key, artist_name, mbid, listeners, plays FROM artists "
                       "ORDER BY artist_idx",
}


def _snapshot_files(root: DataRoot, day: date, result: ingest.IngestResult, workdir: Path) -> dict[str, Path]:
    """``{"plays": path, "profile": path}`` (any case and compression); other files are reported."""
    rel = schema.raw_rel_dir(day)
    found: dict[str, ingest.DropFile] = {}
    readable, unsupported = ingest.drop_files(root, rel, ("tsv",))
    for item in readable:
        stem = item.name.lower().split(".tsv")[0] + ".tsv"
        kind = next((k for k, name in FILES.items() if stem == name), None)
        if kind is None or kind in found:
            result.unread(item.name, "unsupported_file", f"not one of the snapshot's files {sorted(FILES.values())}")
        else:
            found[kind] = item
    for item in unsupported:
        result.unread(item.name, "unsupported_file", f"not one of the snapshot's files {sorted(FILES.values())}")
    missing = [FILES[k] for k in FILES if k not in found]
    if missing:
        raise MissingPartitionError(f"recs snapshot for {day} incomplete: {missing} missing under {root.join(rel)}")
    paths = {}
    for kind, item in found.items():
        try:
            paths[kind] = ingest.plain_path(item, workdir)
        except Exception as exc:  # a broken bz2 stream
            result.unread(item.name, "unreadable_file", ingest.short_error(exc))
    return paths


def _validator(day: date, root: DataRoot) -> ingest.Validator:
    def validate(staging: ingest.Workspace, result: ingest.IngestResult) -> None:
        started = time.perf_counter()
        paths = _snapshot_files(root, day, result, staging.workdir)
        if len(paths) < len(FILES):
            return  # a file could not be opened: reported, the day is rejected
        con = _duckdb(staging.workdir)
        try:
            if not _read(con, paths["plays"], paths["profile"], result):
                return
            result.files = [p.name for p in paths.values()]
            _clean_names(con)
            con.execute(_PLAYS_CHECKED)
            con.execute("DROP TABLE plays_raw")
            con.execute(_PROFILE)
            con.execute(_MODEL)
            con.execute(_QUARANTINE, {"plays": schema.PLAYS_FILE, "profile": schema.PROFILE_FILE})
            _summarise(con, result)
            con.execute(f"COPY (SELECT source, reason, detail, record FROM quarantine ORDER BY source, reason, "
                        f"record, detail) TO {_quoted(staging.path('quarantine.parquet'))} (FORMAT parquet)")
            for name, query in _COPIES.items():
                con.execute(f"COPY ({query}) TO {_quoted(staging.path(name))} (FORMAT parquet)")
        finally:
            con.close()
        result.extra["seconds"] = round(time.perf_counter() - started, 3)

    return validate


def validate_snapshot(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05) -> ingest.IngestResult:
    """Validate one day's snapshot under the ingest contract and stage it in the run's own folder.

    Raises:
        MissingPartitionError: a file of the day is missing (retryable: the drop may be late).
        RunRejected: bad lines above ``max_bad_share`` in either file, no valid play or profile row, or a file
            that cannot be read.
    """
    root = root or DataRoot()
    result = ingest.run_ingest(schema.PIPELINE, day.isoformat(), _validator(day, root), max_bad_share=max_bad_share,
                               params={"day": day}, interval=day_interval(day), root=root,
                               benign_reasons=schema.BENIGN_REASONS, bad_share=bad_share)
    log.info("validated recs %s: %s", day, result.as_dict())
    return result


def inspect_snapshot(day: date, root: DataRoot | None = None, max_bad_share: float = 0.05,
                     workspace: ingest.Workspace | None = None) -> ingest.IngestResult:
    """:func:`validate_snapshot` without PostgreSQL or publishing (previews, unit tests, fuzzing)."""
    return ingest.inspect(schema.PIPELINE, day.isoformat(), _validator(day, root or DataRoot()),
                          max_bad_share=max_bad_share, benign_reasons=schema.BENIGN_REASONS, bad_share=bad_share,
                          workspace=workspace)


def staged_dir(root: DataRoot, day: date) -> Path:
    """Local folder of the day's accepted snapshot (mirrored from S3 when needed)."""
    return ingest.accepted_dir(schema.PIPELINE, day.isoformat(), root)

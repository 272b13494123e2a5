"""Hostile inputs for the recommendations ingest, through ``recs`` jobs and the command line."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date

import pytest

from pipelines import db, ingest
from pipelines.recs import jobs, schema
from tests.hostile.registry import case

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 2)
USERS = [hashlib.sha1(f"u{i}".encode()).hexdigest() for i in range(40)]


def _plays(n_users: int = 40, per_user: int = 6) -> str:
    return "".join(f"{u}\t\tArtist {(i + j) % 25}\t{5 + j}\n" for i, u in enumerate(USERS[:n_users])
                   for j in range(per_user))


def _profile(n_users: int = 40) -> str:
    return "".join(f"{u}\tf\t28\tPoland\tFeb 1, 2007\n" for u in USERS[:n_users])


def _folder(root):
    folder = root / schema.raw_rel_dir(DAY)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _quarantine() -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'recs' GROUP BY 1")
    return {r["reason"]: r["n"] for r in rows}


@case("recs", "NUL bytes: one inside an artist name, one inside a user id, one in a profile's country",
      "the name is cleaned (`Bad Name`) and the row kept; the user-id row is quarantined (`bad_user_id`, NUL shown "
      "as ␀); the country loses the NUL; the day is accepted")
def test_nul_bytes(pg_dsn, data_root):
    folder = _folder(data_root)
    bad_user = USERS[1][:20] + "\x00" + USERS[1][21:]
    (folder / schema.PLAYS_FILE).write_bytes((_plays() + f"{USERS[0]}\t\tBad\x00Name\t3\n"
                                              f"{bad_user}\t\tMuse\t3\n").encode())
    (folder / schema.PROFILE_FILE).write_bytes((_profile(39) + f"{USERS[39]}\tf\t28\tPol\x00and\tFeb 1, 2007\n"
                                                ).encode())
    result = jobs.validate(DAY, 0.05)
    assert result["status"] == "accepted" and result["rows_valid"] == 241
    assert _quarantine() == {"bad_user_id": 1}
    record = db.query("SELECT record::text AS r FROM quarantine")[0]["r"]
    assert "\u2400" in record and "\\u0000" not in record
    staged = ingest.accepted_dir("recs", DAY.isoformat())
    import pyarrow.parquet as pq

    assert "Bad Name" in pq.read_table(staged / "artists.parquet")["artist_name"].to_pylist()
    assert set(pq.read_table(staged / "users.parquet")["country"].to_pylist()) == {"Poland"}


@case("recs", "a truncated `usersha1-artmbid-artname-plays.tsv.gz`",
      "exit 3, one line naming the file (`unreadable_file`); the snapshot is rejected, nothing staged for readers")
def test_truncated_gzip_plays(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / f"{schema.PLAYS_FILE}.gz").write_bytes(gzip.compress((_plays() * 40).encode())[:400])
    (folder / schema.PROFILE_FILE).write_text(_profile())
    code, out, err = cli("recs", "run", "--day", DAY, "--eval-users", "0")
    assert code == 3 and out == ""
    assert err.startswith("error: recs 2026-11-02: 1 file(s) could not be read (usersha1-artmbid-artname-plays.tsv")
    assert _quarantine() == {"unreadable_file": 1}
    assert ingest.accepted("recs", DAY.isoformat()) is None


@case("recs", "a third file (`notes.txt`) beside the two Last.fm files",
      "exit 3; `unsupported_file` in the quarantine; the snapshot is rejected")
def test_extra_file(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / schema.PLAYS_FILE).write_text(_plays())
    (folder / schema.PROFILE_FILE).write_text(_profile())
    (folder / "notes.txt").write_text("hello")
    code, _, err = cli("recs", "run", "--day", DAY, "--eval-users", "0")
    assert code == 3 and "notes.txt: not one of the snapshot's files" in err
    assert _quarantine() == {"unsupported_file": 1}


@case("recs", "upper-case, gzip-compressed file names (`USERSHA1-...-PLAYS.TSV.GZ`)", "both files are read")
def test_upper_case_compressed_names(pg_dsn, data_root):
    folder = _folder(data_root)
    (folder / f"{schema.PLAYS_FILE.upper()}.GZ").write_bytes(gzip.compress(_plays().encode()))
    (folder / schema.PROFILE_FILE.upper()).write_text(_profile())
    result = jobs.validate(DAY, 0.05)
    assert (result["status"], result["rows_valid"], result["users"]) == ("accepted", 240, 40)


@case("recs", "the profile file missing", "exit 4 (late input: retried), naming the missing file")
def test_missing_profile(pg_dsn, data_root, cli):
    (_folder(data_root) / schema.PLAYS_FILE).write_text(_plays())
    code, _, err = cli("recs", "run", "--day", DAY)
    assert code == 4 and "['usersha1-profile.tsv'] missing" in err


@case("recs", "a snapshot where every user has one artist, then `recs evaluate`",
      "a clear skip (`nothing to evaluate`), no NaN metric written")
def test_nobody_to_evaluate(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / schema.PLAYS_FILE).write_text(_plays(per_user=1))
    (folder / schema.PROFILE_FILE).write_text(_profile())
    jobs.validate(DAY, 0.05)
    code, out, _ = cli("recs", "evaluate", "--day", DAY, "--eval-users", "100")
    assert code == 0 and '"skipped": true' in out and "nothing to evaluate" in out
    assert db.query("SELECT count(*) AS n FROM run_metrics JOIN runs USING (run_id) "
                    "WHERE kind = 'evaluate'")[0]["n"] == 0


@case("recs", "a profile file of nothing but garbage lines", "exit 3, `no valid profile row`")
def test_garbage_profile(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / schema.PLAYS_FILE).write_text(_plays())
    (folder / schema.PROFILE_FILE).write_text("garbage\n" * 3)
    code, _, err = cli("recs", "run", "--day", DAY, "--eval-users", "0", "--max-bad-share", "1")
    assert code == 3 and "no valid profile row (3 lines read)" in err

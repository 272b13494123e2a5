"""The recs ingest on generated and hand-written snapshots: every reason, the staged files, Postgres.

Most tests validate with ``inspect_snapshot`` (the contract's validation and decision, without Postgres) into a
workspace they read; the others run ``validate_snapshot`` (the whole contract) against a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import db, ingest
from pipelines.errors import MissingPartitionError, RunRejected
from pipelines.recs import schema
from pipelines.recs.generate import RecsDataSpec, Truth, write_snapshot
from pipelines.recs.ingest import inspect_snapshot, validate_snapshot
from pipelines.storage import DataRoot

pytestmark = pytest.mark.integration

BASE = RecsDataSpec(n_users=800, n_artists=2000, seed=11)
# Louder quirks than the defaults, so every reason occurs several times; still under the 5% threshold.
SPEC = dataclasses.replace(BASE, **{f.name: getattr(BASE, f.name) * 4 for f in dataclasses.fields(BASE)
                                    if f.name.endswith("_rate") and f.name != "empty_mbid_rate"})
DAY = SPEC.start
U = [hashlib.sha1(f"user-{i}".encode()).hexdigest() for i in range(8)]
MBID_A, MBID_B = "5f8e6b4c-2a1d-4c3b-9e7f-0a1b2c3d4e5f", "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e"

STAGED_SCHEMAS = {
    "interactions.parquet": {"user_idx": pa.int32(), "artist_idx": pa.int32(), "plays": pa.int64()},
    "users.parquet": {"user_idx": pa.int32(), "user_id": pa.string(), "gender": pa.string(), "age": pa.int16(),
                      "age_band": pa.string(), "country": pa.string(), "signup_date": pa.date32(),
                      "has_profile": pa.bool_(), "n_artists": pa.int32()},
    "artists.parquet": {"artist_idx": pa.int32(), "artist_key": pa.string(), "artist_name": pa.string(),
                        "mbid": pa.string(), "listeners": pa.int32(), "plays": pa.int64()},
    "quarantine.parquet": {"source": pa.string(), "reason": pa.string(), "detail": pa.string(),
                           "record": pa.string()},
}


def _inspect(root, max_bad_share: float = 0.05, name: str = "ws"):
    """Validate DAY into a workspace under the test's folder; returns (result, staged folder)."""
    workspace = ingest.Workspace(root.parent / name)
    return inspect_snapshot(DAY, DataRoot(), max_bad_share, workspace), workspace.local


def _table(staged, name: str) -> list[dict]:
    return pq.read_table(staged / name).to_pylist()


def _drop(root, plays: list[str | bytes], profile: list[str], day=DAY) -> None:
    folder = root / schema.raw_rel_dir(day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / schema.PLAYS_FILE).write_bytes(b"".join(
        (line if isinstance(line, bytes) else line.encode()) + b"\n" for line in plays))
    (folder / schema.PROFILE_FILE).write_text("".join(line + "\n" for line in profile), encoding="utf-8")


@pytest.fixture
def generated(data_root):
    return data_root, write_snapshot(SPEC, data_root, DAY)


def test_quarantine_matches_what_the_generator_planted(generated):
    root, report = generated
    result, staged = _inspect(root)
    assert result.reasons == report["planted"]
    quarantine = _table(staged, "quarantine.parquet")
    assert Counter(r["reason"] for r in quarantine) == Counter(report["planted"])
    assert result.rows_read == report["rows"] and result.extra["profile_rows_read"] == report["profile_rows"]
    bad = sum(r["source"] == schema.PLAYS_FILE and r["reason"] in schema.PLAYS_BAD_REASONS for r in quarantine)
    assert result.extra["rows_bad_plays"] == bad and result.rows_valid == report["rows"] - bad
    assert result.extra["interactions"] == result.rows_valid - report["planted"]["duplicate_merged"]
    assert result.extra["cold_start_users"] == report["normal"]["cold_start_users"]
    assert result.status == "accepted" and 0 < result.bad_share < 0.05


def test_staged_files_follow_the_contract(generated):
    root, _ = generated
    _, staged = _inspect(root)
    for name, columns in STAGED_SCHEMAS.items():
        found = pq.read_schema(staged / name)
        assert {f.name: f.type for f in found} == columns, name
        assert found.names == list(columns), name
    users = pq.read_table(staged / "users.parquet").to_pandas()
    artists = pq.read_table(staged / "artists.parquet").to_pandas()
    plays = pq.read_table(staged / "interactions.parquet").to_pandas()
    assert users["user_idx"].tolist() == list(range(len(users)))
    assert users["user_id"].tolist() == sorted(users["user_id"]) and users["user_id"].is_unique
    assert users["user_id"].str.fullmatch(schema.USER_ID_PATTERN[1:-1]).all()
    assert artists["artist_idx"].tolist() == list(range(len(artists)))
    assert artists["artist_key"].tolist() == sorted(artists["artist_key"]) and artists["artist_key"].is_unique
    assert (plays["user_idx"].diff().dropna() >= 0).all()
    assert not plays.duplicated(["user_idx", "artist_idx"]).any() and (plays["plays"] > 0).all()
    assert plays["user_idx"].max() < len(users) and plays["artist_idx"].max() < len(artists)
    n_artists = plays.groupby("user_idx").size().reindex(users["user_idx"], fill_value=0)
    assert (n_artists.to_numpy() == users["n_artists"].to_numpy()).all()
    assert (plays.groupby("artist_idx").size().to_numpy() == artists["listeners"].to_numpy()).all()
    assert (plays.groupby("artist_idx")["plays"].sum().to_numpy() == artists["plays"].to_numpy()).all()
    assert users["age"].dropna().between(*schema.AGE_RANGE).all()
    assert set(users["gender"].dropna()) == {"m", "f"}
    assert (users["age_band"].isna() == users["age"].isna()).all()
    # Every spelling collapsed onto a real artist: keys are the truth's, names fold to their key.
    truth = Truth.load(root, SPEC)
    assert set(artists["artist_key"]) <= set(truth.artist_keys)
    assert (artists["artist_name"].map(str.casefold) == artists["artist_key"]).all()
    assert artists["mbid"].notna().mean() > 0.5


def test_rerun_stages_identical_files(generated):
    root, _ = generated
    _, first_dir = _inspect(root, name="one")
    _, again_dir = _inspect(root, name="two")
    first = {p.name: p.read_bytes() for p in first_dir.iterdir()}
    again = {p.name: p.read_bytes() for p in again_dir.iterdir()}
    assert set(first) == set(STAGED_SCHEMAS)
    assert first == again


def test_every_reason_on_a_hand_written_snapshot(data_root):
    _drop(data_root, [
        f"{U[0]}\t{MBID_A}\tSigur Rós\t100",
        f"{U[1]}\t\tSigur Ro\u0301s\t50",  # NFD
        f"{U[2]}\t{MBID_A}\tＳｉｇｕｒ\u3000Ｒóｓ\t30",  # full-width
        f"{U[3]}\t{MBID_B}\t\u200bSigur Rós\t20",  # zero-width space
        f"{U[4]}\t{MBID_A}\tSIGUR RÓS\t10",
        f"{U[5]}\t{MBID_A.upper()}\tsigur  rós \t5",
        f"{U[0]}\t\tThe\tHappy Engines\t32",  # a tab inside the name
        f"{U[1]}\t\tRadiohead\t10",
        f"{U[1]}\t\tradiohead\t5",  # the same artist again: merged
        f"  {U[2].upper()}\t\tRadiohead\t7",  # an upper-case id is the same user
        f"{U[0]}\tRadiohead",  # malformed_line
        b"\xff\xfe\tnot utf-8\tat all\t3",  # malformed_line (undecodable)
        "not-a-user\t\tRadiohead\t3",  # bad_user_id
        f"{U[0]}\t\t \t3",  # missing_artist
        f"{U[0]}\t\t\u200b\t4",  # missing_artist (only a zero-width space)
        f"{U[0]}\t\tMuse\tabc",  # bad_plays
        f"{U[0]}\t\tMuse\t1.5",  # bad_plays
        f"{U[0]}\t\tMuse\t0",  # nonpositive_plays
        f"{U[0]}\t\tMuse\t-3",  # nonpositive_plays
        f"{U[0]}\t\tMuse\t2000000",  # absurd_plays
        f"{U[0]}\t\tMuse\t{'9' * 45}",  # absurd_plays
    ], [
        f"{U[0]}\tm\t25\tIceland\tFeb 1, 2007",
        f"{U[1]}\tF\t150\t\tMar 3, 2008",  # age nulled
        f"{U[2]}\tx\t-1\tGermany\t2007-02-01",  # gender, age and signup nulled
        f"{U[3]}\t\t\tPoland\tJan 10, 2006",
        f"{U[4]}\tf\tabc\tSweden\tDec 31, 2005",  # age nulled
        f"{U[4]}\tm\t30\tSweden\tDec 31, 2005",  # duplicate_profile: the first row wins
        f"{U[6]}\tm\t40\tSpain\tFeb 1, 2007",  # a cold start: profile, no plays
        f"{U[7]}\tm\t20",  # malformed_line
        "XYZ\tm\t20\tSpain\tFeb 1, 2007",  # bad_user_id
    ])  # U[5] has plays and no profile
    result, staged = _inspect(data_root, max_bad_share=1.0)
    assert result.reasons == {
        "malformed_line": 3, "bad_user_id": 2, "missing_artist": 2, "bad_plays": 2, "nonpositive_plays": 2,
        "absurd_plays": 2, "tab_in_name_repaired": 1, "duplicate_merged": 1, "bad_age_nulled": 3,
        "bad_gender_nulled": 1, "bad_signup_nulled": 1, "duplicate_profile": 1, "user_without_profile": 1}
    extra = result.extra
    assert (result.rows_read, result.rows_valid, extra["rows_bad_plays"]) == (21, 10, 11)
    assert (extra["profile_rows_read"], extra["profile_rows_valid"], extra["profile_rows_bad"]) == (9, 6, 2)
    assert (extra["users"], extra["users_with_profile"], extra["cold_start_users"], extra["artists"]) == (7, 6, 1, 3)
    artists = {a["artist_key"]: a for a in _table(staged, "artists.parquet")}
    assert set(artists) == {"sigur rós", "the happy engines", "radiohead"}  # six spellings, one artist
    sigur = artists["sigur rós"]
    assert (sigur["artist_name"], sigur["mbid"], sigur["listeners"], sigur["plays"]) == \
           ("Sigur Rós", MBID_A.lower(), 6, 215)
    assert artists["the happy engines"]["artist_name"] == "The Happy Engines"
    assert (artists["radiohead"]["listeners"], artists["radiohead"]["plays"]) == (2, 22)
    users = {u["user_id"]: u for u in _table(staged, "users.parquet")}
    assert set(users) == {U[i] for i in range(7)}
    idx = {a["artist_key"]: a["artist_idx"] for a in artists.values()}
    pairs = {(r["user_idx"], r["artist_idx"]): r["plays"] for r in _table(staged, "interactions.parquet")}
    assert pairs[(users[U[1]]["user_idx"], idx["radiohead"])] == 15  # merged by summing
    assert pairs[(users[U[2]]["user_idx"], idx["radiohead"])] == 7
    assert pairs[(users[U[0]]["user_idx"], idx["the happy engines"])] == 32
    expect = {  # gender, age, age_band, country, signup_date, has_profile, n_artists
        U[0]: ("m", 25, "25-34", "Iceland", date(2007, 2, 1), True, 2),
        U[1]: ("f", None, None, None, date(2008, 3, 3), True, 2),
        U[2]: (None, None, None, "Germany", None, True, 2),
        U[3]: (None, None, None, "Poland", date(2006, 1, 10), True, 1),
        U[4]: ("f", None, None, "Sweden", date(2005, 12, 31), True, 1),
        U[5]: (None, None, None, None, None, False, 1),
        U[6]: ("m", 40, "35-44", "Spain", date(2007, 2, 1), True, 0),
    }
    columns = ("gender", "age", "age_band", "country", "signup_date", "has_profile", "n_artists")
    assert {u: tuple(row[c] for c in columns) for u, row in users.items()} == expect
    quarantine = _table(staged, "quarantine.parquet")
    assert Counter(q["reason"] for q in quarantine) == Counter(result.reasons)
    assert all(json.loads(q["record"]) for q in quarantine)
    assert {q["source"] for q in quarantine if q["reason"] == "duplicate_profile"} == {schema.PROFILE_FILE}


def test_past_the_threshold_the_day_is_rejected_and_quarantined(data_root, pg_dsn):
    report = write_snapshot(dataclasses.replace(SPEC, bad_plays_rate=0.08), data_root, DAY)
    with pytest.raises(RunRejected, match=r"rows are bad \(.*% > threshold 5.00%\).*the worse of plays"):
        validate_snapshot(DAY, DataRoot(), max_bad_share=0.05)
    status = ingest.partition_status("recs", DAY.isoformat())
    assert status["status"] == "rejected" and ingest.accepted("recs", DAY.isoformat()) is None
    reasons = {r["reason"]: r["n"] for r in db.query(
        "SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'recs' GROUP BY 1")}
    assert reasons["bad_plays"] == report["planted"]["bad_plays"]
    assert sum(reasons.values()) == status["rows_quarantined"]
    # A looser threshold accepts the same drop: readers now get the full staged set.
    assert validate_snapshot(DAY, DataRoot(), max_bad_share=0.2).status == "accepted"
    staged = ingest.accepted_dir("recs", DAY.isoformat())
    assert sorted(p.name for p in staged.iterdir()) == sorted([*STAGED_SCHEMAS, "summary.json"])


def test_no_valid_row_is_rejected(data_root):
    _drop(data_root, [f"{U[0]}\t\tMuse\tabc"], [f"{U[0]}\tm\t25\tIceland\tFeb 1, 2007"])
    result, _ = _inspect(data_root, max_bad_share=1.0)
    assert result.status == "rejected" and "no valid row" in result.rejection
    _drop(data_root, [f"{U[0]}\t\tMuse\t3"], ["garbage"])
    result, _ = _inspect(data_root, max_bad_share=1.0, name="ws2")
    assert result.status == "rejected" and "no valid profile row" in result.rejection


def test_missing_files_are_retryable(data_root):
    with pytest.raises(MissingPartitionError, match="missing"):
        _inspect(data_root)
    folder = data_root / schema.raw_rel_dir(DAY)
    folder.mkdir(parents=True)
    (folder / schema.PLAYS_FILE).write_text(f"{U[0]}\t\tMuse\t3\n")
    with pytest.raises(MissingPartitionError, match=schema.PROFILE_FILE):
        _inspect(data_root)


def test_quarantine_rows_land_in_postgres_and_are_replaced_on_rerun(generated, pg_dsn):
    _, report = generated
    validate_snapshot(DAY, DataRoot())
    with db.transaction() as cur:  # rows of other partitions and pipelines must survive
        cur.execute("INSERT INTO quarantine (pipeline, partition_key, reason) VALUES ('recs', '2000-01-01', 'x'), "
                    "('retention', %s, 'y')", (DAY.isoformat(),))
    validate_snapshot(DAY, DataRoot())
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'recs' AND partition_key = %s "
                    "GROUP BY reason", (DAY.isoformat(),))
    assert {r["reason"]: r["n"] for r in rows} == report["planted"]
    assert db.query("SELECT count(*) AS n FROM quarantine")[0]["n"] == sum(report["planted"].values()) + 2
    sample = db.query("SELECT source, record FROM quarantine WHERE reason = 'bad_plays' LIMIT 1")[0]
    assert sample["source"] == schema.PLAYS_FILE and set(sample["record"]) == {"user_id", "mbid", "artist_name",
                                                                               "plays"}


def test_the_oracle_ranks_the_held_artists_first(generated):
    root, _ = generated
    _, staged = _inspect(root)
    users = pq.read_table(staged / "users.parquet").to_pandas()
    artists = pq.read_table(staged / "artists.parquet").to_pandas()
    plays = pq.read_table(staged / "interactions.parquet").to_pandas()
    truth = Truth.load(root, SPEC)
    keys = artists["artist_key"].tolist()
    sample = users[users["n_artists"] >= 20].head(100)
    pref = truth.preference(sample["user_id"].tolist(), keys)
    hits = []
    for row, user_idx in enumerate(sample["user_idx"]):
        held = set(plays.loc[plays["user_idx"] == user_idx, "artist_idx"])
        top = np.argsort(-pref[row])[:10]
        hits.append(len(held & set(top.tolist())) / 10)
    assert np.mean(hits) > 0.3  # what the truth ranks highest is mostly what users listen to

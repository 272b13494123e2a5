"""Hostile inputs for the socio-demographic ingest, through its jobs and the command line."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import db, ingest
from pipelines.sociodemo import jobs, schema
from tests.hostile.registry import case

pytestmark = pytest.mark.integration

DAY = date(2024, 6, 1)
VIDEOS = [f"video_{i}" for i in range(20)]


def _types() -> pa.Schema:
    from pipelines.sociodemo.generate import _arrow_type

    return pa.schema([(n, _arrow_type(t)) for n, t in schema.RAW_EVENT_COLUMNS])


def _catalogue(root) -> None:
    path = root / schema.VIDEO_INFO_REL
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"rutube_video_id": VIDEOS, "title": [f"t{i}" for i in range(20)],
                             "category": ["Music"] * 10 + ["News"] * 10, "duration": [600_000] * 20,
                             "author_id": list(range(20))}), path)


def _events(n: int, region: str = "Moscow", video: str = "video_1", uid0: int = 1) -> pa.Table:
    ts = datetime(2024, 6, 1, 12, tzinfo=UTC)
    return pa.table({
        "event_timestamp": [ts + timedelta(seconds=i) for i in range(n)],
        "region": [region] * n, "ua_device_type": ["desktop"] * n, "ua_client_type": ["browser"] * n,
        "ua_os": ["Windows"] * n, "ua_client_name": ["Chrome"] * n, "total_watchtime": [300] * n,
        "rutube_video_id": [video] * n, "viewer_uid": list(range(uid0, uid0 + n)),
    }, schema=_types())


def _folder(root):
    _catalogue(root)
    folder = root / schema.raw_events_rel_dir(DAY)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _quarantine() -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'sociodemo' GROUP BY 1")
    return {r["reason"]: r["n"] for r in rows}


@case("sociodemo", "NUL bytes in the region of valid rows and of a row with an unknown video",
      "valid rows are staged with the NUL removed; the bad row is quarantined (`unknown_video`) with ␀ in its "
      "record; the day is accepted")
def test_nul_bytes(pg_dsn, data_root):
    folder = _folder(data_root)
    pq.write_table(pa.concat_tables([_events(50, region="Mos\x00cow"),
                                     _events(1, region="Ka\x00zan", video="nope", uid0=900)]), folder / "a.parquet")
    result = jobs.validate(DAY, 0.05)
    assert (result["status"], result["rows_valid"]) == ("accepted", 50)
    assert _quarantine() == {"unknown_video": 1}
    assert "Ka\u2400zan" in db.query("SELECT record->>'region' AS r FROM quarantine")[0]["r"]
    staged = ingest.accepted_dir("sociodemo", DAY.isoformat()) / "events.parquet"
    assert set(pq.read_table(staged)["region"].to_pylist()) == {"Moscow"}


@case("sociodemo", "a Parquet file with a corrupt data page beside a good file",
      "exit 3 naming the corrupt file (`unreadable_file`); the good file is read and counted; the day is "
      "rejected, so nothing reaches the histories")
def test_corrupt_page(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    pq.write_table(_events(50), folder / "good.parquet")
    pq.write_table(_events(5000, uid0=1000), folder / "bad.parquet", compression="zstd")
    chunk = pq.ParquetFile(folder / "bad.parquet").metadata.row_group(0).column(8)  # viewer_uid
    start = (chunk.dictionary_page_offset or chunk.data_page_offset) + 30  # past the page header
    data = bytearray((folder / "bad.parquet").read_bytes())
    for i in range(start, start + 200):  # garble the compressed page; the footer stays intact
        data[i] ^= 0x5A
    (folder / "bad.parquet").write_bytes(bytes(data))
    code, _, err = cli("sociodemo", "run", "--day", DAY, "--no-score")
    assert code == 3 and "1 file(s) could not be read (bad.parquet: " in err
    assert _quarantine() == {"unreadable_file": 1}
    status = ingest.partition_status("sociodemo", DAY.isoformat())
    assert status["status"] == "rejected" and status["rows_read"] == 50
    assert ingest.accepted("sociodemo", DAY.isoformat()) is None


@case("sociodemo", "a text file named `x.parquet`", "exit 3, `x.parquet: not a readable Parquet file`")
def test_not_parquet(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    pq.write_table(_events(50), folder / "good.parquet")
    (folder / "x.parquet").write_text("viewer_uid,region\n1,Moscow\n")
    code, _, err = cli("sociodemo", "run", "--day", DAY, "--no-score")
    assert code == 3 and "x.parquet: not a readable Parquet file" in err
    assert _quarantine() == {"unreadable_file": 1}


@case("sociodemo", "a CSV export dropped beside the Parquet files",
      "exit 3, `unsupported_file`: every file is read or reported, never skipped")
def test_csv_in_the_drop(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    pq.write_table(_events(50), folder / "good.parquet")
    (folder / "more.csv").write_text("viewer_uid\n1\n")
    code, _, err = cli("sociodemo", "run", "--day", DAY, "--no-score")
    assert code == 3 and "more.csv: not a file type this pipeline reads" in err
    assert _quarantine() == {"unsupported_file": 1}


@case("sociodemo", "a file without the `viewer_uid` column",
      "exit 3, `bad_header` naming the missing column; the day is rejected")
def test_missing_column(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    pq.write_table(_events(50), folder / "good.parquet")
    pq.write_table(_events(5).drop(["viewer_uid"]), folder / "nouid.parquet")
    code, _, err = cli("sociodemo", "run", "--day", DAY, "--no-score")
    assert code == 3 and "nouid.parquet: required column(s) ['viewer_uid'] missing" in err
    assert _quarantine() == {"bad_header": 1}


@case("sociodemo", "a NUL inside a target's sex, and a target file without `age_class`",
      "the row is quarantined as `bad_sex`; the file without the column rejects the targets (exit 3 style error)")
def test_hostile_targets(pg_dsn, data_root):
    from pipelines.errors import RunRejected

    folder = _folder(data_root)
    pq.write_table(_events(50), folder / "a.parquet")
    jobs.validate(DAY, 0.05)
    targets = data_root / schema.TARGETS_REL
    targets.parent.mkdir(parents=True, exist_ok=True)
    rows = [(i, 30, "male", 1) for i in range(1, 40)] + [(40, 30, "ma\x00le", 1)]
    pq.write_table(pa.table({"viewer_uid": [r[0] for r in rows], "age": [r[1] for r in rows],
                             "sex": [r[2] for r in rows], "age_class": [r[3] for r in rows]}), targets)
    result = jobs.validate_targets(0.05)
    assert result["reasons"]["bad_sex"] == 1 and result["rows_valid"] == 39
    pq.write_table(pa.table({"viewer_uid": [1], "age": [30], "sex": ["male"]}), targets)
    with pytest.raises(RunRejected, match=r"targets.parquet: required column\(s\) \['age_class'\] missing"):
        jobs.validate_targets(0.05)
    assert ingest.partition_status("sociodemo", "targets")["status"] == "accepted"  # the earlier one stays

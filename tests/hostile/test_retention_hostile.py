"""Hostile inputs for the retention pipeline, through ``retention run`` / ``q1`` and its jobs."""

from __future__ import annotations

import bz2
import gzip
import threading
from datetime import date

import pytest

from pipelines import db, ingest
from pipelines.errors import MissingPartitionError, RunRejected
from pipelines.retention import jobs
from tests.hostile.registry import case

pytestmark = pytest.mark.integration

DAY = date(2017, 4, 1)
HEADER = "event_id,uid,time,event_name,platform\n"


def _rows(n: int, start: int = 0, platform: str = "ios") -> str:
    return "".join(f"{i},u{i},2017-04-01 08:{i % 60:02d}:00,APP_OPEN,{platform}\n" for i in range(start, start + n))


def _folder(root, day: date = DAY):
    folder = root / "raw" / "piwik_track" / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _loaded(day: date = DAY) -> int:
    return db.query("SELECT count(*) AS n FROM piwik_track WHERE event_date = %s", (day,))[0]["n"]


def _quarantine(day: date = DAY) -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'retention' AND partition_key = %s "
                    "GROUP BY 1", (day.isoformat(),))
    return {r["reason"]: r["n"] for r in rows}


def _nothing_accepted(day: date = DAY) -> None:
    assert ingest.accepted("retention", day.isoformat()) is None
    assert _loaded(day) == 0
    assert db.query("SELECT count(*) AS n FROM retention_day_loads")[0]["n"] == 0


@case("retention", "a NUL byte inside a uid", "the row is quarantined (`control_characters`, NUL shown as ␀); "
      "the other 40 rows load")
def test_nul_in_uid(pg_dsn, data_root, cli):
    (_folder(data_root) / "export.csv").write_bytes((HEADER + _rows(40) + "99,u\x0099,2017-04-01 09:00:00,"
                                                     "APP_OPEN,ios\n").encode())
    code, _, err = cli("retention", "run", "--day", DAY)
    assert (code, err) == (0, "")
    assert _loaded() == 40 and _quarantine() == {"control_characters": 1}
    record = db.query("SELECT record->>'uid' AS uid FROM quarantine")[0]["uid"]
    assert record == "u\u240099"


@case("retention", "NUL and other control bytes in an optional text column (platform)",
      "the row loads with the control characters removed")
def test_nul_in_optional_column(pg_dsn, data_root, cli):
    (_folder(data_root) / "export.csv").write_bytes((HEADER + _rows(10, platform="i\x00o\x07s")).encode())
    assert cli("retention", "run", "--day", DAY)[0] == 0
    assert db.query("SELECT DISTINCT platform FROM piwik_track") == [{"platform": "ios"}]


@case("retention", "a second file named `b.CSV` (upper-case suffix) and a third `c.csv.bz2`",
      "all three files are read: 30 + 20 + 10 rows load")
def test_upper_case_and_bz2_files_are_read(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.csv").write_text(HEADER + _rows(30))
    (folder / "b.CSV").write_text(HEADER + _rows(20, start=100))
    (folder / "c.csv.bz2").write_bytes(bz2.compress((HEADER + _rows(10, start=200)).encode()))
    assert cli("retention", "run", "--day", DAY)[0] == 0
    assert _loaded() == 60
    assert ingest.accepted("retention", DAY.isoformat())["files"] == 3


@case("retention", "a tab-separated drop `export.tsv`", "the header and rows are split on tabs: 15 rows load")
def test_tsv_drop(pg_dsn, data_root, cli):
    text = (HEADER + _rows(15)).replace(",", "\t")
    (_folder(data_root) / "export.tsv").write_text(text)
    assert cli("retention", "run", "--day", DAY)[0] == 0
    assert _loaded() == 15


@case("retention", "a truncated `.csv.gz` beside a good file",
      "exit 3, one line naming the file and `unreadable_file`; the day is rejected, nothing loaded")
def test_truncated_gzip(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.csv").write_text(HEADER + _rows(30))
    (folder / "b.csv.gz").write_bytes(gzip.compress((HEADER + _rows(500, start=100)).encode())[:300])
    code, out, err = cli("retention", "run", "--day", DAY)
    assert code == 3 and out == ""
    assert err.startswith("error: retention 2017-04-01: 1 file(s) could not be read (b.csv.gz: ")
    assert len(err.strip().splitlines()) == 1
    assert _quarantine() == {"unreadable_file": 1}
    _nothing_accepted()


@case("retention", "a file of an unknown type (`notes.docx`) in the drop",
      "exit 3; the file is quarantined as `unsupported_file`, the day rejected, nothing loaded")
def test_unknown_suffix(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.csv").write_text(HEADER + _rows(30))
    (folder / "notes.docx").write_bytes(b"PK\x03\x04 not a csv")
    code, _, err = cli("retention", "run", "--day", DAY)
    assert code == 3 and "notes.docx: not a file type this pipeline reads" in err
    assert _quarantine() == {"unsupported_file": 1}
    _nothing_accepted()


@case("retention", "`load` run again after `validate` rejected the day (the old bug: it loaded the rejected drop)",
      "`load` refuses: no accepted ingest; nothing loaded")
def test_load_after_rejection(pg_dsn, data_root):
    (_folder(data_root) / "export.csv").write_text(HEADER + _rows(5) + "9,u9,soon,APP_OPEN,ios\n" * 5)
    with pytest.raises(RunRejected):
        jobs.validate(DAY)
    with pytest.raises(MissingPartitionError, match="has no accepted ingest"):
        jobs.load(DAY)
    _nothing_accepted()


@case("retention", "a day loaded, then its drop replaced by a bad one and rerun",
      "exit 3; the previous load stays, and `quarantine`, `retention_day_loads` and `ingest_partitions` all "
      "describe it; the rejected attempt is recorded beside it")
def test_rejected_rerun_keeps_consistent_tables(pg_dsn, data_root, cli):
    path = _folder(data_root) / "export.csv"
    path.write_text(HEADER + _rows(50) + "x,u1,not-a-time,APP_OPEN,ios\n")
    assert cli("retention", "run", "--day", DAY)[0] == 0
    path.write_text(HEADER + _rows(5) + "x,u1,not-a-time,APP_OPEN,ios\n" * 10)
    code, _, err = cli("retention", "run", "--day", DAY)
    assert code == 3 and "rows are bad" in err
    assert _loaded() == 50 and _quarantine() == {"bad_time": 1}
    load = db.query("SELECT rows_loaded, rows_quarantined FROM retention_day_loads")[0]
    part = ingest.partition_status("retention", DAY.isoformat())
    assert (load["rows_loaded"], load["rows_quarantined"]) == (part["rows_valid"], part["rows_quarantined"]) == (50, 1)
    assert part["last_status"] == "rejected" and part["last_reasons"] == {"bad_time": 10}


@case("retention", "two runs of the same day at once (threads)",
      "one accepted run; its quarantine once (not twice); events loaded once")
def test_two_runs_at_once(pg_dsn, data_root):
    (_folder(data_root) / "export.csv").write_text(HEADER + _rows(50) + "x,u1,not-a-time,APP_OPEN,ios\n")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            jobs.run_day(DAY)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _loaded() == 50 and _quarantine() == {"bad_time": 1}
    assert db.query("SELECT count(DISTINCT run_id) AS n FROM quarantine")[0]["n"] == 1
    loaded_run = db.query("SELECT run_id::text AS r FROM retention_day_loads")[0]["r"]
    assert loaded_run == str(ingest.accepted("retention", DAY.isoformat())["run_id"])


@case("retention", "BOM, CRLF line ends, reordered and extra columns, a gzip file, time-zone offsets",
      "every row loads; offsets are converted to UTC (a +02:00 time before 02:00 belongs to the day before)")
def test_awkward_but_legal(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    text = "\ufeffplatform,time,uid,extra,event_name\r\n" + "".join(
        f"web,2017-04-01T1{i % 10}:00:00+02:00,w{i},x,PLAY\r\n" for i in range(20))
    (folder / "a.csv").write_bytes(text.encode())
    (folder / "b.csv.gz").write_bytes(gzip.compress((HEADER + _rows(10, start=50)).encode()))
    (folder / "c.csv").write_text("uid,time,event_name\nz1,2017-04-01T01:30:00+02:00,PLAY\n"
                                  "z2,2017-04-01T12:00:00-05:00,PLAY\n")
    assert cli("retention", "run", "--day", DAY)[0] == 0
    assert _loaded() == 31 and _quarantine() == {"outside_day": 1}


@case("retention", "an empty file and a header-only file beside a good one",
      "both are quarantined as `empty_file`; the good rows load")
def test_empty_files(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.csv").write_text(HEADER + _rows(25))
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text(HEADER)
    assert cli("retention", "run", "--day", DAY)[0] == 0
    assert _loaded() == 25 and _quarantine() == {"empty_file": 2}


@case("retention", "a Latin-1 byte (`\\xe9`) inside one row of a UTF-8 file",
      "that line is quarantined as `malformed_csv`; the other rows load")
def test_latin1_byte(pg_dsn, data_root, cli):
    (_folder(data_root) / "a.csv").write_bytes((HEADER + _rows(30)).encode() + b"7,caf\xe9,2017-04-01 10:00:00,"
                                                                               b"PLAY,ios\n")
    assert cli("retention", "run", "--day", DAY)[0] == 0
    assert _loaded() == 30 and _quarantine() == {"malformed_csv": 1}


@case("retention", "no drop at all for the day", "exit 4, `error: no piwik_track export for 2017-04-01 under ...`")
def test_missing_drop(pg_dsn, data_root, cli):
    code, _, err = cli("retention", "run", "--day", DAY)
    assert code == 4 and err.startswith("error: no piwik_track export for 2017-04-01 under ")
    _nothing_accepted()


@case("retention", "a drop whose every row is bad (only a header and unparseable times)",
      "exit 3, `... no valid row ...`; the rows are in `quarantine`")
def test_no_valid_row(pg_dsn, data_root, cli):
    (_folder(data_root) / "a.csv").write_text(HEADER + "1,u1,never,APP_OPEN,ios\n")
    code, _, err = cli("retention", "run", "--day", DAY)
    assert code == 3 and "1 of 1 rows are bad" in err
    assert _quarantine() == {"bad_time": 1}
    _nothing_accepted()


@case("retention", "`q1 --csv` on a file without `event_name`",
      "exit 3, `error: x.csv: required column(s) ['event_name'] missing (has ['uid', 'time'])`")
def test_q1_csv_missing_column(tmp_path, cli):
    path = tmp_path / "x.csv"
    path.write_text("uid,time\nu1,2017-04-01 10:00:00\n")
    code, out, err = cli("retention", "q1", "--install-date", DAY, "--csv", path)
    assert (code, out) == (3, "")
    assert err == "error: x.csv: required column(s) ['event_name'] missing (has ['uid', 'time'])\n"


@case("retention", "`q1 --csv` with 2% short rows and a Latin-1 byte",
      "the answer over the readable rows, the 3 unreadable ones counted as skipped")
def test_q1_csv_short_rows_and_latin1(tmp_path, cli):
    lines = [f"u{i},2017-04-01 10:00:00,FIRST_INSTALL\nu{i},2017-04-03 10:00:00,PLAY\n" for i in range(50)]
    lines[3] = "u3,2017-04-01 10:00:00\n"  # short
    lines[7] = "u7\n"  # short
    path = tmp_path / "x.csv"
    path.write_bytes(("uid,time,event_name\n" + "".join(lines)).encode() + b"caf\xe9,2017-04-01 10:00:00,PLAY\n")
    code, out, err = cli("retention", "q1", "--install-date", DAY, "--csv", path)
    assert (code, err) == (0, "")
    assert out.startswith("48 of 48 users who installed on 2017-04-01")  # u3 and u7 lost their install rows
    assert "3 row(s) skipped" in out


@case("retention", "`q1` over Postgres when the days after the install are not loaded",
      "`not answerable yet: 8 day(s) ... are not loaded`, not `0 of 43 ... 0.0%`")
def test_q1_window_not_loaded(pg_dsn, data_root, cli):
    (_folder(data_root) / "a.csv").write_text("uid,time,event_name\n" + "".join(
        f"u{i},2017-04-01 10:00:00,FIRST_INSTALL\n" for i in range(43)))
    assert cli("retention", "run", "--day", DAY)[0] == 0
    code, out, _ = cli("retention", "q1", "--install-date", DAY)
    assert code == 0 and out.startswith("not answerable yet: 7 day(s) of 2017-04-01 .. 2017-04-08 are not loaded")


@case("retention", "nonsense arguments: `--days -3`, `--max-bad-share -1`, `--end` before `--day`",
      "exit 2 with one line naming the argument; nothing runs")
def test_bad_arguments(pg_dsn, data_root, cli):
    code, _, err = cli("retention", "generate", "--days", "-3")
    assert code == 2 and "argument --days: -3 must be at least 1" in err
    code, _, err = cli("retention", "run", "--day", DAY, "--max-bad-share", "-1")
    assert code == 2 and "argument --max-bad-share: -1.0 is not a share between 0 and 1" in err
    code, _, err = cli("retention", "run", "--day", "2017-04-05", "--end", "2017-04-01")
    assert code == 2 and err == "error: --end 2017-04-01 is before --day 2017-04-05\n"
    assert not list(data_root.iterdir())

"""Hostile inputs for the engagement pipeline, through ``python -m pipelines engagement ...`` (in-process) and
its jobs, against the real PostgreSQL: the exact rows staged, the rows quarantined by reason, or the exact
error line and exit code, and never a half-written partition."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest

from pipelines import db, ingest
from pipelines.engagement import schema
from tests.hostile.registry import case

pytestmark = pytest.mark.integration

DAY = date(2016, 4, 2)
T0 = int(datetime(2016, 4, 2, 8, tzinfo=UTC).timestamp())
HEADER = "time_created,date_created,up_votes,down_votes,title,over_18,author,category"


def _row(i: int, title: str = "Troops cross the border", up: str = "5", t: int | None = None,
         author: str = "polar", flag: str = "False") -> str:
    t = T0 + 60 * i if t is None else t
    return f"{t},{datetime.fromtimestamp(t, tz=UTC).date()},{up},0,{title},{flag},{author},worldnews"


def _rows(n: int, start: int = 0) -> list[str]:
    return [_row(i) for i in range(start, start + n)]


def _drop(root, lines: list[str] | bytes, name: str = "posts.csv", day: date = DAY, eol: str = "\n"):
    folder = root / schema.raw_day_dir(day)
    folder.mkdir(parents=True, exist_ok=True)
    data = lines if isinstance(lines, bytes) else (eol.join([HEADER, *lines]) + eol).encode("utf-8")
    (folder / name).write_bytes(data)
    return folder / name


def _quarantine(day: date = DAY) -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'engagement' "
                    "AND partition_key = %s GROUP BY 1", (day.isoformat(),))
    return {r["reason"]: r["n"] for r in rows}


def _staged(day: date = DAY) -> list[dict]:
    """The accepted run's posts, checked against the partition's own count (nothing half-written)."""
    row = ingest.accepted("engagement", day.isoformat())
    assert row is not None, "the day has no accepted run"
    posts = []
    for path in sorted(ingest.accepted_dir("engagement", day.isoformat()).glob("posts-*.parquet")):
        posts += pq.read_table(path).to_pylist()
    assert len(posts) == row["rows_valid"]
    assert row["rows_read"] == row["rows_valid"] + row["rows_quarantined"]
    return posts


def _nothing_accepted(day: date = DAY) -> dict:
    assert ingest.accepted("engagement", day.isoformat()) is None
    status = ingest.partition_status("engagement", day.isoformat())
    assert status is not None and status["status"] == "rejected"
    return status


def _convert(cli, *extra):
    return cli("engagement", "convert", "--day", DAY, *extra)


@case("engagement", "a title opening a quote it never closes, followed by 30 good rows",
      "exactly that line is quarantined (`broken_quoting`, its text and byte offset kept); the 30 rows after "
      "it and the 5 before load")
def test_unclosed_quote(pg_dsn, data_root, cli):
    broken = f'{T0 + 9999},{DAY},3,0,"Missile strikes, never closed,False,polar,worldnews'
    _drop(data_root, [*_rows(5), broken, *_rows(30, start=5)])
    code, _, err = _convert(cli, "--max-bad-share", "0.2")
    assert (code, err) == (0, "")
    assert len(_staged()) == 35 and _quarantine() == {"broken_quoting": 1}
    q = db.query("SELECT detail, record FROM quarantine WHERE pipeline = 'engagement'")[0]
    assert q["detail"].startswith("byte ") and q["record"]["line"] == broken + "\n"


@case("engagement", "a quote left undoubled inside a quoted title (`\"He said \"hi\" now\"`)",
      "the row is quarantined (`broken_quoting`) instead of loading a garbled title; the rest load")
def test_undoubled_quote(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(10), f'{T0},{DAY},1,0,"He said "hi" now",False,x,worldnews'])
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 10 and _quarantine() == {"broken_quoting": 1}


@case("engagement", "rows with one field too many and one too few",
      "both are quarantined as `wrong_field_count` with the expected and found counts; the rest load")
def test_wrong_field_counts(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(20), _row(50) + ",surplus", f"{T0},{DAY},3,0,no category,False,polar"])
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 20 and _quarantine() == {"wrong_field_count": 2}
    details = sorted(r["detail"] for r in db.query("SELECT detail FROM quarantine"))
    assert details == ["expected 8 fields, found 7", "expected 8 fields, found 9"]


@case("engagement", "a NUL byte and a BEL inside titles",
      "both rows are quarantined (`control_characters`), NUL shown as ␀ in the record; nothing with a control "
      "character is staged")
def test_control_characters(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(12), _row(40, title="nul\x00here"), _row(41, title="bell\x07here")])
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 12 and _quarantine() == {"control_characters": 2}
    titles = sorted(r["t"] for r in db.query("SELECT record->>'title' AS t FROM quarantine"))
    assert titles == ["bell\x07here", "nul\u2400here"]


@case("engagement", "unparseable numbers: up_votes `12a`, `7.5`, `1e3`, `` and time_created `yesterday`",
      "5 rows quarantined as `bad_number` (no lenient cast turns 7.5 into 8); the rest load")
def test_unparseable_numbers(pg_dsn, data_root, cli):
    bad = [_row(30, up="12a"), _row(31, up="7.5"), _row(32, up="1e3"), _row(33, up=""),
           f"yesterday,{DAY},3,0,title,False,polar,worldnews"]
    _drop(data_root, [*_rows(25), *bad])
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 25 and _quarantine() == {"bad_number": 5}


@case("engagement", "negative up_votes, a missing title (empty, blanks, quoted empty) and a blank author",
      "quarantined as `negative_votes` 1, `missing_title` 3, `missing_author` 1")
def test_negative_votes_and_missing_text(pg_dsn, data_root, cli):
    bad = [_row(30, up="-4"), _row(31, title=""), _row(32, title="   "), _row(33, title='""'),
           _row(34, author=" ")]
    _drop(data_root, [*_rows(30), *bad])
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 30
    assert _quarantine() == {"negative_votes": 1, "missing_title": 3, "missing_author": 1}


@case("engagement", "a UTF-8 BOM, CRLF line ends, titles with commas, doubled quotes, an embedded newline and "
      "Cyrillic/CJK text", "every row loads, each title exactly as written")
def test_bom_crlf_quotes_newlines(pg_dsn, data_root, cli):
    titles = ['Putin: "no deal", says Kremlin', "line one\nline two", "Москва и 北京", "plain"]
    lines = [_row(i, '"' + t.replace('"', '""') + '"' if any(c in t for c in '",\n') else t)
             for i, t in enumerate(titles)]
    _drop(data_root, b"\xef\xbb\xbf" + ("\r\n".join([HEADER, *lines]) + "\r\n").encode())
    assert _convert(cli, "--max-bad-share", "0")[0] == 0
    staged = sorted(_staged(), key=lambda p: p["time_created"])
    assert [p["title"] for p in staged] == titles and _quarantine() == {}
    assert [p["post_id"] for p in staged] == [schema.post_id(T0 + 60 * i, "polar", t) for i, t in enumerate(titles)]


@case("engagement", "a file whose header lacks `up_votes`",
      "exit 3, one error line naming the file and the missing column; the day is rejected, nothing staged "
      "as accepted, the file quarantined by name (`bad_header`)")
def test_missing_column(pg_dsn, data_root, cli):
    folder = data_root / schema.raw_day_dir(DAY)
    folder.mkdir(parents=True)
    (folder / "posts.csv").write_text("time_created,date_created,title,over_18,author\n1459584000,2016-04-02,t,"
                                      "False,polar\n")
    code, _, err = _convert(cli)
    assert code == 3
    assert err == ("error: engagement 2016-04-02: 1 file(s) could not be read (posts.csv: posts.csv: required "
                   "column(s) ['up_votes'] missing (header has ['time_created', 'date_created', 'title', "
                   "'over_18', 'author'])); nothing is loaded until every file is readable or removed\n")
    _nothing_accepted()
    assert _quarantine() == {"bad_header": 1}


@case("engagement", "20% of the rows bad with `--max-bad-share 0.1`",
      "exit 3 with the counts in one line; the day is rejected and its quarantine recorded; nothing accepted")
def test_too_many_bad_rows(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(8), _row(20, up="x"), _row(21, up="-1")])
    code, _, err = _convert(cli, "--max-bad-share", "0.1")
    assert code == 3
    assert err.startswith("error: engagement 2016-04-02: 2 of 10 rows are bad (20.00% > threshold 10.00%); "
                          "reasons {'bad_number': 1, 'negative_votes': 1}.")
    _nothing_accepted()
    assert _quarantine() == {"bad_number": 1, "negative_votes": 1}


@case("engagement", "a broken re-drop of a day that was accepted before",
      "exit 3; the accepted run (its posts and its quarantine) stays what readers see; the attempt is recorded")
def test_rejected_redrop_keeps_the_accepted_day(pg_dsn, data_root, cli):
    path = _drop(data_root, [*_rows(20), _row(30, up="-2")])
    assert _convert(cli)[0] == 0
    before = ingest.accepted("engagement", DAY.isoformat())
    path.write_text("\n".join([HEADER, *[_row(i, up="x") for i in range(20)]]) + "\n")
    assert _convert(cli)[0] == 3
    after = ingest.accepted("engagement", DAY.isoformat())
    assert after["run_id"] == before["run_id"] and after["last_status"] == "rejected"
    assert len(_staged()) == 20 and _quarantine() == {"negative_votes": 1}


@case("engagement", "a truncated `.csv.gz` beside a good `.csv`",
      "exit 3: the whole day is rejected (`unreadable_file`), none of the good file's rows are accepted alone")
def test_truncated_gzip(pg_dsn, data_root, cli):
    _drop(data_root, _rows(10))
    good = ("\n".join([HEADER, *_rows(500, start=100)]) + "\n").encode()
    _drop(data_root, gzip.compress(good)[:-60], name="more.csv.gz")
    code, _, err = _convert(cli)
    assert code == 3 and "more.csv.gz" in err and "could not be read" in err
    status = _nothing_accepted()
    assert status["rows_valid"] == 10 and _quarantine() == {"unreadable_file": 1}


@case("engagement", "an `.xlsx` file beside the day's CSV", "exit 3 (`unsupported_file`); nothing accepted")
def test_unsupported_file(pg_dsn, data_root, cli):
    _drop(data_root, _rows(5))
    (data_root / schema.raw_day_dir(DAY) / "posts.xlsx").write_bytes(b"PK\x03\x04")
    assert _convert(cli)[0] == 3
    _nothing_accepted()
    assert _quarantine() == {"unsupported_file": 1}


@case("engagement", "no folder for the day", "exit 4 (late input, retryable) with the folder in the message")
def test_missing_day(pg_dsn, data_root, cli):
    code, _, err = _convert(cli)
    assert code == 4
    assert err == f"error: no engagement posts drop for 2016-04-02 under {data_root}/engagement/raw/dt=2016-04-02\n"
    assert ingest.partition_status("engagement", DAY.isoformat()) is None


@case("engagement", "an empty file and a header-only file", "exit 3: no valid row; nothing accepted")
def test_empty_files(pg_dsn, data_root, cli):
    _drop(data_root, b"")
    _drop(data_root, (HEADER + "\n").encode(), name="header.csv")
    code, _, err = _convert(cli)
    assert code == 3 and "no valid row" in err
    _nothing_accepted()


@case("engagement", "Latin-1 bytes in a title (invalid UTF-8)",
      "that row is quarantined (`bad_encoding`, the bytes shown as U+FFFD); the rest load")
def test_invalid_utf8(pg_dsn, data_root, cli):
    good = "\n".join([HEADER, *_rows(15)]) + "\n"
    _drop(data_root, good.encode() + f"{T0 + 5000},{DAY},2,0,".encode() + b"caf\xe9 cr\xe8me,False,x,worldnews\n")
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 15 and _quarantine() == {"bad_encoding": 1}
    assert db.query("SELECT record->>'title' AS t FROM quarantine")[0]["t"] == "caf\ufffd cr\ufffdme"


@case("engagement", "a 200 KB line of garbage in the middle of a drop",
      "quarantined as one `overlong_record`; the rows around it load")
def test_overlong_line(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(10), "x" * 200_000, *_rows(10, start=10)])
    assert _convert(cli)[0] == 0
    assert len(_staged()) == 20 and _quarantine() == {"overlong_record": 1}
    record = db.query("SELECT record->>'line' AS line FROM quarantine")[0]["line"]
    assert len(record) <= 2001  # the evidence is cut, the row is counted once


@case("engagement", "posts of the previous and the next day inside a day's drop",
      "quarantined as `outside_day` (a day's partition holds that day only)")
def test_outside_day(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(10), _row(0, t=T0 - 86_400), _row(0, t=T0 + 86_400)])
    assert _convert(cli, "--max-bad-share", "0.2")[0] == 0
    assert len(_staged()) == 10 and _quarantine() == {"outside_day": 2}


@case("engagement", "the same post sent three times with `--max-bad-share 0`",
      "one copy loads, two are quarantined as `duplicate` (benign: the day is accepted)")
def test_duplicates_are_benign(pg_dsn, data_root, cli):
    _drop(data_root, [*_rows(10), _row(3), _row(3)])
    assert _convert(cli, "--max-bad-share", "0")[0] == 0
    assert len(_staged()) == 10 and _quarantine() == {"duplicate": 2}


@case("engagement", "`engagement preview` of a local broken file",
      "exit 3 with the counts as JSON; nothing written to PostgreSQL or the data root")
def test_preview_writes_nothing(pg_dsn, data_root, cli, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("\n".join([HEADER, *_rows(3), _row(9, up="-1"), _row(10, up="x")]) + "\n")
    code, out, _ = cli("engagement", "preview", path, "--max-bad-share", "0.1")
    summary = json.loads(out)
    assert code == 3 and summary["status"] == "rejected"
    assert summary["reasons"] == {"negative_votes": 1, "bad_number": 1} and summary["rows_valid"] == 3
    assert db.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'ingest_partitions'"
                    )[0]["n"] == 0 and not any(data_root.iterdir())


@case("engagement", "`engagement score` before any model was promoted",
      "exit 4 with the ways to promote one; nothing written to `engagement_predictions`")
def test_score_before_promotion(pg_dsn, data_root, cli):
    _drop(data_root, _rows(5))
    assert _convert(cli)[0] == 0
    code, _, err = cli("engagement", "score", "--day", DAY)
    assert code == 4 and err.startswith("error: no promoted engagement model: train one")
    assert db.query("SELECT count(*) AS n FROM engagement_predictions")[0]["n"] == 0


@case("engagement", "`engagement train` with one month of accepted posts",
      "exit 4: the time split needs at least 3 months, and says how many there are")
def test_train_without_enough_months(pg_dsn, data_root, cli):
    _drop(data_root, _rows(50))
    assert _convert(cli)[0] == 0
    code, _, err = cli("engagement", "train", "--as-of", DAY)
    assert code == 4
    assert err == ("error: engagement: 1 month(s) of accepted posts up to 2016-04-02 (['2016-04']); a time split "
                   "with 1 validation and 1 test month(s) needs at least 3\n")
    assert db.query("SELECT count(*) AS n FROM runs WHERE kind = 'train' AND status = 'success'")[0]["n"] == 0


@case("engagement", "nonsense arguments: `--max-bad-share 2`, `convert` with no target, a history file name with "
      "a space", "exit 2 with one line each, nothing run")
def test_nonsense_arguments(pg_dsn, data_root, cli):
    assert cli("engagement", "convert", "--day", DAY, "--max-bad-share", "2")[0] == 2
    code, _, err = cli("engagement", "convert")
    assert (code, err) == (2, "error: name --day (and --end), --file NAME or --pending\n")
    code, _, err = cli("engagement", "convert", "--file", "my posts.csv")
    assert code == 2 and err.startswith("error: historical file name 'my posts.csv'")

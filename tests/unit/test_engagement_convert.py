"""The streaming converter on hand-made Eluvio-format files (no database): exact row counts by reason, values
that survive quoting, BOM, CRLF and embedded newlines, month partitioning, tiny blocks, compressed and broken
files. Everything goes through ``convert.preview`` / ``ingest.inspect``, the contract's own decision."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import ingest
from pipelines.engagement import convert, schema
from pipelines.engagement.convert import ConvertOptions

HEADER = "time_created,date_created,up_votes,down_votes,title,over_18,author,category"
T0 = 1201232046  # 2008-01-25 03:34:06 UTC, the Eluvio file's first post


def row(i: int, title: str = "Scores killed in clashes", up: str = "5", t: int | None = None, author: str = "polar",
        flag: str = "False", day: str | None = None) -> str:
    """One CSV line of a post ``i`` minutes after the Eluvio file's first (or at time ``t``)."""
    t = T0 + 60 * i if t is None else t
    day = datetime.fromtimestamp(t, tz=UTC).date().isoformat() if day is None else day
    return f"{t},{day},{up},0,{title},{flag},{author},worldnews"


def write(tmp_path: Path, text: str | bytes, name: str = "posts.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def run(path: Path, max_bad_share: float = 0.5, **options) -> tuple[ingest.IngestResult, ingest.Workspace]:
    ws = ingest.Workspace()
    result = convert.preview(path, max_bad_share, ConvertOptions(**options) if options else None, workspace=ws)
    return result, ws


def posts(ws: ingest.Workspace) -> list[dict]:
    rows = []
    for path in sorted(ws.local.glob("posts-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda r: (r["time_created"], r["post_id"]))


def quarantine(ws: ingest.Workspace) -> list[dict]:
    return pq.read_table(ws.path("quarantine.parquet")).to_pylist()


def test_quotes_newlines_bom_crlf_and_non_ascii_survive(tmp_path):
    titles = ['He said "hi", then left', "Line one\nline two", "Москва, 北京 and São Paulo", "plain title"]
    lines = [HEADER] + [row(i, '"' + t.replace('"', '""') + '"' if any(c in t for c in '",\n') else t)
                        for i, t in enumerate(titles)]
    path = write(tmp_path, "\ufeff" + "\r\n".join(lines) + "\r\n")
    result, ws = run(path, max_bad_share=0.0)
    assert (result.status, result.rows_read, result.rows_valid, result.reasons) == ("accepted", 4, 4, {})
    got = posts(ws)
    assert [p["title"] for p in got] == titles
    assert [p["post_id"] for p in got] == [schema.post_id(T0 + 60 * i, "polar", t) for i, t in enumerate(titles)]
    assert {p["up_votes"] for p in got} == {5} and {p["over_18"] for p in got} == {False}
    assert {p["source"] for p in got} == {"posts.csv"}


def test_every_bad_row_is_quarantined_with_its_reason(tmp_path):
    bad = {
        "bad_number": [row(10, up="12a"), row(11, up="7.5"), row(12, up="n/a")],
        "bad_time": [row(13, t=0)],
        "negative_votes": [row(14, up="-3")],
        "missing_title": [row(15, title="")],
        "missing_author": [row(16, author="  ")],
        "bad_flag": [row(17, flag="maybe")],
        "bad_date": [row(18, day="2008-13-45"), row(19, day="2009-01-01")],
        "control_characters": [row(20, title="nul\x00inside")],
        "wrong_field_count": [row(21) + ",extra", "1201240000,2008-01-25,3,0,short"],
        "broken_quoting": ['1201240001,2008-01-25,3,0,"never closed,False,x,worldnews',
                           '1201240002,2008-01-25,3,0,"He said "hi" there",False,y,worldnews'],
    }
    good = [row(i) for i in range(10)]
    lines = [HEADER, *good[:5], *[line for lines in bad.values() for line in lines], *good[5:],
             *[row(30 + i) for i in range(25)]]  # the unclosed quote is refused, the rows after it are read
    result, ws = run(write(tmp_path, "\n".join(lines) + "\n"))
    expected = {reason: len(lines) for reason, lines in bad.items()}
    assert result.reasons == expected
    assert result.rows_valid == 35 and result.rows_read == 35 + sum(expected.values())
    q = quarantine(ws)
    assert len(q) == sum(expected.values()) and {r["source"] for r in q} == {"posts.csv"}
    nul = next(r for r in q if r["reason"] == "control_characters")
    assert json.loads(nul["record"])["title"] == "nul\x00inside"  # evidence kept; the contract cleans NUL for PG
    broken = [r for r in q if r["reason"] == "broken_quoting"]
    assert all(r["detail"].startswith("byte ") for r in broken)
    assert json.loads(broken[0]["record"])["line"].startswith('1201240001,2008-01-25,3,0,"never closed')


def test_reordered_extra_and_missing_optional_columns(tmp_path):
    text = "id,title,author,up_votes,time_created\n7,First,alice,3,1201232046\n8,Second,bob,0,1201232100\n"
    result, ws = run(write(tmp_path, text))
    assert (result.rows_valid, result.reasons) == (2, {})
    got = posts(ws)
    assert [(p["title"], p["author"], p["down_votes"], p["over_18"], p["category"]) for p in got] == [
        ("First", "alice", 0, False, ""), ("Second", "bob", 0, False, "")]


def test_missing_required_column_rejects_the_file(tmp_path):
    result, ws = run(write(tmp_path, "time_created,title,author\n1201232046,t,a\n"))
    assert result.status == "rejected" and result.files_unread["posts.csv"]["reason"] == "bad_header"
    assert "up_votes" in result.rejection and not list(ws.local.glob("posts-*.parquet"))


def test_duplicates_are_benign_and_the_first_copy_is_kept(tmp_path):
    lines = [HEADER, row(1, up="9"), row(2), row(1, up="9"), row(3), row(1, up="9")]
    result, ws = run(write(tmp_path, "\n".join(lines) + "\n"), max_bad_share=0.0)
    assert (result.status, result.rows_valid, result.reasons, result.bad_share) == ("accepted", 3, {"duplicate": 2}, 0)
    assert len({p["post_id"] for p in posts(ws)}) == 3
    assert {r["reason"] for r in quarantine(ws)} == {"duplicate"}


def test_past_the_threshold_the_partition_is_rejected(tmp_path):
    lines = [HEADER, *[row(i) for i in range(8)], row(8, up="x"), row(9, up="-1")]
    result, _ = run(write(tmp_path, "\n".join(lines) + "\n"), max_bad_share=0.1)
    assert result.status == "rejected" and result.bad_share == pytest.approx(0.2)
    assert "2 of 10 rows are bad" in result.rejection


def test_months_are_separate_files_whatever_the_row_order(tmp_path):
    jan, feb, mar = 1201232046, 1202428800 + 3600, 1204934400 + 7200  # 2008-01-25, 2008-02-08, 2008-03-08
    lines = [HEADER] + [row(0, t=t + k) for k, t in enumerate([mar, jan, feb, jan, mar, jan])]
    result, ws = run(write(tmp_path, "\n".join(lines) + "\n"))
    assert result.extra["months"] == {"2008-01": 3, "2008-02": 1, "2008-03": 2}
    assert sorted(p.name for p in ws.local.glob("posts-*.parquet")) == [
        "posts-2008-01--000.parquet", "posts-2008-02--000.parquet", "posts-2008-03--000.parquet"]


def test_tiny_blocks_give_the_same_result_as_one_block(tmp_path):
    titles = ['a "quoted" word, here', "two\nlines", "plain"] * 20
    lines = [HEADER] + [row(i, '"' + t.replace('"', '""') + '"' if any(c in t for c in '",\n') else t)
                        for i, t in enumerate(titles)]
    lines.insert(17, '1201240001,2008-01-25,3,0,"never closed,False,x,worldnews')
    path = write(tmp_path, "\n".join(lines) + "\n")
    big, ws_big = run(path)
    small, ws_small = run(path, block_bytes=97, max_record_lines=3)
    assert (small.rows_read, small.rows_valid, small.reasons) == (big.rows_read, big.rows_valid, big.reasons)
    assert big.reasons == {"broken_quoting": 1} and big.rows_valid == 60
    assert posts(ws_small) == posts(ws_big)


def test_gzip_is_read_streaming_and_a_truncated_gzip_is_reported(tmp_path):
    text = (HEADER + "\n" + "\n".join(row(i) for i in range(200)) + "\n").encode()
    ok, _ = run(write(tmp_path, gzip.compress(text), "posts.csv.gz"))
    assert (ok.status, ok.rows_valid) == ("accepted", 200)
    broken, ws = run(write(tmp_path, gzip.compress(text)[:-40], "cut.csv.gz"))
    assert broken.status == "rejected" and broken.files_unread["cut.csv.gz"]["reason"] == "unreadable_file"
    assert broken.rows_read == 0 and not list(ws.local.glob("posts-*.parquet"))


def test_empty_and_header_only_files_are_rejected_as_empty(tmp_path):
    for name, text in (("empty.csv", ""), ("header.csv", HEADER + "\n")):
        result, _ = run(write(tmp_path, text, name))
        assert result.status == "rejected" and result.rows_read == 0
        assert result.extra["empty_files"] == [name] and "no valid row" in result.rejection


def test_invalid_utf8_is_replaced_and_those_rows_refused(tmp_path):
    data = ((HEADER + "\n" + row(1) + "\n").encode() + f"{T0 + 120},2008-01-25,5,0,".encode() + b"caf\xe9 latin1"
            + b",False,polar,worldnews\n" + b"1201232300,2008-01-25,\xff,0,extra\xfe,x,y,z,w\n"
            + (row(3) + "\n").encode())
    result, ws = run(write(tmp_path, data))
    assert (result.rows_valid, result.reasons) == (2, {"bad_encoding": 1, "wrong_field_count": 1})
    q = {r["reason"]: r for r in quarantine(ws)}
    assert json.loads(q["bad_encoding"]["record"])["title"] == "caf\ufffd latin1"
    assert json.loads(q["wrong_field_count"]["record"])["line"] == "1201232300,2008-01-25,\ufffd,0,extra\ufffd,x,y,z,w"


def test_a_daily_partition_refuses_posts_of_another_day(tmp_path):
    day_start = 1201219200  # 2008-01-25 00:00 UTC
    lines = [HEADER, row(0, t=day_start + 10), row(1, t=day_start + 86_399), row(2, t=day_start - 1),
             row(3, t=day_start + 86_400)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = ingest.inspect(schema.PIPELINE, "2008-01-25",
                            convert.local_file_validator(path, day=date(2008, 1, 25)), max_bad_share=0.6,
                            benign_reasons=schema.BENIGN_REASONS)
    assert (result.rows_valid, result.reasons) == (2, {"outside_day": 2})

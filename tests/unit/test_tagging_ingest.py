"""The article validator, previewed with ``ingest.inspect`` (no database): every reason, every file format,
the generator's planted bad rows found exactly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.storage import DataRoot
from pipelines.tagging import schema
from pipelines.tagging.generate import TaggingSpec, write_dataset
from pipelines.tagging.ingest import inspect_partition, parse_published_at, parse_tags

DAY = "2024-06-03"
BODY = "今日恒指升咗三百點，銀行股帶頭，分析員話加息周期就嚟完。"


def _article(i: int, **over) -> dict:
    return {"id": f"a{i}", "title": f"股市消息{i}", "body": BODY + f"第{i}段。", "published_at": "2024-06-03T08:00:00Z",
            "tags": ["finance"], **over}


def _folder(root: Path, partition: str = DAY) -> Path:
    folder = root / schema.raw_rel_dir(partition)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _jsonl(rows: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


def _inspect(root: Path, partition: str = DAY, share: float = 0.5):
    return inspect_partition(partition, DataRoot(str(root)), share)


def test_every_row_reason(tmp_path):
    rows = [_article(i) for i in range(20)] + [
        _article(100, body="  "),                                   # empty_body
        _article(101, body="Stocks rallied on Friday."),            # not_chinese
        _article(102, tags=["finance", "gossip"]),                  # unknown_tag
        _article(103, body=BODY + "\x00"),                          # control_characters
        _article(104, body=BODY + "\ufffd"),                        # undecodable_text
        _article(105, id=""),                                       # missing_id
        _article(106, id="x" * 300),                                # bad_id
        _article(107, body="長" * (schema.max_body_chars() + 1)),   # body_too_long
        _article(108, published_at="yesterday"),                   # bad_published_at
        _article(109, tags=[1, 2]),                                 # bad_tags
        "{not json",                                                # malformed_row
        "[1, 2]",                                                   # malformed_row (not an object)
        _article(0),                                                # duplicate (identical re-send)
        _article(1, body=BODY + "更正。"),                           # conflicting_id (and the first a1)
    ]
    (_folder(tmp_path) / "day.jsonl").write_text(_jsonl(rows))
    result = _inspect(tmp_path)
    assert result.reasons == {"empty_body": 1, "not_chinese": 1, "unknown_tag": 1, "control_characters": 1,
                              "undecodable_text": 1, "missing_id": 1, "bad_id": 1, "body_too_long": 1,
                              "bad_published_at": 1, "bad_tags": 1, "malformed_row": 2, "duplicate": 1,
                              "conflicting_id": 2}
    assert result.rows_read == 34 and result.rows_valid == 19 and result.rows_bad == 14
    assert result.rows_read == result.rows_valid + result.rows_quarantined
    assert result.accepted


def test_corpus_needs_tags_and_a_day_does_not(tmp_path):
    rows = [_article(i) for i in range(5)] + [_article(9, tags=[])]
    (_folder(tmp_path, "corpus") / "c.jsonl").write_text(_jsonl(rows))
    (_folder(tmp_path) / "d.jsonl").write_text(_jsonl(rows))
    assert _inspect(tmp_path, "corpus").reasons == {"missing_tags": 1}
    assert _inspect(tmp_path).reasons == {} and _inspect(tmp_path).rows_valid == 6


def test_formats_bom_csv_tsv_json_parquet_gzip(tmp_path):
    folder = _folder(tmp_path)
    header = "id,title,body,published_at,tags\n"
    csv_rows = "".join(f'c{i},標題{i},"{BODY}",2024-06-03 09:00:00,finance|politics\n' for i in range(3))
    tsv_rows = "".join(f"t{i}\t標題{i}\t{BODY}\t2024-06-03\tsports\n" for i in range(3))
    (folder / "a.CSV").write_bytes(b"\xef\xbb\xbf" + (header + csv_rows).replace("\n", "\r\n").encode())
    (folder / "b.tsv").write_text(header.replace(",", "\t") + tsv_rows)
    (folder / "c.json").write_text(json.dumps({"articles": [_article(10), _article(11, tags="food;travel")]},
                                              ensure_ascii=False))
    (folder / "d.jsonl.gz").write_bytes(gzip.compress(("\ufeff" + _jsonl([_article(20), _article(21)])).encode()))
    table = pa.table({"ID": ["p1"], "Title": ["標題"], "Body": [BODY], "published_at": ["2024-06-03T10:00:00+08:00"],
                      "tags": [["tech"]]})
    pq.write_table(table, folder / "e.parquet")
    (folder / ".uploading.jsonl").write_text("garbage")  # hidden: not data
    result = _inspect(tmp_path)
    assert result.reasons == {}, result.reasons
    assert sorted(result.files) == ["a.CSV", "b.tsv", "c.json", "d.jsonl.gz", "e.parquet"]
    assert result.rows_valid == 3 + 3 + 2 + 2 + 1


def test_missing_column_and_unreadable_files_reject_the_partition(tmp_path):
    folder = _folder(tmp_path)
    (folder / "good.jsonl").write_text(_jsonl([_article(i) for i in range(10)]))
    (folder / "no_body.csv").write_text("id,title,published_at\n1,標題,2024-06-03\n")
    (folder / "broken.jsonl.gz").write_bytes(gzip.compress(_jsonl([_article(i) for i in range(50)]).encode())[:60])
    (folder / "notes.xlsx").write_bytes(b"PK\x03\x04")
    result = _inspect(tmp_path)
    assert result.status == "rejected"
    assert result.files_unread["no_body.csv"]["reason"] == "bad_header"
    assert "required column(s) ['body'] missing" in result.files_unread["no_body.csv"]["detail"]
    assert result.files_unread["broken.jsonl.gz"]["reason"] == "unreadable_file"
    assert result.files_unread["notes.xlsx"]["reason"] == "unsupported_file"
    assert result.rows_valid == 10 and result.files == ["good.jsonl"]  # nothing of a broken file is counted


def test_past_the_threshold_the_partition_is_rejected(tmp_path):
    rows = [_article(i) for i in range(8)] + [_article(100 + i, body="") for i in range(2)]
    (_folder(tmp_path) / "d.jsonl").write_text(_jsonl(rows))
    assert _inspect(tmp_path, share=0.25).accepted
    rejected = _inspect(tmp_path, share=0.1)
    assert rejected.status == "rejected" and "2 of 10 rows are bad" in rejected.rejection


def test_parse_helpers():
    assert parse_tags("finance| Politics ,finance") == ["finance", "politics"]
    assert parse_tags('["a", "b"]') == ["a", "b"] and parse_tags("") == [] and parse_tags(None) == []
    assert parse_tags("[broken") is None and parse_tags(7) is None
    assert parse_published_at("2024-06-03T08:00:00+08:00").isoformat() == "2024-06-03T00:00:00+00:00"
    assert parse_published_at("2024-06-03 08:00").tzinfo is not None
    assert parse_published_at("2024-13-45") is None and parse_published_at(None) is None


def test_extra_tags_by_environment(tmp_path, monkeypatch):
    (_folder(tmp_path) / "d.jsonl").write_text(_jsonl([_article(i, tags=["finance", "property"]) for i in range(3)]))
    assert _inspect(tmp_path).reasons == {"unknown_tag": 3}
    monkeypatch.setenv("PIPELINES_TAGGING_EXTRA_TAGS", "property, auto")
    assert _inspect(tmp_path).reasons == {} and "property" in schema.known_tags()


@pytest.mark.parametrize("bad_rate", [0.05])
def test_generated_bad_rows_are_found_exactly(tmp_path, bad_rate):
    made = write_dataset(TaggingSpec(corpus_articles=240, days=2, daily_articles=40, bad_rate=bad_rate), tmp_path)
    for partition, planted in made["planted"].items():
        result = _inspect(tmp_path, partition)
        assert result.reasons == planted, partition
        assert result.accepted
    corpus = _inspect(tmp_path, "corpus")
    conflicted = made["planted"]["corpus"].get("conflicting_id", 0) // 2
    assert corpus.rows_valid == made["corpus_articles"] - conflicted


def test_any_bytes_are_read_or_quarantined_never_crash(tmp_path_factory):
    """Fuzz: arbitrary bytes in a JSON lines and a CSV file never crash the validator, and every row read is
    either valid or quarantined with a reason."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = json.dumps(_article(1), ensure_ascii=False).encode()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(st.binary(max_size=80), st.just(good), st.text(max_size=60).map(str.encode)),
                    max_size=12))
    def check(lines):
        root = tmp_path_factory.mktemp("fuzz")
        folder = _folder(root)
        (folder / "a.jsonl").write_bytes(b"\n".join(lines))
        (folder / "b.csv").write_bytes(b"id,title,body,published_at,tags\n" + b"\n".join(lines))
        result = _inspect(root, share=1.0)
        assert result.rows_read == result.rows_valid + result.rows_quarantined
        assert set(result.reasons) <= set(schema.REASONS) | {"bad_header", "unreadable_file"}

    check()

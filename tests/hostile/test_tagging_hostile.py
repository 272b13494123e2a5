"""Hostile inputs for the tagging pipeline, through ``python -m pipelines tagging ...`` (in-process) against the
real PostgreSQL: each asserts the exact outcome (articles accepted, rows quarantined by reason, or the exact
error line and exit code) and that nothing is left half-written."""

from __future__ import annotations

import gzip
import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import db, ingest
from pipelines.tagging import jobs, schema
from tests.hostile.registry import case

pytestmark = pytest.mark.integration

DAY = date(2024, 6, 3)
BODY = "今日恒指升咗三百點，銀行股帶頭，分析員話加息周期就嚟完。"
HEADER = "id,title,body,published_at,tags\n"


def _article(i: int, **over) -> dict:
    return {"id": f"a{i}", "title": f"股市消息{i}", "body": f"{BODY}第{i}段。", "published_at": "2024-06-03T08:00:00Z",
            "tags": ["finance"], **over}


def _jsonl(rows: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


def _folder(root, partition: str = DAY.isoformat()):
    folder = root / schema.raw_rel_dir(partition)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _good(n: int, start: int = 0) -> list[dict]:
    return [_article(i) for i in range(start, start + n)]


def _quarantine(partition: str = DAY.isoformat()) -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'tagging' AND partition_key = %s "
                    "GROUP BY 1", (partition,))
    return {r["reason"]: r["n"] for r in rows}


def _valid(partition: str = DAY.isoformat()) -> int | None:
    row = ingest.accepted("tagging", partition)
    return None if row is None else row["rows_valid"]


def _validate(cli, partition: str = DAY.isoformat(), share: str | None = "0.2") -> tuple[int, str, str]:
    """``tagging validate`` (at ``--max-bad-share 0.2`` unless ``share`` is None: the default, 5%)."""
    which = ["--corpus"] if partition == "corpus" else ["--day", partition]
    return cli("tagging", "validate", *which, *(["--max-bad-share", share] if share else []))


def _nothing_accepted(partition: str = DAY.isoformat()) -> None:
    assert ingest.accepted("tagging", partition) is None
    assert db.query("SELECT count(*) AS n FROM tagging_article_tags")[0]["n"] == 0


@case("tagging", "an article with an empty (whitespace-only) body among 20 good ones",
      "the row is quarantined (`empty_body`); the 20 others are accepted")
def test_empty_body(pg_dsn, data_root, cli):
    (_folder(data_root) / "d.jsonl").write_text(_jsonl([*_good(20), _article(99, body=" \n\t ")]))
    code, _, err = _validate(cli)
    assert (code, err) == (0, "")
    assert _valid() == 20 and _quarantine() == {"empty_body": 1}


@case("tagging", "bytes that are not UTF-8 inside an article's body (`\\xff\\xfe`)",
      "the row is quarantined (`undecodable_text`); the 20 others are accepted")
def test_undecodable_bytes(pg_dsn, data_root, cli):
    bad = json.dumps(_article(99), ensure_ascii=False).replace("第99段", "第99\udcff段", 1)
    raw = _jsonl(_good(20)).encode() + bad.encode("utf-8", "surrogateescape").replace(b"\xed\xb3\xbf", b"\xff\xfe")
    (_folder(data_root) / "d.jsonl").write_bytes(raw + b"\n")
    assert _validate(cli)[0] == 0
    assert _valid() == 20 and _quarantine() == {"undecodable_text": 1}


@case("tagging", "an English article and one of digits and punctuation only",
      "both quarantined (`not_chinese`, with the share of Chinese characters); 20 accepted")
def test_not_chinese(pg_dsn, data_root, cli):
    rows = [*_good(20), _article(98, title="Market wrap", body="Stocks rallied on Friday as investors cheered."),
            _article(99, title="", body="1234！！！5678。")]
    (_folder(data_root) / "d.jsonl").write_text(_jsonl(rows))
    assert _validate(cli)[0] == 0
    assert _valid() == 20 and _quarantine() == {"not_chinese": 2}
    detail = db.query("SELECT detail FROM quarantine WHERE reason = 'not_chinese' ORDER BY detail LIMIT 1")[0]["detail"]
    assert "Chinese characters among letters" in detail


@case("tagging", "a tag outside the vocabulary (`gossip`) and tags in odd case and spacing (` Finance `)",
      "`unknown_tag` names the tag; the odd-case one is accepted as `finance`")
def test_unknown_and_untidy_tags(pg_dsn, data_root, cli):
    rows = [*_good(20), _article(98, tags=["finance", "gossip"]), _article(99, tags=[" Finance ", "TECH"])]
    (_folder(data_root) / "d.jsonl").write_text(_jsonl(rows))
    assert _validate(cli)[0] == 0
    assert _valid() == 21 and _quarantine() == {"unknown_tag": 1}
    detail = db.query("SELECT detail FROM quarantine")[0]["detail"]
    assert "unknown tag(s) ['gossip']" in detail


@case("tagging", "the same article sent three times (identical), in two files",
      "kept once; two rows quarantined as `duplicate`, which does not count as bad (accepted at max_bad_share 0)")
def test_identical_duplicates_are_benign(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.jsonl").write_text(_jsonl([*_good(5), _article(0)]))
    (folder / "b.jsonl").write_text(_jsonl([_article(0)]))
    code, _, err = cli("tagging", "validate", "--day", DAY, "--max-bad-share", "0")
    assert (code, err) == (0, "")
    assert _valid() == 5 and _quarantine() == {"duplicate": 2}


@case("tagging", "one id sent twice with different bodies",
      "both rows quarantined (`conflicting_id`): which is right cannot be known; the other 10 accepted")
def test_conflicting_ids(pg_dsn, data_root, cli):
    rows = [*_good(10), _article(50), _article(50, body=BODY + "更正版本。")]
    (_folder(data_root) / "d.jsonl").write_text(_jsonl(rows))
    assert _validate(cli)[0] == 0
    assert _valid() == 10 and _quarantine() == {"conflicting_id": 2}


@case("tagging", "a 1,000,000-character body in a CSV (far past Python's default CSV field limit)",
      "the row is quarantined (`body_too_long`, its record cut to 2,000 characters); 20 accepted")
def test_absurdly_long_body(pg_dsn, data_root, cli):
    rows = "".join(f"a{i},標題,{BODY},2024-06-03,finance\n" for i in range(20))
    (_folder(data_root) / "d.csv").write_text(HEADER + rows + f"huge,標題,{'長' * 1_000_000},2024-06-03,finance\n")
    assert _validate(cli)[0] == 0
    assert _valid() == 20 and _quarantine() == {"body_too_long": 1}
    record = db.query("SELECT record->>'body' AS body, detail FROM quarantine")[0]
    assert len(record["body"]) < 2_100 and "1,000,000 characters" in record["detail"]


@case("tagging", "a NUL byte in a title and a BEL in a tags cell",
      "both rows quarantined (`control_characters`), the NUL shown as ␀ in the record; 20 accepted")
def test_control_characters(pg_dsn, data_root, cli):
    rows = [*_good(20), _article(98, title="標題\x00"), _article(99, tags="finance\x07")]
    (_folder(data_root) / "d.jsonl").write_text(_jsonl(rows))
    assert _validate(cli)[0] == 0
    assert _valid() == 20 and _quarantine() == {"control_characters": 2}
    titles = {r["title"] for r in db.query("SELECT record->>'title' AS title FROM quarantine")}
    assert "標題\u2400" in titles


@case("tagging", "a JSON line cut in half, a JSON line that is an array, a CSV line with an extra field",
      "each is one `malformed_row`; the good rows of both files are accepted")
def test_malformed_rows(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    line = json.dumps(_article(99), ensure_ascii=False)
    (folder / "a.jsonl").write_text(_jsonl([*_good(10), line[: len(line) // 2], "[1, 2, 3]"]))
    rows = "".join(f"c{i},標題,{BODY},2024-06-03,finance\n" for i in range(10))
    (folder / "b.csv").write_text(HEADER + rows + f"c99,標題,{BODY},2024-06-03,finance,stray\n")
    assert _validate(cli)[0] == 0
    assert _valid() == 20 and _quarantine() == {"malformed_row": 3}


@case("tagging", "a CSV drop without the `body` column beside a good file",
      "exit 3, one line naming the file and the missing column; the day rejected, nothing accepted")
def test_missing_column(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.jsonl").write_text(_jsonl(_good(10)))
    (folder / "b.csv").write_text("id,title,published_at,tags\n1,標題,2024-06-03,finance\n")
    code, out, err = _validate(cli)
    assert code == 3 and out == ""
    assert err.startswith("error: tagging 2024-06-03: 1 file(s) could not be read (b.csv: b.csv: required column(s) "
                          "['body'] missing")
    assert len(err.strip().splitlines()) == 1
    assert _quarantine() == {"bad_header": 1}
    _nothing_accepted()


@case("tagging", "a truncated `.jsonl.gz` beside a good file",
      "exit 3 naming the file (`unreadable_file`); none of its rows counted, the day rejected")
def test_truncated_gzip(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.jsonl").write_text(_jsonl(_good(10)))
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(_jsonl(_good(300, start=100)).encode())[:400])
    code, _, err = _validate(cli)
    assert code == 3 and "(b.jsonl.gz: EOFError: Compressed file ended before the end-of-stream marker" in err
    assert _quarantine() == {"unreadable_file": 1}
    status = ingest.partition_status("tagging", DAY.isoformat())
    assert status["status"] == "rejected" and status["rows_valid"] == 10
    _nothing_accepted()


@case("tagging", "a spreadsheet (`articles.xlsx`) in the drop", "exit 3, `unsupported_file`; nothing accepted")
def test_unsupported_file(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.jsonl").write_text(_jsonl(_good(10)))
    (folder / "articles.xlsx").write_bytes(b"PK\x03\x04")
    code, _, err = _validate(cli)
    assert code == 3 and "articles.xlsx: not a file type this pipeline reads" in err
    assert _quarantine() == {"unsupported_file": 1}
    _nothing_accepted()


@case("tagging", "no drop at all for the day (only a hidden upload in progress)",
      "exit 4 (input missing: the drop may be late), nothing written")
def test_missing_drop(pg_dsn, data_root, cli):
    (_folder(data_root) / ".upload.jsonl.part").write_text("half")
    code, out, err = _validate(cli)
    assert code == 4 and out == ""
    assert err.startswith("error: no article files for 2024-06-03 under ")
    assert ingest.partition_status("tagging", DAY.isoformat()) is None


@case("tagging", "a drop where 3 of 10 rows are bad, at the default threshold (5%)",
      "exit 3 `... 3 of 10 rows are bad (30.00% > threshold 5.00%)`; the bad rows are in the quarantine")
def test_past_the_threshold(pg_dsn, data_root, cli):
    rows = [*_good(7), *[_article(90 + i, body="") for i in range(3)]]
    (_folder(data_root) / "d.jsonl").write_text(_jsonl(rows))
    code, _, err = _validate(cli, share=None)
    assert code == 3
    assert "3 of 10 rows are bad (30.00% > threshold 5.00%)" in err
    assert _quarantine() == {"empty_body": 3}
    _nothing_accepted()


@case("tagging", "Excel-style CSV: UTF-8 BOM, CRLF line ends, quoted bodies with commas and line breaks, tags as "
      "`a|b` and as a JSON list", "all 4 articles accepted, tags parsed")
def test_excel_csv(pg_dsn, data_root, cli):
    text = (HEADER + f'x1,標題,"{BODY}\n第二段，有逗號",2024-06-03 08:00,finance|politics\n'
            f'x2,標題,"{BODY}",2024-06-03T08:00:00+08:00,"[""tech"", ""finance""]"\n'
            f"x3,標題,{BODY},2024-06-03,Food\nx4,,{BODY},2024-06-03,\n")
    (_folder(data_root) / "d.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert _validate(cli)[0] == 0
    assert _valid() == 4 and _quarantine() == {}
    staged = ingest.accepted("tagging", DAY.isoformat())["staged_uri"]
    tags = pq.read_table(f"{staged}/articles.parquet").to_pydict()["tags"]
    assert tags == [["finance", "politics"], ["tech", "finance"], ["food"], []]


@case("tagging", "a JSON array file and a Parquet file with upper-case column names",
      "both read: 5 + 3 articles accepted")
def test_json_and_parquet(pg_dsn, data_root, cli):
    folder = _folder(data_root)
    (folder / "a.json").write_text(json.dumps(_good(5), ensure_ascii=False))
    table = pa.table({"ID": ["p1", "p2", "p3"], "TITLE": ["標題"] * 3, "BODY": [BODY] * 3,
                      "PUBLISHED_AT": ["2024-06-03T01:00:00Z"] * 3, "TAGS": [["tech"]] * 3})
    pq.write_table(table, folder / "b.parquet")
    assert _validate(cli)[0] == 0
    assert _valid() == 8


@case("tagging", "a corpus whose rows have no tags", "exit 3: every row `missing_tags`, nothing to train on")
def test_corpus_without_tags(pg_dsn, data_root, cli):
    (_folder(data_root, "corpus") / "c.jsonl").write_text(_jsonl([_article(i, tags=[]) for i in range(5)]))
    code, _, err = _validate(cli, "corpus")
    assert code == 3 and "5 of 5 rows are bad" in err
    assert _quarantine("corpus") == {"missing_tags": 5}
    _nothing_accepted("corpus")


def _train_and_promote() -> None:
    from pipelines.settings import get_settings
    from pipelines.tagging.generate import TaggingSpec, write_dataset

    write_dataset(TaggingSpec(corpus_articles=200, days=1, daily_articles=5, start=date(2030, 1, 1)),
                  __import__("pathlib").Path(get_settings().data_root))
    jobs.validate_corpus(0.1)
    config = jobs.train_config(families=["majority", "tfidf_lr"], views=["words"], grid={}, cv_folds=3, n_jobs=1)
    result = jobs.train(date(2030, 1, 1), config)
    jobs.promote("tfidf_lr_words", result["runs"]["tfidf_lr_words"])


@case("tagging", "`tag` before any model was promoted", "exit 4 with the way to promote one; nothing written")
def test_tag_without_a_promoted_model(pg_dsn, data_root, cli):
    (_folder(data_root) / "d.jsonl").write_text(_jsonl(_good(5)))
    assert _validate(cli)[0] == 0
    code, _, err = cli("tagging", "tag", "--day", DAY)
    assert code == 4 and err.startswith("error: no promoted tagging model: train (DAG tagging_train_weekly) and "
                                        "promote one explicitly")
    assert db.query("SELECT count(*) AS n FROM tagging_article_tags")[0]["n"] == 0
    assert db.query("SELECT count(*) AS n FROM tagging_days")[0]["n"] == 0


@case("tagging", "a re-drop of a tagged day that is all bad (a broken export replacing the good one)",
      "exit 3; the accepted run, its quarantine and the day's tags stay exactly as they were")
def test_bad_redrop_keeps_the_tagged_day(pg_dsn, data_root, cli):
    _train_and_promote()
    folder = _folder(data_root)
    (folder / "d.jsonl").write_text(_jsonl(_good(20)))
    assert cli("tagging", "run", "--day", DAY)[0] == 0
    before = db.query("SELECT * FROM tagging_article_tags ORDER BY article_id, tag")
    accepted = ingest.accepted("tagging", DAY.isoformat())
    assert len({r["article_id"] for r in before}) == 20
    (folder / "d.jsonl").write_text(_jsonl([_article(i, body="") for i in range(20)]))
    code, _, err = cli("tagging", "run", "--day", DAY)
    assert code == 3 and "20 of 20 rows are bad" in err
    assert db.query("SELECT * FROM tagging_article_tags ORDER BY article_id, tag") == before
    assert ingest.accepted("tagging", DAY.isoformat())["run_id"] == accepted["run_id"]
    assert _quarantine() == {}  # the accepted run's (empty) quarantine, not the rejected attempt's
    assert ingest.partition_status("tagging", DAY.isoformat())["last_status"] == "rejected"


@case("tagging", "a grid naming a parameter the forest does not have, and `--cv-folds 1`",
      "exit 2 before any work: the unknown name with the valid ones; the fold bounds")
def test_bad_training_arguments(pg_dsn, data_root, cli):
    code, _, err = cli("tagging", "train", "--grid", '{"seed_rf": {"forest__bogus": [1, 2]}}')
    assert code == 2 and err.startswith("error: seed_rf: unknown parameter(s) ['forest__bogus']; valid: ")
    code, _, err = cli("tagging", "train", "--cv-folds", "1")
    assert (code, err.strip()) == (2, "error: cv_folds 1 must be between 2 and 20")
    code, _, err = cli("tagging", "train", "--grid", "{not json")
    assert code == 2 and "--grid is not JSON" in err
    assert db.query("SELECT to_regclass('runs') IS NULL AS untouched")[0]["untouched"]  # no work was started


@case("tagging", "`tag --model` naming a model that does not exist", "exit 2 listing the model names")
def test_unknown_model_name(pg_dsn, data_root, cli):
    code, _, err = cli("tagging", "tag", "--day", DAY, "--model", "bert_words")
    assert code == 2 and "'bert_words' is not a tagging model; choose one of ['majority', 'seed_rf_words'" in err

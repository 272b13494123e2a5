"""Hostile inputs for the keystroke pipeline, through ``python -m pipelines keystrokes ...`` against PostgreSQL.

Each case feeds one bad (or awkward but legal) input to the real entry point and asserts the exact outcome:
attempts loaded and quarantined by reason, or the exact error line and exit code with nothing half-written
(no partition status, no quarantine rows, no staged run, a registry run marked rejected or failed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import db, ingest
from pipelines.keystrokes import schema
from pipelines.keystrokes.replay import format_time_us, parse_time_us
from pipelines.keystrokes.server import Faults, serving
from tests.hostile.registry import case

pytestmark = pytest.mark.integration

PHRASE = schema.PHRASE
BS = schema.BACKSPACE
T0 = parse_time_us("2017-12-07T21:24:51.212000")


def attempt(user: int, k: int, keys: list[str] | None = None, gap_ms: int | None = None) -> list[dict]:
    """A valid attempt: the phrase typed with gaps that depend on the user and the attempt (distinct events)."""
    keys = list(PHRASE) if keys is None else keys
    t, out = T0 + (user * 1000 + k) * 60_000_000, []
    for i, key in enumerate(keys):
        if i:
            t += (gap_ms or 90 + 7 * user + (i * (k + 3)) % 40) * 1000
        out.append({"character": key, "typed_at": format_time_us(t)})
    return out


def user_label(n: int) -> str:
    return f"{n:032x}"


def write_pages(root: Path, pages: list[dict], folder: str = "in") -> str:
    """Pages chained in the given order (unless a page sets its own ``next``); returns the first page's path in
    the data root."""
    base = root / folder
    base.mkdir(parents=True, exist_ok=True)
    names = [p.pop("_name", None) or f"user_{p.get('user_label', f'x{i}')}_{i}.json" for i, p in enumerate(pages)]
    for i, (name, page) in enumerate(zip(names, pages, strict=True)):
        page = {**page}
        page.setdefault("next", names[i + 1] if i + 1 < len(names) else None)
        raw = page.pop("_raw", None)
        (base / name).write_bytes(raw if raw is not None else json.dumps(page).encode())
    return f"{folder}/{names[0]}"


def good_pages(users: int = 3, per_user: int = 6) -> list[dict]:
    return [{"user_data": [attempt(u, k) for k in range(per_user)], "user_label": user_label(u)}
            for u in range(users)]


def partitions() -> list[dict]:
    return db.query("SELECT * FROM ingest_partitions WHERE pipeline = 'keystrokes'")


def quarantine() -> dict[str, int]:
    rows = db.query("SELECT reason, count(*) AS n FROM quarantine WHERE pipeline = 'keystrokes' GROUP BY 1")
    return {r["reason"]: r["n"] for r in rows}


@pytest.fixture(autouse=True)
def _fresh_log_handlers():
    """The CLI's logging.basicConfig binds the root logger to the stderr of the test that first ran it; reset it
    so each test's command logs to its own captured stderr (a rejection also logs an ops ALERT warning)."""
    import logging

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    yield
    root.handlers[:] = saved


def error_line(err: str) -> str:
    """The command's one error line (warnings, e.g. an ops ALERT of a rejection, may come before it)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0] + "\n"


def runs(kind: str | None = None) -> int:
    """Registry runs of the pipeline (0 when nothing ever touched the schema)."""
    if db.query("SELECT to_regclass('runs') IS NULL AS missing")[0]["missing"]:
        return 0
    return db.query("SELECT count(*) AS n FROM runs WHERE pipeline = 'keystrokes' AND (%s::text IS NULL OR "
                    "kind = %s)", (kind, kind))[0]["n"]


def nothing_written(data_root: Path, status: str = "rejected") -> None:
    assert partitions() == [] and quarantine() == {}
    assert not (data_root / "keystrokes" / "staged").exists() or not any((data_root / "keystrokes" / "staged")
                                                                         .rglob("summary.json"))
    runs = db.query("SELECT status FROM runs WHERE pipeline = 'keystrokes' AND kind = 'ingest'")
    assert [r["status"] for r in runs] == [status]


def ingest_train(cli, url: str, *extra) -> tuple[int, str, str]:
    return cli("keystrokes", "ingest", "--kind", "train", "--url", url, "--min-samples", "2", *extra)


# ------------------------------------------------------------------------------------------------ attempts
@case("keystrokes", "a NUL character typed in one attempt", "that attempt is quarantined (`control_characters`, "
      "NUL shown as ␀); the other 17 load")
def test_nul_character(pg_dsn, data_root, cli):
    pages = good_pages()
    pages[1]["user_data"][2][5]["character"] = "\x00"
    code, _, err = ingest_train(cli, write_pages(data_root, pages), "--max-bad-share", "0.1")
    assert (code, err) == (0, "")
    assert partitions()[0]["rows_valid"] == 17 and quarantine() == {"control_characters": 1}
    record = db.query("SELECT record FROM quarantine")[0]["record"]
    assert record["events"][5]["character"] == "\u2400" and record["user_label"] == user_label(1)


@case("keystrokes", "control characters inside `typed_at`, a numeric `typed_at`, a `[shift]` key, 401 events, "
      "an empty attempt, an attempt that is a string",
      "each attempt quarantined with its reason (`control_characters`, `malformed_event` ×2, `too_many_events`, "
      "`empty_attempt`, `not_a_list`); the user left with one valid attempt is dropped (`too_few_samples`); 11 "
      "load")
def test_broken_attempts_each_get_their_reason(pg_dsn, data_root, cli):
    pages = good_pages(users=3, per_user=6)
    data = pages[0]["user_data"]
    data[0][3]["typed_at"] = "2017-12-07T21:24:5\x071.212000"
    data[1][3]["typed_at"] = 1512681891.212
    data[2][3]["character"] = "[shift]"
    data[3] = attempt(0, 3, list(PHRASE) * 11)
    data[4] = []
    pages[1]["user_data"][0] = "Be Authentic. Be Yourself. Be Typing."
    code, _, _ = ingest_train(cli, write_pages(data_root, pages), "--max-bad-share", "0.5")
    assert code == 0
    assert quarantine() == {"control_characters": 1, "malformed_event": 2, "too_many_events": 1,
                            "empty_attempt": 1, "not_a_list": 1, "too_few_samples": 1}
    assert partitions()[0]["rows_valid"] == 11 and partitions()[0]["rows_read"] == 18


@case("keystrokes", "times going backwards, a 10-minute gap, a timestamp `yesterday`, a wrong phrase after "
      "replaying the backspaces", "`time_backwards`, `absurd_gap`, `bad_timestamp`, `wrong_phrase` (its detail "
      "shows what was typed); the rest loads")
def test_time_and_phrase_rules(pg_dsn, data_root, cli):
    pages = good_pages(users=2, per_user=8)
    data = pages[0]["user_data"]
    data[0][4]["typed_at"], data[0][5]["typed_at"] = data[0][5]["typed_at"], data[0][4]["typed_at"]
    for event in data[1][10:]:
        event["typed_at"] = format_time_us(parse_time_us(event["typed_at"]) + 600_000_000)
    data[2][7]["typed_at"] = "yesterday"
    data[3] = attempt(0, 3, [*PHRASE[:-1], "!", BS, "?"])
    code, _, _ = ingest_train(cli, write_pages(data_root, pages), "--max-bad-share", "0.5")
    assert code == 0
    assert quarantine() == {"time_backwards": 1, "absurd_gap": 1, "bad_timestamp": 1, "wrong_phrase": 1}
    detail = db.query("SELECT detail FROM quarantine WHERE reason = 'wrong_phrase'")[0]["detail"]
    assert detail == "replays to 'Be Authentic. Be Yourself. Be Typing?'"


@case("keystrokes", "typos left in: 4 of 18 attempts replay to another text (e.g. `be authentic...` in lower case)",
      "accepted at the default threshold: `wrong_phrase` is quarantined and counted but benign (people make "
      "typos); bad share 0")
def test_typos_left_in_do_not_reject(pg_dsn, data_root, cli):
    pages = good_pages()
    for u, k in ((0, 0), (0, 1), (1, 2), (2, 3)):
        pages[u]["user_data"][k] = attempt(u, k, list(PHRASE.lower()))
    assert ingest_train(cli, write_pages(data_root, pages))[0] == 0
    part = partitions()[0]
    assert quarantine() == {"wrong_phrase": 4} and part["bad_share"] == 0 and part["rows_valid"] == 14


@case("keystrokes", "typed_at with a UTC offset (`+01:00`) beside naive times, and backspaces past the start",
      "accepted: offsets converted to UTC, a backspace on an empty text counted and harmless")
def test_offsets_and_backspace_on_empty(pg_dsn, data_root, cli):
    pages = good_pages(users=2, per_user=3)
    for event in pages[0]["user_data"][0]:
        event["typed_at"] = format_time_us(parse_time_us(event["typed_at"]) + 3_600_000_000) + "+01:00"
    pages[1]["user_data"][0] = attempt(1, 0, [BS, BS, *PHRASE])
    assert ingest_train(cli, write_pages(data_root, pages))[0] == 0
    assert partitions()[0]["rows_valid"] == 6 and quarantine() == {}


@case("keystrokes", "the same attempt twice for a user, and a user with a single valid attempt (min 2)",
      "the repeat is `duplicate_attempt`, the lone user's attempt `too_few_samples`: both counted, both benign "
      "(not towards the bad share)")
def test_duplicates_and_too_few_samples_are_benign(pg_dsn, data_root, cli):
    pages = good_pages(users=2, per_user=4)
    pages[0]["user_data"].append(pages[0]["user_data"][1])
    pages.append({"user_data": [attempt(9, 0)], "user_label": user_label(9)})
    code, _, _ = ingest_train(cli, write_pages(data_root, pages), "--max-bad-share", "0")
    assert code == 0
    part = partitions()[0]
    assert quarantine() == {"duplicate_attempt": 1, "too_few_samples": 1}
    assert part["rows_valid"] == 8 and part["bad_share"] == 0 and part["extra"]["users_dropped"] == 1


@case("keystrokes", "a user's attempts on two pages that are not next to each other",
      "merged: one user with all 7 attempts, counted as a user on several pages")
def test_user_on_two_pages(pg_dsn, data_root, cli):
    pages = good_pages(users=3, per_user=4)
    pages.append({"user_data": [attempt(0, k) for k in range(10, 13)], "user_label": user_label(0)})
    assert ingest_train(cli, write_pages(data_root, pages))[0] == 0
    extra = partitions()[0]["extra"]
    assert (extra["users"], extra["pages"], extra["users_on_several_pages"]) == (3, 4, 1)
    import pandas as pd

    from pipelines.storage import DataRoot

    staged = ingest.staged_rel_of(partitions()[0], DataRoot())
    samples = pd.read_parquet(data_root / staged / "samples.parquet")
    assert (samples["user_label"] == user_label(0)).sum() == 7
    assert sorted(samples.loc[samples["user_label"] == user_label(0), "user_attempt"]) == list(range(7))


@case("keystrokes", "most attempts broken (garbage events)", "exit 3, one line with the counts; the quarantine "
      "holds every bad attempt with its reason, the partition is `rejected`, nothing staged for readers")
def test_too_many_bad_attempts(pg_dsn, data_root, cli):
    pages = good_pages(users=2, per_user=5)
    for a in pages[0]["user_data"]:
        a[1]["character"] = "[ctrl]"
    url = write_pages(data_root, pages)
    code, out, err = ingest_train(cli, url)
    partition = schema.partition_key("train", url)
    assert code == 3 and out == ""
    assert error_line(err) == (f"error: keystrokes {partition}: 5 of 10 rows are bad (50.00% > threshold 5.00%); "
                               "reasons {'malformed_event': 5}. The rows are in the quarantine table.\n")
    assert quarantine() == {"malformed_event": 5}
    assert partitions()[0]["status"] == "rejected" and ingest.accepted("keystrokes", partition) is None


@case("keystrokes", "a rejected re-ingest of a dataset that was accepted before (the pages changed for the worse)",
      "exit 3; the accepted run and its quarantine stay what readers see, the attempt is recorded beside it")
def test_rejected_reingest_keeps_the_accepted_run(pg_dsn, data_root, cli):
    url = write_pages(data_root, good_pages())
    assert ingest_train(cli, url)[0] == 0
    accepted = partitions()[0]
    page = data_root / url
    doc = json.loads(page.read_text())
    doc["user_data"] = [[] for _ in doc["user_data"]]
    page.write_text(json.dumps(doc))
    code, _, err = ingest_train(cli, url)
    assert code == 3 and "rows are bad" in err
    now = partitions()[0]
    assert now["status"] == "accepted" and now["run_id"] == accepted["run_id"]
    assert now["last_status"] == "rejected" and quarantine() == {}


# ------------------------------------------------------------------------------------------------ pages
@case("keystrokes", "a NUL inside `user_label`", "exit 3: `page <url>: 'user_label' ... is not a user id`; "
      "nothing written")
def test_nul_in_user_label(pg_dsn, data_root, cli):
    pages = good_pages()
    pages[1]["user_label"] = "ab\x00cd"
    pages[1]["_name"] = "user_abcd.json"
    code, _, err = ingest_train(cli, write_pages(data_root, pages))
    assert code == 3
    assert error_line(err) == ("error: page in/user_abcd.json: 'user_label' 'ab\\x00cd' is not a user id (letters, "
                               "digits, '_', '.', ':', '-'; at most 128)\n")
    nothing_written(data_root)


@pytest.mark.parametrize(("raw", "expected"), [
    (b"<html><body>502 Bad Gateway</body></html>", "is not JSON (JSONDecodeError: Expecting value: line 1 column "
                                                   "1 (char 0); starts with '<html><body>502 Bad Gateway</body>"),
    (b'{"user_data": [[{"character": "B", "typed_at": "2017-12', "is not JSON (JSONDecodeError: Unterminated "
                                                                 "string starting at"),
    (b"\x80\x81garbage", "is not JSON (UnicodeDecodeError"),
    (b"\xff\xfe\x00garbage", "is not JSON (JSONDecodeError"),  # a UTF-16 byte order mark, then nonsense
    (b"[" * 100_000, "is not JSON (RecursionError"),
    (b'[{"user_data": []}]', "is not a JSON object (a list)"),
    (b"{}", "lacks 'user_data', 'user_label'"),
    (b'{"user_data": {"a": 1}, "user_label": "u1", "next": null}', "'user_data' must be a list of attempts, got "
                                                                   "dict"),
])
@case("keystrokes", "a second page that is HTML, truncated JSON, undecodable bytes, 100,000 nested brackets, a "
      "list, `{}`, or `user_data` as an object", "exit 3, one line naming the page and what is wrong; nothing written")
def test_broken_page(pg_dsn, data_root, cli, raw, expected):
    pages = good_pages(users=2)
    pages.insert(1, {"_raw": raw, "_name": "user_broken.json"})
    url = write_pages(data_root, pages)
    code, out, err = ingest_train(cli, url)
    assert code == 3 and out == ""
    line = error_line(err)
    assert line.startswith((f"error: page in/user_broken.json {expected}",
                            f"error: page in/user_broken.json: {expected}")), err
    nothing_written(data_root)


@case("keystrokes", "a page whose `next` is itself (a loop)", "exit 3: `page ... was seen twice (a loop ...)`; "
      "nothing written")
def test_loop(pg_dsn, data_root, cli):
    pages = good_pages(users=2)
    pages[1]["_name"] = "user_b.json"
    pages[1]["next"] = "user_b.json"
    code, _, err = ingest_train(cli, write_pages(data_root, pages))
    assert code == 3
    assert error_line(err) == ("error: page in/user_b.json was seen twice (a loop: page 1, in/user_b.json, links back "
                               "to page 1)\n")
    nothing_written(data_root)


@pytest.mark.parametrize("bad_next", ["http://169.254.169.254/latest/meta-data", "../../../etc/passwd",
                                      "/etc/passwd", "file:///etc/passwd"])
@case("keystrokes", "`next` pointing at another host, a parent folder, an absolute path or a file:// URL",
      "exit 3: `'next' ... is not a file name relative to the page`; nothing fetched or written")
def test_next_cannot_leave_the_folder(pg_dsn, data_root, cli, bad_next):
    pages = good_pages(users=2)
    pages[0]["next"] = bad_next
    code, _, err = ingest_train(cli, write_pages(data_root, pages))
    assert code == 3 and "is not a file name relative to the page" in err
    nothing_written(data_root)


@case("keystrokes", "a first page that does not exist", "exit 4 (input missing): `page <data root>/... no such "
      "file`; the registry run failed, nothing else written")
def test_missing_first_page(pg_dsn, data_root, cli):
    code, _, err = ingest_train(cli, "in/user_nobody.json")
    assert code == 4 and error_line(err) == f"error: page {data_root}/in/user_nobody.json: no such file\n"
    nothing_written(data_root, status="failed")


@case("keystrokes", "an `ftp://` URL, an absolute path without `file://`, `..` in a data-root path",
      "exit 2 (bad usage), one line saying which URLs work; no registry run")
def test_unsupported_urls(pg_dsn, data_root, cli):
    for url, message in (("ftp://host/user_x.json", "unsupported scheme 'ftp'"),
                         ("/etc/passwd", "a data-root path is relative"),
                         ("in/../../secret.json", "a data-root path is relative")):
        code, _, err = ingest_train(cli, url)
        assert code == 2 and message in error_line(err)
    assert runs() == 0


@case("keystrokes", "an HTTP server answering 500 to every request", "exit 1 after the retries: `page <url>: still "
      "failing after 2 attempts (too many 500 error responses)`; nothing written")
def test_server_keeps_failing(pg_dsn, data_root, cli):
    from pipelines.keystrokes import jobs

    made = jobs.generate(n_users=3, mean_samples=6, seed=1, bad_rate=0.0)
    with serving(data_root / "keystrokes" / "generated" / made["name"], Faults(fail_every=99)) as server:
        code, _, err = ingest_train(cli, server.train_url, "--retries", "1")
    assert code == 1
    assert error_line(err).rstrip("\n") == (f"error: PageFetchError: page {server.train_url}: still failing after 2 "
                                   "attempts (too many 500 error responses)")
    nothing_written(data_root, status="failed")


# ------------------------------------------------------------------------------------------------ test documents
@case("keystrokes", "a test document with no attempts (`{\"attempts\": []}`)", "exit 3: no valid row; the "
      "partition is recorded as rejected")
def test_empty_test_document(pg_dsn, data_root, cli):
    (data_root / "t.json").write_text('{"attempts": []}')
    code, _, err = cli("keystrokes", "ingest", "--kind", "test", "--url", "t.json")
    assert code == 3 and "no valid row (0 read" in err
    assert partitions()[0]["status"] == "rejected"


@case("keystrokes", "a test document without `attempts` (a training page given as the test URL)",
      "exit 3: `page t.json lacks 'attempts'`; nothing written")
def test_test_document_without_attempts(pg_dsn, data_root, cli):
    (data_root / "t.json").write_text(json.dumps(good_pages(1)[0] | {"next": None}))
    code, _, err = cli("keystrokes", "ingest", "--kind", "test", "--url", "t.json")
    assert code == 3 and error_line(err).startswith("error: page t.json lacks 'attempts'")
    nothing_written(data_root)


@case("keystrokes", "predicting before any version was promoted", "exit 2, one line saying how to promote; the test "
      "document is ingested, no prediction row written")
def test_predict_without_promotion(pg_dsn, data_root, cli):
    (data_root / "t.json").write_text(json.dumps({"attempts": [attempt(0, 0), attempt(1, 1)]}))
    code, _, err = cli("keystrokes", "predict", "--url", "t.json", "--model-name", "typing")
    assert code == 2
    assert error_line(err) == ("error: no promoted version of typing: name a version, or promote one (the training "
                               "DAG's `promote` Param, or `python -m pipelines keystrokes promote --model-name typing "
                               "--type <model type>`)\n")
    assert db.query("SELECT count(*) AS n FROM keystrokes_predictions")[0]["n"] == 0


@case("keystrokes", "a test document with a wrong phrase, an empty attempt and a NUL among valid attempts",
      "exit 0; `final_pred.json` answers `Invalid Input` at exactly those positions, the CSV gives the reasons, "
      "Postgres has every position")
def test_invalid_test_attempts_keep_their_place(pg_dsn, data_root, cli):
    url = write_pages(data_root, good_pages(users=3, per_user=6))
    assert cli("keystrokes", "train", "--url", url, "--models", "logreg", "--model-name", "typing", "--min-samples",
               "2", "--promote", "logreg")[0] == 0
    nul = attempt(1, 30)
    nul[3]["character"] = "\x00"
    test = [attempt(0, 20), attempt(1, 21, list(PHRASE.lower())), [], attempt(2, 22), nul]
    (data_root / "t.json").write_text(json.dumps({"attempts": test}))
    code, out, _ = cli("keystrokes", "predict", "--url", "t.json", "--model-name", "typing", "--max-bad-share", "1")
    assert code == 0
    result = json.loads(out)
    final = json.loads(Path(result["final_pred"]).read_text())
    assert [f == "Invalid Input" for f in final] == [False, True, True, False, True]
    rows = db.query("SELECT position, status, reason FROM keystrokes_predictions ORDER BY position")
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("predicted", None), ("invalid", "wrong_phrase"), ("invalid", "empty_attempt"), ("predicted", None),
        ("invalid", "control_characters")]


@case("keystrokes", "a promoted model whose feature definition differs from the code's (trained before a change)",
      "exit 2: `... was trained on feature definition X, this code computes Y: retrain it`; nothing predicted")
def test_feature_version_mismatch(pg_dsn, data_root, cli):
    url = write_pages(data_root, good_pages(users=3, per_user=6))
    code, out, _ = cli("keystrokes", "train", "--url", url, "--models", "logreg", "--model-name", "typing",
                       "--min-samples", "2", "--promote", "logreg")
    assert code == 0
    folder = Path(json.loads(out[out.index("{"):])["models"]["logreg"])
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "feature_version": "old"}))
    (data_root / "t.json").write_text(json.dumps({"attempts": [attempt(0, 20)]}))
    code, _, err = cli("keystrokes", "predict", "--url", "t.json", "--model-name", "typing")
    assert code == 2 and "was trained on feature definition old, this code computes" in err
    assert db.query("SELECT count(*) AS n FROM keystrokes_predictions")[0]["n"] == 0


@case("keystrokes", "training arguments out of range: `--holdout 1.5`, `--models lstm`, `--rows 1001`, "
      "`--model-name 'My Model'`", "exit 2 before any work, one line each")
def test_bad_arguments(pg_dsn, data_root, cli):
    url = write_pages(data_root, good_pages())
    assert cli("keystrokes", "train", "--url", url, "--holdout", "1.5")[0] == 2
    assert cli("keystrokes", "train", "--url", url, "--models", "lstm")[0] == 2
    assert cli("keystrokes", "analyse", "--url", url, "--rows", "1001")[0] == 2
    code, _, err = cli("keystrokes", "train", "--url", url, "--model-name", "My Model", "--min-samples", "2")
    assert code == 2 and error_line(err).startswith("error: model name 'My Model' must be 1-63 characters")
    assert runs("train") == 0

"""The shared ingest contract against a real PostgreSQL: decisions, the commit written last, NUL-safe
quarantine, the accepted pointer surviving a rejected rerun, concurrent commits, staging pruning."""

from __future__ import annotations

import threading

import pytest

from pipelines import db, ingest
from pipelines.errors import MissingPartitionError, RunRejected
from pipelines.storage import DataRoot

pytestmark = pytest.mark.integration


def _validator(valid: int, bad: dict[str, int], record: str = '{"x": 1}'):
    def validate(staging: ingest.StagedRun, result: ingest.IngestResult) -> None:
        result.files = ["a.csv"]
        result.rows_valid = valid
        for reason, n in bad.items():
            result.add(reason, n)
        result.rows_read = valid + sum(bad.values())
        (staging.path("rows.txt")).write_text(f"{valid} rows\n")
        ingest.quarantine_from_rows(staging.path("quarantine.parquet"),
                                    [{"source": "a.csv", "reason": r, "detail": "d\x00x", "record": record}
                                     for r, n in bad.items() for _ in range(n)])
    return validate


def test_file_types_are_case_insensitive_and_know_compressions():
    assert ingest.file_format("b.CSV") == ("csv", None)
    assert ingest.file_format("b.csv.bz2") == ("csv", "bz2")
    assert ingest.file_format("x.TSV.GZ") == ("tsv", "gzip")
    assert ingest.file_format("p.parquet") == ("parquet", None)
    assert ingest.file_format("notes.docx") == (None, None)


def test_decide_rejects_past_the_threshold_on_empty_and_on_unread_files():
    r = ingest.IngestResult("p", "2020-01-01", rows_read=100, rows_valid=90, reasons={"bad": 6, "dup": 4},
                            benign_reasons=("dup",))
    assert r.rows_bad == 6 and r.rows_quarantined == 10
    assert r.decide(0.05).status == "rejected" and "6 of 100" in r.rejection
    assert r.decide(0.10).status == "accepted" and r.rejection is None
    empty = ingest.IngestResult("p", "d", rows_read=3, rows_valid=0, reasons={"bad": 3})
    assert "no valid row" in empty.decide(1.0).rejection
    unread = ingest.IngestResult("p", "d", rows_read=10, rows_valid=10)
    unread.unread("b.docx", "unsupported_file", "not a file type this pipeline reads")
    assert "could not be read" in unread.decide(1.0).rejection


def test_accepted_run_commits_quarantine_and_pointer_nul_safe(pg_dsn, data_root):
    result = ingest.run_ingest("demo", "2020-01-01", _validator(95, {"bad_time": 3, "dup": 2},
                                                                '{"uid": "a\\u0000b"}'),
                               max_bad_share=0.05, benign_reasons=("dup",))
    assert result.accepted and result.rows_bad == 3
    rows = db.query("SELECT reason, detail, record->>'uid' AS uid, run_id::text FROM quarantine ORDER BY reason")
    assert len(rows) == 5 and {r["run_id"] for r in rows} == {result.run_id}
    assert rows[0]["detail"] == "d\u2400x" and rows[0]["uid"] == "a\u2400b"
    row = ingest.accepted("demo", "2020-01-01")
    assert row["run_id"] and str(row["run_id"]) == result.run_id and row["rows_valid"] == 95
    rel = ingest.staged_rel_of(row, DataRoot())
    assert (data_root / rel / "rows.txt").read_text() == "95 rows\n"
    assert (data_root / rel / "summary.json").exists()


def test_a_rejected_rerun_keeps_the_accepted_run_and_its_quarantine(pg_dsn, data_root):
    good = ingest.run_ingest("demo", "2020-01-02", _validator(99, {"bad_time": 1}), max_bad_share=0.05)
    with pytest.raises(RunRejected, match="50 of 100"):
        ingest.run_ingest("demo", "2020-01-02", _validator(50, {"bad_time": 50}), max_bad_share=0.05)
    row = ingest.partition_status("demo", "2020-01-02")
    assert row["status"] == "accepted" and str(row["run_id"]) == good.run_id
    assert row["last_status"] == "rejected" and "50 of 100" in row["last_error"]
    quarantined = db.query("SELECT count(*) AS n, min(run_id::text) AS run FROM quarantine")[0]
    assert quarantined == {"n": 1, "run": good.run_id}  # agrees with what readers see
    runs = db.query("SELECT status FROM runs WHERE pipeline = 'demo' ORDER BY started_at")
    assert [r["status"] for r in runs] == ["success", "rejected"]


def test_a_never_accepted_partition_shows_its_rejection(pg_dsn, data_root):
    with pytest.raises(RunRejected):
        ingest.run_ingest("demo", "2020-01-03", _validator(0, {"bad_time": 4}), max_bad_share=0.05)
    assert ingest.accepted("demo", "2020-01-03") is None
    assert ingest.partition_status("demo", "2020-01-03")["status"] == "rejected"
    assert db.query("SELECT count(*) AS n FROM quarantine")[0]["n"] == 4


def test_a_failure_before_the_commit_leaves_the_previous_state(pg_dsn, data_root):
    good = ingest.run_ingest("demo", "2020-01-04", _validator(10, {"bad_time": 0}), max_bad_share=0.05)

    def broken(staging, result):
        raise MissingPartitionError("late")

    with pytest.raises(MissingPartitionError):
        ingest.run_ingest("demo", "2020-01-04", broken, max_bad_share=0.05)
    assert str(ingest.accepted("demo", "2020-01-04")["run_id"]) == good.run_id


def test_concurrent_runs_of_one_partition_leave_one_run_s_quarantine(pg_dsn, data_root):
    errors: list[BaseException] = []

    def one() -> None:
        try:
            ingest.run_ingest("demo", "2020-01-05", _validator(90, {"bad_time": 4}), max_bad_share=0.05)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = db.query("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM quarantine")[0]
    assert rows == {"n": 4, "runs": 1}
    accepted_run = str(ingest.accepted("demo", "2020-01-05")["run_id"])
    assert db.query("SELECT DISTINCT run_id::text AS r FROM quarantine")[0]["r"] == accepted_run


def test_accepted_partitions_and_pruning(pg_dsn, data_root):
    for day in ("2020-02-01", "2020-02-02"):
        for _ in range(3):
            ingest.run_ingest("demo", day, _validator(5, {}), max_bad_share=0.05)
    parts = ingest.accepted_partitions("demo", through="2020-02-01")
    assert list(parts) == ["2020-02-01"]
    pruned = ingest.prune_staging("demo", keep_attempts=1)
    assert len(pruned["removed"]) == 2  # per day: the accepted run and the newest other attempt stay
    for day, row in ingest.accepted_partitions("demo").items():
        assert (data_root / ingest.staged_rel_of(row, DataRoot()) / "summary.json").exists(), day

"""Retention validation (``inspect_day``: the ingest contract's validation without Postgres) on hand-written
drops: every reason, every file-level failure, the threshold."""

from collections import Counter
from datetime import date

import duckdb
import pytest

from pipelines import ingest
from pipelines.errors import MissingPartitionError
from pipelines.retention.generate import RetentionDataSpec, write_days
from pipelines.retention.ingest import inspect_day
from pipelines.storage import DataRoot

DAY = date(2017, 4, 1)
HEADER = "event_id,uid,time,event_name,platform\n"


def _drop(root, text: str, name: str = "export.csv", day: date = DAY):
    folder = root / "raw" / "piwik_track" / f"dt={day:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def validate_day(day: date, root: DataRoot, max_bad_share: float = 0.05, workspace=None):
    return inspect_day(day, root, max_bad_share, workspace)


def _quarantine(workspace: ingest.Workspace) -> Counter:
    path = workspace.path("quarantine.parquet")
    return Counter(r[0] for r in duckdb.sql(f"SELECT reason FROM '{path}'").fetchall())


def test_each_bad_row_gets_its_reason(data_root):
    _drop(data_root, HEADER + "\n".join([
        "1,u1,2017-04-01 08:00:00,FIRST_INSTALL,ios",
        "2,u1,2017-04-01 08:01:00,APP_OPEN,ios",
        "3,,2017-04-01 08:02:00,APP_OPEN,ios",             # missing uid
        "4,u2,2017-04-01 25:00:00,APP_OPEN,ios",           # bad time
        "5,u2,2017-04-01 09:00:00,first_instal,ios",       # unknown event
        "6,u2,2017-03-31 23:59:59,APP_OPEN,ios",           # another day
        "7,u1,2017-04-01 08:01:00,APP_OPEN,ios",           # duplicate of 2
        "8,u3,2017-04-01T23:30:00-01:00,APP_OPEN,ios",     # 00:30 UTC on 04-02: outside the day
        "9,u4,2017-04-01T01:30:00+02:00,APP_OPEN,web",     # 23:30 UTC on 03-31: outside the day
        "10,u5,2017-04-01T10:00:00+08:00,APP_OPEN,web",    # 02:00 UTC: fine
        "11,u5,2017-04-01 10:00:00,APP_OPEN,web,surprise", # too many columns
    ]) + "\n")
    workspace = ingest.Workspace(data_root.parent / "ws")
    result = validate_day(DAY, DataRoot(), max_bad_share=1.0, workspace=workspace)
    assert result.rows_valid == 3
    assert result.reasons == {"missing_uid": 1, "bad_time": 1, "unknown_event": 1, "outside_day": 3,
                              "duplicate": 1, "malformed_csv": 1}
    assert result.rows_read == 11
    assert result.rows_bad == 7  # duplicates are benign
    assert _quarantine(workspace) == Counter(result.reasons)


def test_missing_day_is_retryable_not_zero(data_root):
    with pytest.raises(MissingPartitionError, match="no piwik_track export for 2017-04-01"):
        validate_day(DAY, DataRoot())


def test_empty_drop_is_rejected_and_recorded(data_root):
    _drop(data_root, "")
    _drop(data_root, HEADER, name="header_only.csv")
    workspace = ingest.Workspace(data_root.parent / "ws")
    result = validate_day(DAY, DataRoot(), workspace=workspace)
    assert result.status == "rejected" and "no valid row" in result.rejection
    assert _quarantine(workspace) == Counter({"empty_file": 2})


def test_file_without_required_column_fails_clearly(data_root):
    _drop(data_root, "uid,event_name\nu1,APP_OPEN\n")
    result = validate_day(DAY, DataRoot())
    assert result.status == "rejected"
    assert "export.csv: required column(s) ['time'] missing" in result.rejection


def test_threshold_rejects_the_day(data_root):
    rows = [f"{i},u{i},2017-04-01 08:00:00,APP_OPEN,ios" for i in range(90)]
    rows += [f"{i},u{i},not a time,APP_OPEN,ios" for i in range(90, 100)]
    _drop(data_root, HEADER + "\n".join(rows) + "\n")
    rejected = validate_day(DAY, DataRoot(), max_bad_share=0.05)
    assert "10 of 100 rows are bad (10.00% > threshold 5.00%)" in rejected.rejection
    accepted = validate_day(DAY, DataRoot(), max_bad_share=0.2)
    assert accepted.status == "accepted" and accepted.rows_valid == 90


def test_several_files_with_different_optional_columns(data_root):
    _drop(data_root, HEADER + "1,u1,2017-04-01 08:00:00,APP_OPEN,ios\n", name="a.csv")
    _drop(data_root, "uid,time,event_name,country\nu2,2017-04-01 09:00:00,PLAY,HK\n", name="b.csv")
    result = validate_day(DAY, DataRoot())
    assert (len(result.files), result.rows_valid, result.reasons) == (2, 2, {})


def test_quarantine_matches_what_the_generator_planted(data_root):
    spec = RetentionDataSpec(start=DAY, days=1, installs_per_day=80, existing_users=400, seed=11,
                             bad_row_rate=0.03)
    planted = write_days(spec, data_root)["bad"]
    result = validate_day(DAY, DataRoot(), max_bad_share=0.5)
    assert result.reasons == planted

"""The retention pipeline against a real PostgreSQL, checked against an independent pure-Python reading."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines import db, ingest
from pipelines.errors import RunRejected
from pipelines.retention import jobs
from pipelines.retention.generate import RetentionDataSpec, write_days
from pipelines.retention.q1 import q1_csv, q1_postgres
from tests.retention_truth import read_drops

pytestmark = pytest.mark.integration

SPEC = RetentionDataSpec(start=date(2017, 3, 20), days=20, installs_per_day=50, existing_users=250, seed=5,
                         bad_row_rate=0.01)
COHORT_COLUMNS = ["cohort_size", "active_d1_users", "active_d7_users", "active_d30_users", "retained_7d_users"]
VOLATILE = {"computed_at", "loaded_at", "run_id", "quarantined_at"}


def _snapshot() -> dict[str, list[tuple]]:
    tables = {"piwik_track": "event_date, event_id, uid", "user_install": "uid",
              "user_activity_day": "activity_date, uid", "cohort_retention": "install_date",
              "daily_event_stats": "day", "daily_top_events": "day, rank", "daily_platform_stats": "day, platform",
              "retention_day_loads": "day", "quarantine": "partition_key"}
    snap = {}
    for table, order in tables.items():
        rows = db.query(f"SELECT * FROM {table} ORDER BY {order}")
        kept = (tuple(v for k, v in r.items() if k not in VOLATILE and k != "id") for r in rows)
        snap[table] = sorted(kept, key=repr)
    return snap


@pytest.fixture
def drops(data_root):
    write_days(SPEC, data_root)
    return data_root


def test_cohorts_and_q1_match_an_independent_computation(pg_dsn, drops):
    jobs.run_range(SPEC.start, SPEC.end)
    truth = read_drops(drops, SPEC.dates())
    rows = {r["install_date"]: r for r in db.query("SELECT * FROM cohort_retention")}
    assert set(rows) == set(truth.installs.values())
    for install_date, row in rows.items():
        assert {c: row[c] for c in COHORT_COLUMNS} == truth.cohort_row(install_date), install_date
    assert db.query("SELECT count(*) AS n FROM piwik_track")[0]["n"] == truth.events
    # The seed's question, three ways.
    answer = q1_postgres(date(2017, 4, 1), 7)
    assert (answer.installed_users, answer.active_users) == truth.q1(date(2017, 4, 1), 7)
    assert answer.active_users > 0
    stats = {r["day"]: r for r in db.query("SELECT * FROM daily_event_stats")}
    for day in SPEC.dates():
        active = {u for u, days in truth.activity.items() if day in days}
        new = {u for u in active if truth.installs.get(u) == day}
        assert (stats[day]["active_users"], stats[day]["new_users"]) == (len(active), len(new))
        assert stats[day]["returning_users"] == len(active) - len(new)


def test_q1_cli_over_a_csv_export_agrees(pg_dsn, data_root, tmp_path):
    clean = RetentionDataSpec(**{**SPEC.__dict__, "bad_row_rate": 0.0})
    files = write_days(clean, data_root)["files"]
    export = tmp_path / "piwik_track_export.csv"
    with export.open("w") as out:
        for i, path in enumerate(files):
            lines = Path(path).read_text().splitlines(keepends=True)
            out.writelines(lines if i == 0 else lines[1:])
    truth = read_drops(data_root, clean.dates())
    answer = q1_csv(export, date(2017, 4, 1), 7)
    assert (answer.installed_users, answer.active_users, answer.skipped_rows) == (*truth.q1(date(2017, 4, 1)), 0)


def test_reruns_and_any_order_leave_the_same_tables(pg_dsn, drops):
    days = SPEC.dates()
    for day in reversed(days):
        jobs.run_day(day)
    reversed_order = _snapshot()
    jobs.run_range(SPEC.start, SPEC.end)  # a second, in-order backfill over the same month
    assert _snapshot() == reversed_order
    for day in random.Random(1).sample(days, 4):
        jobs.run_day(day)
    assert _snapshot() == reversed_order


def test_missing_day_leaves_windows_unknown_until_it_arrives(pg_dsn, drops):
    gap = SPEC.start + timedelta(days=8)
    for day in SPEC.dates():
        if day != gap:
            jobs.run_day(day)
    affected = db.query("SELECT install_date, retained_7d_users, active_d1_users FROM cohort_retention "
                        "WHERE install_date BETWEEN %s AND %s ORDER BY 1",
                        (gap - timedelta(days=7), gap - timedelta(days=1)))
    assert affected and all(r["retained_7d_users"] is None for r in affected)
    assert affected[-1]["active_d1_users"] is None  # the cohort of the day before the gap
    jobs.run_day(gap)
    truth = read_drops(drops, SPEC.dates())
    for row in db.query("SELECT * FROM cohort_retention"):
        assert {c: row[c] for c in COHORT_COLUMNS} == truth.cohort_row(row["install_date"])


def test_rejected_day_keeps_its_previous_load_and_explains_why(pg_dsn, drops):
    day = SPEC.start + timedelta(days=2)
    jobs.run_day(day)
    before = _snapshot()["piwik_track"]
    path = next((drops / "raw" / "piwik_track" / f"dt={day}").glob("*.csv"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *(ln.replace(f"{day} ", "not-a-date ") for ln in lines[1:])]) + "\n")
    with pytest.raises(RunRejected, match="rows are bad"):
        jobs.run_day(day)
    assert _snapshot()["piwik_track"] == before
    # The tables agree with what readers see (the accepted load); the rejected attempt is recorded beside it.
    loaded = db.query("SELECT status, rows_quarantined, run_id::text FROM retention_day_loads WHERE day = %s",
                      (day,))[0]
    partition = ingest.partition_status("retention", day.isoformat())
    assert loaded["status"] == "loaded" and partition["status"] == "accepted"
    assert loaded["run_id"] == str(partition["run_id"])
    quarantined = db.query("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM quarantine "
                           "WHERE pipeline = 'retention' AND partition_key = %s", (day.isoformat(),))[0]
    assert quarantined["n"] == loaded["rows_quarantined"] and quarantined["runs"] <= 1
    assert partition["last_status"] == "rejected" and "threshold" in partition["last_error"]
    assert partition["last_reasons"].get("bad_time", 0) > 0
    runs = db.query("SELECT status, error FROM runs WHERE pipeline = 'retention' ORDER BY started_at")
    assert runs[-1]["status"] == "rejected" and "threshold" in runs[-1]["error"]


def test_a_late_install_moves_the_user_to_the_earlier_cohort(pg_dsn, data_root):
    def drop(day: date, rows: list[tuple[str, str, str]]):
        folder = data_root / "raw" / "piwik_track" / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{u},{day} {t},{e}\n" for u, t, e in rows)
        (folder / "export.csv").write_text("uid,time,event_name\n" + lines)

    d1, d2, d3 = date(2017, 4, 1), date(2017, 4, 2), date(2017, 4, 3)
    drop(d1, [("u", "09:00:00", "FIRST_INSTALL"), ("v", "09:00:00", "FIRST_INSTALL")])
    drop(d2, [("u", "10:00:00", "FIRST_INSTALL"), ("w", "10:00:00", "FIRST_INSTALL")])
    drop(d3, [("u", "11:00:00", "APP_OPEN"), ("w", "11:00:00", "APP_OPEN")])
    for day in (d2, d3):
        jobs.run_day(day)
    sizes = {r["install_date"]: r["cohort_size"] for r in db.query("SELECT * FROM cohort_retention")}
    assert sizes == {d2: 2}
    jobs.run_day(d1)  # arrives late: u installed on d1 after all
    rows = {r["install_date"]: r for r in db.query("SELECT * FROM cohort_retention")}
    assert {d: r["cohort_size"] for d, r in rows.items()} == {d1: 2, d2: 1}
    assert rows[d2]["active_d1_users"] == 1  # w, active on d3
    new_users = {r["day"]: r["new_users"] for r in db.query("SELECT day, new_users FROM daily_event_stats")}
    assert new_users == {d1: 2, d2: 1, d3: 0}

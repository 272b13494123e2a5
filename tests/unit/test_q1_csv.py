"""The seed's Q1 over a CSV export, with the boundaries the seed's own query got wrong."""

from datetime import date

from pipelines.retention.q1 import q1_csv

ROWS = [
    ("a", "2017-04-01 00:00:00", "FIRST_INSTALL"),
    ("a", "2017-04-08 23:59:59", "APP_OPEN"),       # last second of the window: counts
    ("b", "2017-04-01 23:59:59", "FIRST_INSTALL"),
    ("b", "2017-04-09 00:00:00", "APP_OPEN"),       # first second after the window: does not count
    ("b", "2017-04-01 23:59:59", "APP_OPEN"),       # same day as install: does not count
    ("c", "2017-04-01 12:00:00", "FIRST_INSTALL"),
    ("c", "2017-04-02 00:00:00", "PLAY"),           # first second of the window: counts
    ("d", "2017-03-31 12:00:00", "FIRST_INSTALL"),  # earlier install
    ("d", "2017-04-01 12:00:00", "FIRST_INSTALL"),  # reinstall does not move d into the 04-01 cohort
    ("d", "2017-04-03 12:00:00", "APP_OPEN"),
    ("e", "2017-04-02 06:00:00+08:00", "FIRST_INSTALL"),  # 2017-04-01 22:00 UTC: in the cohort
    ("e", "2017-04-05 10:00:00", "APP_OPEN"),
    ("f", "2017-04-02 10:00:00", "FIRST_INSTALL"),  # installs the next day
    ("", "2017-04-03 10:00:00", "APP_OPEN"),        # skipped: no uid
    ("g", "garbage", "FIRST_INSTALL"),              # skipped: bad time
]


def test_q1_csv_counts_whole_utc_days_both_ends_included(tmp_path):
    path = tmp_path / "piwik_track.csv"
    path.write_text("uid,time,event_name,extra\n" + "".join(f"{u},{t},{e},x\n" for u, t, e in ROWS))
    answer = q1_csv(path, date(2017, 4, 1), days=7)
    assert (answer.installed_users, answer.active_users, answer.skipped_rows) == (4, 3, 2)
    assert answer.rate == 0.75
    assert "3 of 4 users who installed on 2017-04-01" in answer.describe()
    assert "from 2017-04-02 to 2017-04-08" in answer.describe()

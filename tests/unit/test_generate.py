from datetime import date

import numpy as np

from pipelines.retention.generate import RetentionDataSpec, generate_day, write_days

SPEC = RetentionDataSpec(start=date(2017, 3, 1), days=10, installs_per_day=40, existing_users=200, seed=7)


def test_a_day_is_deterministic_and_independent_of_other_days():
    first, _ = generate_day(SPEC, date(2017, 3, 5))
    again, _ = generate_day(SPEC, date(2017, 3, 5))
    assert first.equals(again)
    other_seed, _ = generate_day(RetentionDataSpec(**{**SPEC.__dict__, "seed": 8}), date(2017, 3, 5))
    assert not first.equals(other_seed)


def test_events_fall_inside_their_day_and_each_new_user_installs_once():
    installs: dict[str, date] = {}
    for day in SPEC.dates():
        table, counts = generate_day(SPEC, day)
        times = table["time"].to_pylist()
        assert all(t.startswith(day.isoformat()) for t in times)
        assert times == sorted(times)
        for uid, name in zip(table["uid"].to_pylist(), table["event_name"].to_pylist(), strict=True):
            if name == "FIRST_INSTALL":
                assert uid not in installs, "a user installed twice"
                installs[uid] = day
        assert counts["FIRST_INSTALL"] > 0 and counts["APP_OPEN"] > 0
    assert 0.6 * 40 * 10 < len(installs) < 1.4 * 40 * 10


def test_planted_platform_effect_ios_users_come_back_more():
    spec = RetentionDataSpec(start=date(2017, 3, 1), days=9, installs_per_day=600, existing_users=0, seed=3)
    platform_of, install_day, active = {}, {}, {}
    for day in spec.dates():
        table, _ = generate_day(spec, day)
        for uid, name, plat in zip(table["uid"].to_pylist(), table["event_name"].to_pylist(),
                                   table["platform"].to_pylist(), strict=True):
            platform_of[uid] = plat
            active.setdefault(uid, set()).add(day)
            if name == "FIRST_INSTALL":
                install_day[uid] = day
    day1 = {p: [] for p in ("ios", "android")}
    for uid, d in install_day.items():
        if d <= date(2017, 3, 8) and platform_of[uid] in day1:
            day1[platform_of[uid]].append(date.fromordinal(d.toordinal() + 1) in active[uid])
    assert np.mean(day1["ios"]) > np.mean(day1["android"]) + 0.03


def test_write_days_reports_the_bad_rows_it_planted(tmp_path):
    spec = RetentionDataSpec(**{**SPEC.__dict__, "days": 2, "bad_row_rate": 0.05})
    result = write_days(spec, tmp_path)
    assert len(result["files"]) == 2
    assert sum(result["bad"].values()) > 0
    assert set(result["bad"]) <= {"missing_uid", "bad_time", "unknown_event", "outside_day", "duplicate",
                                  "malformed_csv"}

"""How a run decides which day it processes, refuses unknown conf keys, and how long it waits for input."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from pipelines import orchestration
from pipelines.orchestration import begin, check_conf, input_deadline, poke_input, resolve_day

PARAMS = {"day": "", "max_bad_share": 0.05}


def _dt(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_day_param_wins_then_the_interval_then_run_after():
    assert resolve_day("2024-05-01", _dt(2024, 6, 2, 2), None)[0] == date(2024, 5, 1)
    assert resolve_day("", _dt(2024, 6, 2, 2), None) == (date(2024, 6, 1), "the data interval ending "
                                                          "2024-06-02T02:00:00+00:00")
    weekly = resolve_day(None, _dt(2024, 6, 10, 3), None)  # [06-03 03:00, 06-10 03:00): trains as of 06-09
    assert weekly[0] == date(2024, 6, 9)
    # A manual run without a logical date: the last whole day before run_after (days start at 02:00 here).
    assert resolve_day(None, None, _dt(2024, 6, 3, 10), interval_hour=2)[0] == date(2024, 6, 2)
    assert resolve_day(None, None, _dt(2024, 6, 3, 1), interval_hour=2)[0] == date(2024, 6, 1)


def test_a_bad_day_or_nothing_to_go_on_fails_clearly():
    with pytest.raises(AirflowFailException, match="Param day='June 1' is not a date"):
        resolve_day("June 1", None, None)
    with pytest.raises(AirflowFailException, match="neither a day Param, a data interval nor a run_after"):
        resolve_day(None, None, None)


def test_unknown_conf_keys_fail_with_the_valid_params():
    check_conf({"max_bad_share": 0.1}, PARAMS)
    with pytest.raises(AirflowFailException, match=r"unknown Param\(s\) \['k_neighbourz'\] .* valid Params: "
                                                   r"\['day', 'max_bad_share'\]"):
        check_conf({"k_neighbourz": 5}, PARAMS)


def test_begin_logs_the_day(caplog):
    run = SimpleNamespace(conf={}, run_after=_dt(2024, 6, 3, 10))
    with caplog.at_level("INFO"):
        assert begin(PARAMS, run, None, interval_hour=0) == "2024-06-02"
    assert "This run processes day 2024-06-02" in caplog.text


def test_late_input_deadline_depends_on_the_kind_of_run():
    # A scheduled run, started just after its interval: waits six hours past the interval's end.
    assert input_deadline(_dt(2026, 12, 4, 0), None, _dt(2026, 12, 4, 0, 5)) == _dt(2026, 12, 4, 6)
    started = _dt(2026, 12, 4, 12)
    # A backfill of a day long past, or a manual run: ten minutes after it started.
    assert input_deadline(_dt(2017, 3, 2), None, started) == started + orchestration.GRACE
    assert input_deadline(None, _dt(2026, 12, 4, 12), None) == started + orchestration.GRACE


def test_poke_fails_past_the_deadline_and_waits_before_it():
    past = SimpleNamespace(start_date=datetime.now(UTC) - timedelta(hours=1), run_after=None)
    with pytest.raises(AirflowFailException, match="the drop for 2017-03-02 has not arrived; gave up waiting"):
        poke_input(False, "2017-03-02", "the drop", _dt(2017, 3, 3), past)
    fresh = SimpleNamespace(start_date=datetime.now(UTC), run_after=None)
    assert poke_input(False, "2017-03-02", "the drop", _dt(2017, 3, 3), fresh) is False
    assert poke_input(True, "2017-03-02", "the drop", _dt(2017, 3, 3), past) is True

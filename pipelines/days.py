"""Days as the pipelines' jobs take them: a date or an ISO string in, and a UTC day's interval out."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def as_day(value: str | date) -> date:
    """A date from a date or an ISO string (XCom hands days over as strings)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def day_interval(day: date) -> tuple[datetime, datetime]:
    """[day 00:00, next day 00:00) in UTC: the interval a run registry row records for a day's work."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)

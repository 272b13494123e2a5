"""An independent, pure-Python reading of raw piwik_track drops: the answer the pipeline must reproduce.

Deliberately shares no code with ``pipelines.retention`` beyond the list of known event names: parsing uses
``csv`` and ``datetime``, cohorts are plain dicts and sets.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipelines.retention.schema import EVENT_NAMES


def _parse_time(text: str) -> datetime | None:
    text = (text or "").strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass
class Truth:
    activity: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    installs: dict[str, date] = field(default_factory=dict)
    events: int = 0
    loaded_days: set[date] = field(default_factory=set)

    def cohort(self, install_date: date) -> set[str]:
        return {u for u, d in self.installs.items() if d == install_date}

    def q1(self, install_date: date, days: int = 7) -> tuple[int, int]:
        members = self.cohort(install_date)
        window = {install_date + timedelta(days=k) for k in range(1, days + 1)}
        return len(members), sum(1 for u in members if self.activity[u] & window)

    def cohort_row(self, install_date: date) -> dict:
        members = self.cohort(install_date)
        size = len(members)

        def on(k: int) -> int | None:
            day = install_date + timedelta(days=k)
            if day not in self.loaded_days:
                return None
            return sum(1 for u in members if day in self.activity[u])

        week = {install_date + timedelta(days=k) for k in range(1, 8)}
        retained = sum(1 for u in members if self.activity[u] & week) if week <= self.loaded_days else None
        return {"cohort_size": size, "active_d1_users": on(1), "active_d7_users": on(7),
                "active_d30_users": on(30), "retained_7d_users": retained}


def read_drops(raw_root: Path, days: list[date]) -> Truth:
    """Apply the documented validity rules to every drop of ``days`` and collect activity and installs."""
    truth = Truth()
    for day in days:
        seen: set[tuple] = set()
        folder = raw_root / "raw" / "piwik_track" / f"dt={day:%Y-%m-%d}"
        for path in sorted(folder.glob("*.csv")):
            with path.open(newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    continue
                for values in reader:
                    if len(values) != len(header):
                        continue  # malformed line
                    row = dict(zip(header, values, strict=True))
                    uid = row["uid"].strip()
                    when = _parse_time(row["time"])
                    name = row["event_name"].strip()
                    if not uid or when is None or name not in EVENT_NAMES or when.date() != day:
                        continue
                    key = (uid, when, name)
                    if key in seen:
                        continue
                    seen.add(key)
                    truth.events += 1
                    truth.activity[uid].add(day)
                    if name == "FIRST_INSTALL" and (uid not in truth.installs or day < truth.installs[uid]):
                        truth.installs[uid] = day
        truth.loaded_days.add(day)
    return truth

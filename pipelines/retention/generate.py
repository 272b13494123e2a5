"""Deterministic, realistic ``piwik_track`` drops: one CSV per UTC day, as a tracker export would land.

The simulated app: new users install every day (fewer at weekends), each with a latent stickiness; iOS users
are stickier than Android ones and web users least (planted, so cohorts differ by platform). Daily activity
decays after install (a fast early drop, then a slow tail), active days have 1-3 sessions of a few events
each, at diurnal times. Users who installed before the simulated period appear too, without an install event
(the "returning" users of Q2).

Every day is generated from ``(seed, day)`` alone, so any day can be regenerated (or generated on another
worker) and comes out byte-identical. Optional bad rows, each of a known kind, are injected and their counts
returned, so the quarantine can be checked against the truth.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.retention.schema import raw_rel_dir

log = logging.getLogger(__name__)

PLATFORMS = np.array(["android", "ios", "web"])
PLATFORM_P = np.array([0.58, 0.34, 0.08])
PLATFORM_STICKINESS = np.array([1.0, 1.35, 0.6])
COUNTRIES = np.array(["HK", "TW", "SG", "MY", "US", "GB", "CN", "JP"])
COUNTRY_P = np.array([0.35, 0.15, 0.12, 0.1, 0.1, 0.06, 0.07, 0.05])
APP_VERSIONS = np.array(["3.2.0", "3.2.1", "3.3.0", "3.4.0"])
# Usage events after the session's APP_OPEN, with their shares.
USAGE_EVENTS = np.array(["SCREEN_VIEW", "SEARCH", "PLAY", "SHARE", "PURCHASE", "PUSH_OPEN", "SETTINGS"])
USAGE_P = np.array([0.52, 0.14, 0.22, 0.04, 0.015, 0.045, 0.02])
# Hour-of-day weights: a morning bump and an evening peak.
_HOURS = np.arange(24)
HOUR_P = 0.4 + np.exp(-((_HOURS - 8.5) ** 2) / 6) + 1.8 * np.exp(-((_HOURS - 20.5) ** 2) / 8)
HOUR_P = HOUR_P / HOUR_P.sum()

BAD_KINDS = ("missing_uid", "bad_time", "unknown_event", "outside_day", "duplicate", "malformed_csv")
COLUMNS = ["event_id", "uid", "time", "event_name", "event_category", "idsite", "platform", "app_version",
           "country", "session_id"]


@dataclass(frozen=True)
class RetentionDataSpec:
    """Size and shape of a generated event log."""

    start: date = date(2017, 3, 1)
    days: int = 45
    installs_per_day: int = 120
    existing_users: int = 1500
    seed: int = 42
    bad_row_rate: float = 0.0

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]


def _uid(index: np.ndarray) -> np.ndarray:
    """16-hex-digit user ids, a bijection of the user index (looks like a tracker visitor id)."""
    mixed = (index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0x5DEECE66D)
    return np.char.mod("%016x", mixed)


@dataclass(frozen=True)
class _Population:
    install_offset: np.ndarray  # day offset from spec.start; negative = installed before the period
    stickiness: np.ndarray
    platform: np.ndarray
    country: np.ndarray
    version: np.ndarray
    uid: np.ndarray


@lru_cache(maxsize=4)  # every day of a spec shares its population; build it once
def _population(spec: RetentionDataSpec) -> _Population:
    rng = np.random.default_rng([spec.seed, 0])
    weekday = np.array([(spec.start + timedelta(days=i)).weekday() for i in range(spec.days)])
    per_day = rng.poisson(spec.installs_per_day * np.where(weekday >= 5, 0.75, 1.08))
    new_offsets = np.repeat(np.arange(spec.days), per_day)
    old_offsets = -rng.integers(31, 400, size=spec.existing_users)
    offsets = np.concatenate([old_offsets, new_offsets])
    n = offsets.size
    platform = rng.choice(len(PLATFORMS), size=n, p=PLATFORM_P)
    stickiness = rng.beta(1.2, 3.2, size=n) * PLATFORM_STICKINESS[platform]
    stickiness[: spec.existing_users] = rng.beta(2.0, 3.0, size=spec.existing_users) * 0.6
    return _Population(
        install_offset=offsets,
        stickiness=stickiness,
        platform=platform,
        country=rng.choice(len(COUNTRIES), size=n, p=COUNTRY_P),
        version=rng.integers(0, len(APP_VERSIONS), size=n),
        uid=_uid(np.arange(n) + spec.seed * 10_000_019),
    )


def _activity_probability(days_since: np.ndarray, stickiness: np.ndarray) -> np.ndarray:
    early = np.exp(-np.maximum(days_since - 1, 0) / 1.5)
    tail = np.exp(-days_since / 60.0)
    return np.clip(stickiness * (0.6 * early + 0.22 * tail), 0.0, 0.97)


def generate_day(spec: RetentionDataSpec, day: date) -> tuple[pa.Table, Counter]:
    """All events of one day (clean), sorted by time. Also returns {event_name: count}."""
    pop = _population(spec)
    offset = (day - spec.start).days
    rng = np.random.default_rng([spec.seed, 1, offset + 100_000])
    since = offset - pop.install_offset
    alive = np.flatnonzero(since >= 0)
    installs_today = alive[since[alive] == 0]
    others = alive[since[alive] > 0]
    active = others[rng.random(others.size) < _activity_probability(since[others], pop.stickiness[others])]
    users = np.concatenate([installs_today, active])
    sessions = 1 + rng.binomial(2, 0.3, size=users.size)
    sess_user = np.repeat(users, sessions)
    sess_no = np.concatenate([np.arange(k) for k in sessions]) if users.size else np.zeros(0, int)
    sess_start = rng.choice(24, size=sess_user.size, p=HOUR_P) * 3600 + rng.integers(0, 3600, sess_user.size)
    sess_len = 1 + rng.poisson(4, size=sess_user.size)  # usage events after APP_OPEN
    n_ev = sess_len + 1
    ev_sess = np.repeat(np.arange(sess_user.size), n_ev)
    first_in_sess = np.r_[0, np.cumsum(n_ev)[:-1]]
    pos = np.arange(ev_sess.size) - np.repeat(first_in_sess, n_ev)
    gaps = rng.exponential(45.0, size=ev_sess.size).astype(int) + 1
    gaps[pos == 0] = 0
    cum = np.cumsum(gaps)
    cum_at_start = np.repeat(cum[first_in_sess], n_ev)
    seconds = np.minimum(sess_start[ev_sess] + (cum - cum_at_start), 86_399)
    names = USAGE_EVENTS[rng.choice(len(USAGE_EVENTS), size=ev_sess.size, p=USAGE_P)].astype(object)
    names[pos == 0] = "APP_OPEN"
    ev_user = sess_user[ev_sess]
    # Installing users: their first event of the day is FIRST_INSTALL.
    is_new = np.isin(ev_user, installs_today)
    if is_new.any():
        order = np.lexsort((seconds, ev_user))
        first_of_user = np.ones(order.size, bool)
        first_of_user[1:] = ev_user[order][1:] != ev_user[order][:-1]
        mark = order[first_of_user & is_new[order]]
        names[mark] = "FIRST_INSTALL"
    order = np.lexsort((ev_user, seconds))
    seconds, ev_user, names, ev_sess = seconds[order], ev_user[order], names[order], ev_sess[order]
    # Overlapping sessions can put two identical events in one second; a tracker would record one.
    key = np.rec.fromarrays([ev_user, seconds, names.astype(str)])
    _, first = np.unique(key, return_index=True)
    keep = np.sort(first)
    seconds, ev_user, names, ev_sess = seconds[keep], ev_user[keep], names[keep], ev_sess[keep]
    base = datetime(day.year, day.month, day.day)
    times = np.datetime64(base, "s") + seconds.astype("timedelta64[s]")
    table = pa.table({
        "event_id": np.char.add(f"{day:%Y%m%d}-", np.char.zfill(np.arange(seconds.size).astype(str), 7)),
        "uid": pop.uid[ev_user],
        "time": np.datetime_as_string(times, unit="s"),
        "event_name": names.astype(str),
        "event_category": np.where(names == "FIRST_INSTALL", "lifecycle", "engagement"),
        "idsite": np.ones(seconds.size, dtype=np.int32),
        "platform": PLATFORMS[pop.platform[ev_user]],
        "app_version": APP_VERSIONS[pop.version[ev_user]],
        "country": COUNTRIES[pop.country[ev_user]],
        "session_id": np.char.add(np.char.add(pop.uid[sess_user[ev_sess]], "-"),
                                  np.char.add(f"{day:%Y%m%d}-", sess_no[ev_sess].astype(str))),
    })
    # Tracker exports write "YYYY-MM-DD HH:MM:SS".
    table = table.set_column(2, "time", pa.array(np.char.replace(table["time"].to_numpy().astype(str), "T", " ")))
    return table, Counter(table["event_name"].to_pylist())


def _inject_bad_rows(table: pa.Table, rate: float, rng: np.random.Generator, day: date) -> tuple[str, Counter]:
    """CSV text of ``table`` with bad rows mixed in; returns it and the count of each injected kind."""
    rows = table.to_pylist()
    n_bad = round(rate * len(rows))
    kinds = Counter()
    picks = rng.choice(len(rows), size=min(n_bad, len(rows)), replace=False) if rows else []
    duplicates, malformed = [], []
    for i in picks:
        kind = BAD_KINDS[int(rng.integers(len(BAD_KINDS)))]
        row = rows[i]
        if kind == "missing_uid":
            row["uid"] = ""
        elif kind == "bad_time":
            row["time"] = str(rng.choice(["2017-13-45 99:00:00", "yesterday", "", "01/02/2017 25:61"]))
        elif kind == "unknown_event":
            row["event_name"] = str(rng.choice(["first_instal", "DEBUG_PING", "AppOpen"]))
        elif kind == "outside_day":
            row["time"] = f"{day - timedelta(days=3):%Y-%m-%d} 12:00:00"
        elif kind == "duplicate":
            duplicates.append(dict(row))
        else:
            malformed.append(",".join(str(row[c]) for c in COLUMNS) + ",unexpected,extra")
            row["__drop__"] = True
        kinds[kind] += 1
    rows = [r for r in rows if not r.pop("__drop__", False)] + duplicates
    buf = io.BytesIO()
    if rows:
        pacsv.write_csv(pa.Table.from_pylist(rows, schema=table.schema), buf)
    else:
        buf.write((",".join(f'"{c}"' for c in COLUMNS) + "\n").encode())
    text = buf.getvalue().decode()
    if malformed:
        text += "\n".join(malformed) + "\n"
    return text, kinds


def write_days(spec: RetentionDataSpec, root_dir: Path, days: list[date] | None = None) -> dict:
    """Write each day's drop under ``root_dir``; returns {'events': n, 'bad': Counter, 'files': [...]}."""
    from tqdm import tqdm

    total, bad, files = 0, Counter(), []
    for day in tqdm(days or spec.dates(), desc="piwik_track days", unit="day", disable=None):
        table, _ = generate_day(spec, day)
        folder = root_dir / raw_rel_dir(day)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"piwik_track_{day:%Y-%m-%d}.csv"
        tmp = path.with_suffix(".csv.tmp")
        if spec.bad_row_rate > 0:
            rng = np.random.default_rng([spec.seed, 2, (day - spec.start).days + 100_000])
            text, kinds = _inject_bad_rows(table, spec.bad_row_rate, rng, day)
            tmp.write_text(text)
            bad.update(kinds)
        else:
            pacsv.write_csv(table, tmp)
        tmp.replace(path)
        total += table.num_rows
        files.append(str(path))
    return {"events": total, "bad": dict(bad), "files": files}

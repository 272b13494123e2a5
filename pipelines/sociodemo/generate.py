"""Synthetic Rutube viewing logs in the contest's formats, with planted, noisy signal and its exact Bayes oracle.

The generative model (every user independent; ``g`` = the user's (sex, age class), one of 8 groups):

* ``sex`` ~ P(male) = 0.55; ``age_class`` ~ (0.18, 0.21, 0.23, 0.38), so the majority class is 36+ at ~38%;
  the age is uniform inside its class (36+: 36 + an exponential tail).
* activity: ``λ ~ Gamma(k, mean_g / k)`` events per day (0 for a "dormant" share of users, who never show up),
  ``n_events(day) ~ Poisson(λ)``; older users and men watch a little more.
* each event's category ~ ``θ_cat``, the user's own taste, drawn once ``θ_cat ~ Dirichlet(α_cat · π_cat[g])``:
  men lean to sport, cars, games, women to beauty, series, kids' content (ages 26-35), the young to anime and
  games, the 36+ to news, TV shows, fishing, gardening. The Dirichlet makes tastes vary a lot within a group,
  so no model can be perfect.
* each event's local (Moscow, UTC+3) hour ~ ``θ_hour ~ Dirichlet(α_hour · π_hour[g])``: the young watch late at
  night, the 36+ in the morning and daytime.
* device profile (device type, client type, OS, client name) and region: a primary one per user drawn from
  P(·|g), used for 85% (device) / 95% (region) of events; the rest come from the population mix (a second
  device, travel). Phones and the Rutube app skew young, iOS female, Windows + Yandex Browser and TVs older.
* the video is drawn by popularity inside the category and the watch time from the video's duration, both
  independent of the group, so they carry no signal beyond the category (and the oracle stays exact).

Because events are independent given the user's latent variables, and those have conjugate priors, the
posterior P(g | the user's events) is computable exactly (Dirichlet-multinomial, gamma-Poisson, and a sum over
the primary device and region): :func:`oracle_probabilities` returns it; it is the ceiling models are judged
against. It depends on the events only through counts, so it is computed from the same generator code.

Every (day, chunk of users) is generated from ``(seed, day, chunk)`` alone and the population once per spec,
so a day can be regenerated on its own and the output is deterministic. Optional bad rows (extra copies of
clean events, each broken in one known way) and bad target rows are planted and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.sociodemo import schema

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the world
#: (category, relative supply and demand, male lean (+) / female lean (-), effect per age class 0..3)
CATEGORIES: tuple[tuple[str, float, float, tuple[float, float, float, float]], ...] = (
    ("Юмор", 1.6, 0.2, (0.5, 0.2, 0.0, -0.4)),
    ("Сериалы", 1.4, -0.7, (-0.1, 0.1, 0.1, 0.2)),
    ("Фильмы", 1.3, 0.0, (0.0, 0.0, 0.0, 0.1)),
    ("Музыка", 1.2, -0.1, (0.5, 0.2, -0.1, -0.3)),
    ("Спорт", 1.0, 1.0, (0.0, 0.1, 0.1, 0.0)),
    ("Авто-мото", 0.8, 1.2, (-0.2, 0.1, 0.2, 0.2)),
    ("Видеоигры", 0.8, 1.0, (1.0, 0.3, -0.3, -1.0)),
    ("Аниме", 0.4, 0.2, (1.2, 0.2, -0.5, -1.2)),
    ("Детям", 0.9, -0.6, (-0.8, 0.5, 0.7, -0.1)),
    ("Телепередачи", 1.1, -0.2, (-0.7, -0.3, 0.1, 0.7)),
    ("Новости и СМИ", 0.9, 0.3, (-0.8, -0.3, 0.1, 0.8)),
    ("Политика", 0.5, 0.6, (-0.9, -0.3, 0.1, 0.9)),
    ("Красота", 0.5, -1.6, (0.4, 0.2, 0.0, -0.4)),
    ("Лайфстайл", 0.6, -0.7, (0.3, 0.2, 0.0, -0.3)),
    ("Еда", 0.6, -0.5, (-0.1, 0.1, 0.1, 0.2)),
    ("Путешествия", 0.4, 0.0, (0.1, 0.1, 0.0, 0.0)),
    ("Технологии и интернет", 0.5, 0.8, (0.3, 0.3, 0.1, -0.3)),
    ("Наука", 0.3, 0.4, (0.2, 0.1, 0.0, -0.1)),
    ("Обучение", 0.4, 0.0, (0.5, 0.2, 0.0, -0.3)),
    ("Бизнес и предпринимательство", 0.3, 0.5, (-0.2, 0.3, 0.3, 0.0)),
    ("Здоровье", 0.4, -0.5, (-0.5, -0.2, 0.1, 0.6)),
    ("Рыбалка и охота", 0.3, 1.3, (-0.6, -0.2, 0.2, 0.7)),
    ("Дом и сад", 0.4, -0.4, (-0.7, -0.2, 0.2, 0.8)),
    ("Психология", 0.3, -0.7, (0.1, 0.2, 0.1, -0.1)),
    ("Эзотерика", 0.2, -0.9, (-0.3, -0.1, 0.1, 0.3)),
    ("Разное", 0.8, 0.0, (0.0, 0.0, 0.0, 0.0)),
)
#: Median video length per category, seconds (lognormal around it); the rest get 10 minutes.
_MEDIAN_SECONDS = {"Фильмы": 5400, "Сериалы": 2700, "Телепередачи": 2400, "Музыка": 240, "Юмор": 300,
                   "Детям": 600, "Аниме": 1400, "Видеоигры": 1500, "Новости и СМИ": 420, "Политика": 900}

#: (device type, client type, OS, client name, population share, male lean, effect per age class)
PROFILES: tuple[tuple[str, str, str, str, float, float, tuple[float, float, float, float]], ...] = (
    ("smartphone", "mobile app", "Android", "Rutube", 0.20, 0.0, (0.3, 0.2, 0.0, -0.2)),
    ("smartphone", "mobile app", "iOS", "Rutube", 0.08, -0.5, (0.6, 0.3, 0.0, -0.5)),
    ("smartphone", "browser", "Android", "Chrome Mobile", 0.10, 0.1, (0.2, 0.1, 0.0, -0.1)),
    ("smartphone", "browser", "Android", "Yandex Browser", 0.09, 0.0, (-0.2, 0.0, 0.1, 0.2)),
    ("smartphone", "browser", "Android", "Samsung Internet", 0.03, 0.0, (-0.1, 0.0, 0.1, 0.1)),
    ("smartphone", "browser", "iOS", "Mobile Safari", 0.06, -0.6, (0.5, 0.3, 0.0, -0.4)),
    ("desktop", "browser", "Windows", "Chrome", 0.12, 0.4, (0.1, 0.1, 0.0, -0.1)),
    ("desktop", "browser", "Windows", "Yandex Browser", 0.12, 0.2, (-0.4, -0.1, 0.1, 0.4)),
    ("desktop", "browser", "Windows", "Edge", 0.03, 0.2, (-0.4, -0.2, 0.0, 0.4)),
    ("desktop", "browser", "Windows", "Opera", 0.02, 0.5, (-0.2, 0.0, 0.1, 0.2)),
    ("desktop", "browser", "Windows", "Firefox", 0.02, 0.6, (0.0, 0.1, 0.1, 0.0)),
    ("desktop", "browser", "Mac OS X", "Safari", 0.02, -0.2, (0.3, 0.3, 0.1, -0.3)),
    ("desktop", "browser", "Linux", "Firefox", 0.01, 1.0, (0.4, 0.2, 0.0, -0.4)),
    ("tablet", "mobile app", "Android", "Rutube", 0.03, -0.3, (-0.4, 0.2, 0.3, 0.2)),
    ("tablet", "browser", "iPadOS", "Mobile Safari", 0.01, -0.3, (-0.2, 0.1, 0.2, 0.2)),
    ("tv", "mobile app", "Android TV", "Rutube TV", 0.04, 0.3, (-0.6, -0.1, 0.2, 0.6)),
    ("tv", "mobile app", "Tizen", "Rutube TV", 0.02, 0.2, (-0.6, -0.1, 0.2, 0.6)),
    ("tv", "mobile app", "webOS", "Rutube TV", 0.01, 0.2, (-0.6, -0.1, 0.2, 0.6)),
)
#: (region, population share, "youth" lean: big cities and the Caucasus are younger)
REGIONS: tuple[tuple[str, float, float], ...] = (
    ("Moscow", 0.17, 0.3), ("Saint Petersburg", 0.08, 0.25), ("Moscow Oblast", 0.09, 0.0),
    ("Krasnodar Krai", 0.05, -0.1), ("Sverdlovsk Oblast", 0.04, 0.0), ("Rostov Oblast", 0.035, 0.0),
    ("Tatarstan", 0.035, 0.1), ("Bashkortostan", 0.03, -0.1), ("Chelyabinsk Oblast", 0.03, -0.1),
    ("Novosibirsk Oblast", 0.03, 0.1), ("Nizhny Novgorod Oblast", 0.025, -0.1), ("Samara Oblast", 0.025, -0.1),
    ("Krasnoyarsk Krai", 0.02, 0.0), ("Perm Krai", 0.02, -0.1), ("Voronezh Oblast", 0.02, -0.1),
    ("Leningrad Oblast", 0.015, -0.1), ("Dagestan", 0.02, 0.4), ("Primorsky Krai", 0.015, 0.0),
    ("Khabarovsk Krai", 0.01, 0.0), ("Omsk Oblast", 0.015, -0.1), ("Volgograd Oblast", 0.02, -0.2),
    ("Irkutsk Oblast", 0.015, 0.0), ("Kemerovo Oblast", 0.02, -0.2), ("Saratov Oblast", 0.018, -0.2),
)
_YOUTH = np.array([1.0, 0.5, 0.0, -0.6])

P_MALE = 0.55
AGE_CLASS_P = np.array([0.18, 0.21, 0.23, 0.38])
ACTIVITY_BY_AGE = np.array([0.85, 0.95, 1.0, 1.15])
ACTIVITY_BY_SEX = np.array([0.95, 1.05])  # female, male
ACTIVITY_SHAPE = 1.5
PRIMARY_PROFILE_P = 0.85
PRIMARY_REGION_P = 0.95
MOSCOW_UTC_OFFSET = 3
N_GROUPS = 8  # group = sex * 4 + age_class, sex 1 = male


def _hour_log_weights() -> np.ndarray:
    """(8, 24) log-weights of the local hour per group: a diurnal base plus age and sex shifts."""
    h = np.arange(24)
    base = np.log(0.25 + 0.8 * np.exp(-((h - 13) ** 2) / 18) + 1.6 * np.exp(-((h - 21) ** 2) / 6))
    night = np.isin(h, [23, 0, 1, 2, 3]).astype(float)
    morning = ((h >= 6) & (h <= 9)).astype(float)
    daytime = ((h >= 10) & (h <= 16)).astype(float)
    late_evening = np.isin(h, [21, 22, 23, 0]).astype(float)
    age = [1.0 * night - 0.4 * morning, 0.4 * night - 0.1 * morning, 0.1 * daytime,
           -0.8 * night + 0.5 * morning + 0.4 * daytime]
    out = np.empty((N_GROUPS, 24))
    for sex in (0, 1):
        for cls in range(4):
            sex_shift = 0.25 * late_evening if sex else 0.3 * daytime
            out[sex * 4 + cls] = base + age[cls] + sex_shift
    return out


def _group_probs(base: np.ndarray, male_lean: np.ndarray, age_effect: np.ndarray) -> np.ndarray:
    """(8, K) probabilities ∝ base · exp(±lean/2 + age effect)."""
    out = np.empty((N_GROUPS, base.size))
    for sex in (0, 1):
        for cls in range(4):
            logits = np.log(base) + (0.5 if sex else -0.5) * male_lean + age_effect[:, cls]
            p = np.exp(logits - logits.max())
            out[sex * 4 + cls] = p / p.sum()
    return out


@dataclass(frozen=True)
class _World:
    """The generative model's parameters (fixed, not seeded): what the oracle knows."""

    cat_p: np.ndarray  # (8, C)
    hour_p: np.ndarray  # (8, 24)
    profile_p: np.ndarray  # (8, P) primary profile given group
    profile_q: np.ndarray  # (P,) population mix (secondary devices)
    region_p: np.ndarray  # (8, R)
    region_q: np.ndarray  # (R,)
    group_p: np.ndarray  # (8,) prior
    activity: np.ndarray  # (8,) relative mean events per day


@lru_cache(maxsize=1)
def _world() -> _World:
    cat_base = np.array([c[1] for c in CATEGORIES])
    profile_q = np.array([p[4] for p in PROFILES])
    profile_q = profile_q / profile_q.sum()
    region_q = np.array([r[1] for r in REGIONS])
    region_q = region_q / region_q.sum()
    hour = np.exp(_hour_log_weights())
    group_p = np.array([(P_MALE if sex else 1 - P_MALE) * AGE_CLASS_P[cls] for sex in (0, 1) for cls in range(4)])
    activity = np.array([ACTIVITY_BY_SEX[sex] * ACTIVITY_BY_AGE[cls] for sex in (0, 1) for cls in range(4)])
    return _World(
        cat_p=_group_probs(cat_base, np.array([c[2] for c in CATEGORIES]), np.array([c[3] for c in CATEGORIES])),
        hour_p=hour / hour.sum(axis=1, keepdims=True),
        profile_p=_group_probs(profile_q, np.array([p[5] for p in PROFILES]), np.array([p[6] for p in PROFILES])),
        profile_q=profile_q,
        region_p=_group_probs(region_q, np.zeros(len(REGIONS)), np.outer([r[2] for r in REGIONS], _YOUTH)),
        region_q=region_q,
        group_p=group_p,
        activity=activity / (group_p @ activity),
    )


# --------------------------------------------------------------------------- spec, population, catalogue
@dataclass(frozen=True)
class SociodemoSpec:
    """Size and shape of a generated dataset. ``bad_row_rate`` is the share of extra bad rows per day (split
    over :data:`~pipelines.sociodemo.schema.PLANTED_EVENT_REASONS`), ``bad_target_rate`` likewise for targets.
    ``chunk_users`` is part of the output's identity (it fixes the random streams and the files per day)."""

    seed: int = 42
    n_users: int = 2_000
    n_videos: int = 3_000
    n_authors: int = 300
    start: date = date(2024, 6, 1)
    days: int = 7
    events_per_user_per_day: float = 1.6
    labelled_share: float = 0.8
    dormant_share: float = 0.03
    category_concentration: float = 12.0
    hour_concentration: float = 40.0
    bad_row_rate: float = 0.0
    bad_target_rate: float = 0.0
    chunk_users: int = 250_000

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)


_UID_MULT = 2654435761  # odd, so idx -> idx * M mod 2^32 is a bijection
_UID_INV = pow(_UID_MULT, -1, 2**32)
_UID_BASE = 100_000_000


def user_ids(index: np.ndarray) -> np.ndarray:
    """``viewer_uid`` of user indices: int64, unique, not sequential (like the contest's ids)."""
    return _UID_BASE + (index.astype(np.uint64) * np.uint64(_UID_MULT) % np.uint64(2**32)).astype(np.int64)


def user_index(uids: np.ndarray, spec: SociodemoSpec) -> np.ndarray:
    """Inverse of :func:`user_ids`; raises ``KeyError`` for an id the spec did not generate."""
    raw = np.asarray(uids, dtype=np.int64) - _UID_BASE
    idx = (raw.astype(np.uint64) * np.uint64(_UID_INV) % np.uint64(2**32)).astype(np.int64)
    bad = (raw < 0) | (raw >= 2**32) | (idx >= spec.n_users)
    if bad.any():
        raise KeyError(f"{int(bad.sum())} uid(s) not generated by this spec, e.g. {np.asarray(uids)[bad][:3]}")
    return idx


@dataclass(frozen=True)
class _Population:
    group: np.ndarray  # int8 (n,)
    age: np.ndarray  # int16 (n,)
    rate: np.ndarray  # float64 (n,) events per day
    cat_cdf: np.ndarray  # float32 (n, C)
    hour_cdf: np.ndarray  # float32 (n, 24)
    profile: np.ndarray  # int16 (n,) primary
    region: np.ndarray  # int16 (n,) primary
    labelled: np.ndarray  # bool (n,)


def _chunks(spec: SociodemoSpec) -> list[tuple[int, int]]:
    return [(lo, min(lo + spec.chunk_users, spec.n_users)) for lo in range(0, spec.n_users, spec.chunk_users)]


def _dirichlet_cdf(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Row-wise Dirichlet(alpha) samples as float32 cumulative distributions."""
    g = rng.gamma(alpha)
    g /= g.sum(axis=1, keepdims=True)
    return np.cumsum(g, axis=1).astype(np.float32)


@lru_cache(maxsize=2)  # every day of a spec shares its population; build it once
def _population(spec: SociodemoSpec) -> _Population:
    world = _world()
    parts: list[dict[str, np.ndarray]] = []
    for chunk, (lo, hi) in enumerate(_chunks(spec)):
        rng = np.random.default_rng([spec.seed, 0, chunk])
        n = hi - lo
        sex = (rng.random(n) < P_MALE).astype(np.int8)
        cls = rng.choice(4, size=n, p=AGE_CLASS_P).astype(np.int8)
        group = sex * 4 + cls
        low = np.array([schema.AGE_CLASSES[c][0] for c in range(4)])
        width = np.array([7, 5, 5, 1])  # ages in each class; 36+ gets an exponential tail instead
        tail = np.minimum(rng.exponential(11.0, size=n), 44).astype(np.int64)
        age = low[cls] + np.where(cls < 3, (rng.random(n) * width[cls]).astype(np.int64), tail)
        mean = spec.events_per_user_per_day * world.activity[group]
        rate = rng.gamma(ACTIVITY_SHAPE, mean / ACTIVITY_SHAPE)
        rate[rng.random(n) < spec.dormant_share] = 0.0
        parts.append({
            "group": group,
            "age": age.astype(np.int16),
            "rate": rate,
            "cat_cdf": _dirichlet_cdf(rng, spec.category_concentration * world.cat_p[group]),
            "hour_cdf": _dirichlet_cdf(rng, spec.hour_concentration * world.hour_p[group]),
            "profile": _draw_rows(rng, world.profile_p[group]).astype(np.int16),
            "region": _draw_rows(rng, world.region_p[group]).astype(np.int16),
            "labelled": rng.random(n) < spec.labelled_share,
        })
    return _Population(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _draw_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to 1)."""
    return _draw_cdf(rng, np.cumsum(probs, axis=1))


def _draw_cdf(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    u = rng.random(cdf.shape[0])
    return np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)


@dataclass(frozen=True)
class _Catalogue:
    video_ids: np.ndarray  # str (V,)
    category: np.ndarray  # int (V,)
    author: np.ndarray  # int64 (V,) author_id
    duration_ms: np.ndarray  # int64 (V,)
    by_category: tuple[np.ndarray, ...]  # video indices of each category
    cdf_by_category: tuple[np.ndarray, ...]  # popularity cdf within the category


@lru_cache(maxsize=2)
def _catalogue(spec: SociodemoSpec) -> _Catalogue:
    rng = np.random.default_rng([spec.seed, 3])
    n_cat = len(CATEGORIES)
    if spec.n_videos < n_cat:
        raise ValueError(f"n_videos must be at least the number of categories ({n_cat})")
    supply = np.array([c[1] for c in CATEGORIES])
    supply = supply / supply.sum()
    author_cat = rng.choice(n_cat, size=spec.n_authors, p=supply)
    productivity = 1.0 / (np.arange(spec.n_authors) + 5.0) ** 0.8
    author = rng.choice(spec.n_authors, size=spec.n_videos, p=productivity / productivity.sum())
    category = np.where(rng.random(spec.n_videos) < 0.85, author_cat[author],
                        rng.choice(n_cat, size=spec.n_videos, p=supply))
    category[:n_cat] = np.arange(n_cat)  # every category has a video
    median = np.array([_MEDIAN_SECONDS.get(c[0], 600) for c in CATEGORIES])[category]
    seconds = np.clip(median * np.exp(rng.normal(0.0, 0.7, size=spec.n_videos)), 5, 4 * 3600)
    by_category, cdfs = [], []
    for c in range(n_cat):
        members = np.flatnonzero(category == c)
        weight = 1.0 / (rng.permutation(members.size) + 3.0) ** 0.9
        by_category.append(members)
        cdfs.append(np.cumsum(weight) / weight.sum())
    return _Catalogue(
        video_ids=np.char.add("video_", (100_000 + np.arange(spec.n_videos)).astype(str)),
        category=category,
        author=(author + 1).astype(np.int64),
        duration_ms=(seconds * 1000).astype(np.int64),
        by_category=tuple(by_category),
        cdf_by_category=tuple(cdfs),
    )


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class _Events:
    """One (day, chunk) of clean events, as indices."""

    user: np.ndarray  # global user index
    category: np.ndarray
    hour_local: np.ndarray
    profile: np.ndarray
    region: np.ndarray
    video: np.ndarray
    ts_ms: np.ndarray  # epoch milliseconds, UTC
    watch_s: np.ndarray


def _chunk_events(spec: SociodemoSpec, day_index: int, chunk: int) -> _Events:
    pop, cat, world = _population(spec), _catalogue(spec), _world()
    lo, hi = _chunks(spec)[chunk]
    rng = np.random.default_rng([spec.seed, 1, day_index, chunk])
    counts = rng.poisson(pop.rate[lo:hi])
    user = np.repeat(np.arange(lo, hi), counts)
    n = user.size
    category = _draw_cdf(rng, pop.cat_cdf[user])
    hour_local = _draw_cdf(rng, pop.hour_cdf[user])
    profile = np.where(rng.random(n) < PRIMARY_PROFILE_P, pop.profile[user],
                       rng.choice(len(PROFILES), size=n, p=world.profile_q))
    region = np.where(rng.random(n) < PRIMARY_REGION_P, pop.region[user],
                      rng.choice(len(REGIONS), size=n, p=world.region_q))
    video = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    for c, members in enumerate(cat.by_category):
        mask = category == c
        video[mask] = members[np.minimum(np.searchsorted(cat.cdf_by_category[c], u[mask]), members.size - 1)]
    day = spec.start + timedelta(days=day_index)
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
    utc_hour = (hour_local - MOSCOW_UTC_OFFSET) % 24
    ts_ms = day_ms + utc_hour * 3_600_000 + rng.integers(0, 3_600_000, size=n)
    duration_s = cat.duration_ms[video] / 1000.0
    watch_s = np.rint(rng.beta(0.9, 1.4, size=n) * 1.2 * duration_s).astype(np.int64)
    # The same user, video and millisecond twice would be a duplicate to validation; keep the first.
    order = np.lexsort((ts_ms, video, user))
    same = np.zeros(n, dtype=bool)
    same[order[1:]] = ((user[order][1:] == user[order][:-1]) & (video[order][1:] == video[order][:-1])
                       & (ts_ms[order][1:] == ts_ms[order][:-1]))
    keep = ~same
    return _Events(user[keep], category[keep], hour_local[keep], profile[keep], region[keep], video[keep],
                   ts_ms[keep], watch_s[keep])


def iter_day_events(spec: SociodemoSpec, day_index: int) -> Iterator[_Events]:
    """The day's clean events, one chunk of users at a time."""
    for chunk in range(len(_chunks(spec))):
        yield _chunk_events(spec, day_index, chunk)


def _events_table(spec: SociodemoSpec, ev: _Events):
    """Clean events in the contest's raw format (an Arrow table)."""
    import pyarrow as pa

    cat = _catalogue(spec)

    def labels(codes: np.ndarray, values: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values)).cast(pa.string())

    video_dict = pa.array(cat.video_ids.tolist())
    return pa.table({
        "event_timestamp": pa.array(ev.ts_ms, pa.timestamp("ms", tz="UTC")),
        "region": labels(ev.region, [r[0] for r in REGIONS]),
        "ua_device_type": labels(ev.profile, [p[0] for p in PROFILES]),
        "ua_client_type": labels(ev.profile, [p[1] for p in PROFILES]),
        "ua_os": labels(ev.profile, [p[2] for p in PROFILES]),
        "ua_client_name": labels(ev.profile, [p[3] for p in PROFILES]),
        "total_watchtime": pa.array(ev.watch_s, pa.int64()),
        "rutube_video_id": pa.DictionaryArray.from_arrays(pa.array(ev.video, pa.int32()), video_dict)
        .cast(pa.string()),
        "viewer_uid": pa.array(user_ids(ev.user), pa.int64()),
    }, schema=raw_event_schema())


def raw_event_schema():
    """The Arrow schema of a raw events file."""
    import pyarrow as pa

    return pa.schema([(name, _arrow_type(t)) for name, t in schema.RAW_EVENT_COLUMNS])


def _arrow_type(name: str):
    import pyarrow as pa

    if name.startswith("timestamp"):
        return pa.timestamp("ms", tz="UTC")
    return {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32()}[name]


def _bad_rows(spec: SociodemoSpec, clean, rng: np.random.Generator) -> tuple[object, Counter]:
    """Extra rows, each a copy of a clean event broken in one planted way; their table and counts."""
    import pyarrow as pa

    n_bad = round(spec.bad_row_rate * clean.num_rows)
    if n_bad == 0 or clean.num_rows == 0:
        return clean.schema.empty_table(), Counter()
    kinds = np.array(schema.PLANTED_EVENT_REASONS)[rng.integers(len(schema.PLANTED_EVENT_REASONS), size=n_bad)]
    rows = clean.take(pa.array(rng.integers(clean.num_rows, size=n_bad)))
    cols = {name: rows[name].to_pylist() for name in rows.column_names}
    cat = _catalogue(spec)
    duration_s = dict(zip(cat.video_ids.tolist(), (cat.duration_ms / 1000).tolist(), strict=True))
    for i, kind in enumerate(kinds):
        if kind == "missing_uid":
            cols["viewer_uid"][i] = None
        elif kind == "outside_day":
            shift = int(rng.integers(1, 4)) * (1 if rng.random() < 0.5 else -1)
            cols["event_timestamp"][i] = cols["event_timestamp"][i] + timedelta(days=shift)
        elif kind == "unknown_video":
            cols["rutube_video_id"][i] = f"video_{100_000 + spec.n_videos + int(rng.integers(1, 10**6))}"
        elif kind == "negative_watchtime":
            cols["total_watchtime"][i] = -int(rng.integers(1, 10_000))
        elif kind == "absurd_watchtime":
            if rng.random() < 0.5:  # over a day
                cols["total_watchtime"][i] = schema.ABSURD_WATCHTIME_SECONDS + int(rng.integers(1, 10**6))
            else:  # far beyond the video's length
                video_s = duration_s[cols["rutube_video_id"][i]]
                cols["total_watchtime"][i] = int(video_s * (schema.ABSURD_DURATION_MULTIPLE + 5)) + 1
        # "duplicate": the copy as is
    return pa.table(cols, schema=clean.schema), Counter(kinds.tolist())


def write_dataset(spec: SociodemoSpec, root_dir: Path) -> dict:
    """Write raw events (one file per chunk of users per day), the video catalogue and the targets.

    Returns ``{"events": clean events, "rows": rows written, "bad_rows": {reason: n}, "bad_targets":
    {reason: n}, "users": n, "labelled_users": valid target rows, "labelled_users_without_events": n,
    "files": n}``: the truth validation is checked against.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root_dir = Path(root_dir)
    pop = _population(spec)
    seen = np.zeros(spec.n_users, dtype=bool)
    events = rows = files = 0
    bad: Counter = Counter()
    for day_index, day in enumerate(spec.dates()):
        folder = root_dir / schema.raw_events_rel_dir(day)
        folder.mkdir(parents=True, exist_ok=True)
        for chunk, ev in enumerate(iter_day_events(spec, day_index)):
            seen[ev.user] = True
            table = _events_table(spec, ev)
            rng = np.random.default_rng([spec.seed, 2, day_index, chunk])
            extra, kinds = _bad_rows(spec, table, rng)
            if extra.num_rows:
                table = pa.concat_tables([table, extra])
            table = table.take(pc.sort_indices(table, [("event_timestamp", "ascending")]))  # as exported
            path = folder / f"part-{chunk:05d}.parquet"
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(table, tmp, compression="zstd")
            tmp.replace(path)
            events += ev.user.size
            rows += table.num_rows
            files += 1
            bad.update(kinds)
    _write_parquet(pa.table(_video_columns(spec), schema=pa.schema(
        [(n, _arrow_type(t)) for n, t in schema.VIDEO_COLUMNS])), root_dir / schema.VIDEO_INFO_REL)
    targets, bad_targets, valid = _targets(spec, pop)
    _write_parquet(targets, root_dir / schema.TARGETS_REL)
    return {"events": events, "rows": rows, "files": files, "bad_rows": dict(bad), "bad_targets": dict(bad_targets),
            "users": spec.n_users, "labelled_users": int(valid.sum()),
            "labelled_users_without_events": int((valid & ~seen).sum())}


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


_TITLE_WORDS = ("Новый", "Лучший", "Смешной", "Полный", "Честный", "Главный", "Большой", "Простой", "Секретный")
_TITLE_NOUNS = ("обзор", "выпуск", "разбор", "стрим", "влог", "подборка", "эфир", "рецепт", "урок", "сезон")


def _video_columns(spec: SociodemoSpec) -> dict[str, list]:
    cat = _catalogue(spec)
    rng = np.random.default_rng([spec.seed, 4])
    words = np.array(_TITLE_WORDS)[rng.integers(len(_TITLE_WORDS), size=spec.n_videos)]
    nouns = np.array(_TITLE_NOUNS)[rng.integers(len(_TITLE_NOUNS), size=spec.n_videos)]
    names = np.array([c[0] for c in CATEGORIES])[cat.category]
    titles = [f"{w} {n}: {c.lower()} #{i % 997 + 1}" for i, (w, n, c) in enumerate(zip(words, nouns, names,
                                                                                       strict=True))]
    return {"rutube_video_id": cat.video_ids.tolist(), "title": titles, "category": names.tolist(),
            "duration": cat.duration_ms.tolist(), "author_id": cat.author.tolist()}


def _targets(spec: SociodemoSpec, pop: _Population):
    """Target rows of the labelled users, with planted bad rows; the table, their counts, the valid-label mask."""
    import pyarrow as pa

    idx = np.flatnonzero(pop.labelled)
    uid: list = user_ids(idx).tolist()
    age: list = pop.age[idx].astype(int).tolist()
    sex: list = np.where(pop.group[idx] >= 4, "male", "female").tolist()
    cls: list = (pop.group[idx] % 4).astype(int).tolist()
    valid = pop.labelled.copy()
    kinds: Counter = Counter()
    n_bad = round(spec.bad_target_rate * idx.size)
    rng = np.random.default_rng([spec.seed, 5])
    extra: list[tuple] = []
    for pos in rng.choice(idx.size, size=min(n_bad, idx.size), replace=False):
        kind = schema.PLANTED_TARGET_REASONS[int(rng.integers(len(schema.PLANTED_TARGET_REASONS)))]
        kinds[kind] += 1
        if kind == "duplicate":
            extra.append((uid[pos], age[pos], sex[pos], cls[pos]))
            continue
        valid[idx[pos]] = False
        if kind == "missing_uid":
            uid[pos] = None
        elif kind == "impossible_age":
            age[pos] = [None, -1, 0, 3, 101, 150][int(rng.integers(6))]
        elif kind == "bad_sex":
            sex[pos] = [None, "M", "unknown", "Female", ""][int(rng.integers(5))]
        elif kind == "bad_age_class":
            cls[pos] = [None, -1, 4, 7][int(rng.integers(4))]
        elif rng.random() < 0.8:  # age_class_mismatch: a possible age with another class
            cls[pos] = (cls[pos] + 1 + int(rng.integers(3))) % 4
        else:  # ... or a possible age under 19, which has no class
            age[pos] = int(rng.integers(schema.AGE_RANGE[0], 19))
    for row in extra:
        uid.append(row[0])
        age.append(row[1])
        sex.append(row[2])
        cls.append(row[3])
    table = pa.table({"viewer_uid": uid, "age": age, "sex": sex, "age_class": cls},
                     schema=pa.schema([(n, _arrow_type(t)) for n, t in schema.TARGET_COLUMNS]))
    return table, kinds, valid


# --------------------------------------------------------------------------- the oracle
def truth(spec: SociodemoSpec, uids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generated (sex is male, age class, age) of each uid."""
    idx = user_index(uids, spec)
    pop = _population(spec)
    return pop.group[idx] >= 4, (pop.group[idx] % 4).astype(np.int64), pop.age[idx].astype(np.int64)


def prior() -> tuple[float, np.ndarray]:
    """P(male) and P(age_class) of the population: what a model without data should say."""
    return P_MALE, AGE_CLASS_P.copy()


def oracle_probabilities(spec: SociodemoSpec, uids: np.ndarray, through: date | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Exact Bayes posterior P(male | events) of shape (n,) and P(age_class | events) of shape (n, 4).

    Conditioned on each user's clean events of ``spec.start .. through`` (default: every generated day),
    under the generative model in the module docstring. Users with no event get the posterior of "no event"
    (close to the prior: groups differ in how often they are inactive only through their activity rates).
    """
    idx = user_index(uids, spec)
    n_days = spec.days if through is None else (through - spec.start).days + 1
    if not 1 <= n_days <= spec.days:
        raise ValueError(f"through={through} is outside the generated period {spec.start}..{spec.end}")
    wanted = np.zeros(spec.n_users, dtype=bool)
    wanted[idx] = True
    rows = np.full(spec.n_users, -1)
    rows[wanted] = np.arange(int(wanted.sum()))
    counts = _sufficient_counts(spec, wanted, rows, n_days)
    post = np.concatenate([_posterior(spec, {k: v[lo:lo + 100_000] for k, v in counts.items()}, n_days)
                           for lo in range(0, int(wanted.sum()), 100_000)])[rows[idx]]
    return post[:, 4:].sum(axis=1), post[:, :4] + post[:, 4:]


def _sufficient_counts(spec: SociodemoSpec, wanted: np.ndarray, rows: np.ndarray, n_days: int
                       ) -> dict[str, np.ndarray]:
    """Per wanted user: counts of events by category, local hour, device profile and region (int32)."""
    m = int(wanted.sum())
    sizes = {"category": len(CATEGORIES), "hour_local": 24, "profile": len(PROFILES), "region": len(REGIONS)}
    counts = {name: np.zeros((m, k), np.int32) for name, k in sizes.items()}
    for chunk, (lo, hi) in enumerate(_chunks(spec)):
        if not wanted[lo:hi].any():
            continue
        for day_index in range(n_days):
            ev = _chunk_events(spec, day_index, chunk)
            keep = wanted[ev.user]
            r = rows[ev.user[keep]]
            for name, k in sizes.items():
                counts[name] += np.bincount(r * k + getattr(ev, name)[keep], minlength=m * k).reshape(m, k)
    return counts


def _posterior(spec: SociodemoSpec, counts: dict[str, np.ndarray], n_days: int) -> np.ndarray:
    """(m, 8) posterior over groups from the sufficient counts."""
    from scipy.special import gammaln, logsumexp

    world = _world()
    cat_n, hour_n = counts["category"], counts["hour_local"]
    total = cat_n.sum(axis=1)
    spread_p = (np.log(PRIMARY_PROFILE_P + (1 - PRIMARY_PROFILE_P) * world.profile_q)
                - np.log((1 - PRIMARY_PROFILE_P) * world.profile_q))
    spread_r = (np.log(PRIMARY_REGION_P + (1 - PRIMARY_REGION_P) * world.region_q)
                - np.log((1 - PRIMARY_REGION_P) * world.region_q))
    loglik = np.empty((total.size, N_GROUPS))
    for g in range(N_GROUPS):
        a_cat = spec.category_concentration * world.cat_p[g]
        a_hour = spec.hour_concentration * world.hour_p[g]
        # Dirichlet-multinomial; its lgamma(A) - lgamma(A + N) term is the same for every group (A is fixed).
        ll = (gammaln(a_cat + cat_n) - gammaln(a_cat)).sum(axis=1)
        ll += (gammaln(a_hour + hour_n) - gammaln(a_hour)).sum(axis=1)
        # Primary device / region: a sum over which one it is; the factors not involving it are group-free.
        ll += logsumexp(np.log(world.profile_p[g]) + counts["profile"] * spread_p, axis=1)
        ll += logsumexp(np.log(world.region_p[g]) + counts["region"] * spread_r, axis=1)
        # Gamma-Poisson activity over n_days, with the dormant share mixed in at zero events.
        theta = spec.events_per_user_per_day * world.activity[g] / ACTIVITY_SHAPE
        active = total * np.log(theta) - (total + ACTIVITY_SHAPE) * np.log1p(n_days * theta)
        silent = np.log(spec.dormant_share + (1 - spec.dormant_share) * (1 + n_days * theta) ** -ACTIVITY_SHAPE)
        ll += np.where(total > 0, active, silent)
        loglik[:, g] = ll + np.log(world.group_p[g])
    return np.exp(loglik - logsumexp(loglik, axis=1, keepdims=True))

"""Reddit-worldnews posts in the Eluvio CSV format, at any size, with the planted truth behind their votes.

The generative model, per post (all times UTC):

* **when**: posts per day ~ Poisson(``posts_per_day`` × weekday factor × e^(``growth_per_year`` × years)),
  spread over the hours by a daily activity curve (busiest in the US daytime);
* **who**: authors have a Zipf-like activity and a popularity effect ~ N(0, ``author_sd``); half of them
  post from the start, the others join at a uniform time, so later months bring authors never seen before;
* **what**: a theme (conflict, disaster, politics, economy, science, rights, culture, health, crime) drawn from
  shares that drift over time, 2-4 of its words (real English words, so a sentence model can relate them),
  maybe a second theme's word, a planted phrase (``death toll``, ``human rights``: bigrams with their own
  effect), fillers and a country (some non-ASCII: ``Türkiye``, ``São Paulo``, ``Москва``); some titles carry
  commas, quotes or an embedded newline, as real exports do;
* **votes**: ``z = μ + σ·ε`` with ``μ = base + trend·years + theme effect (drifting) + word effects + phrase +
  author + hour + weekday + over_18`` and ``up_votes = floor(e^z)``: heavy-tailed, most posts a handful of
  votes, a few thousands. ``down_votes`` is 0 and ``category`` is ``worldnews``, as in the real file.

The truth of every clean post (``post_id``, ``mu`` and ``expected_log1p`` = E[log1p(up_votes) | the post],
by quadrature over ε) is written beside the CSV under ``engagement/generated/truth/``; ``expected_log1p`` is the
best possible prediction on the log scale, so its score on a test split is the ceiling (the oracle).

Each day is generated from ``(seed, day)`` alone, so a day is the same in a historical file and in a daily drop,
and any size streams out day by day in bounded memory. Bad rows (``bad_row_rate``) are extra copies of clean
posts, each broken in exactly one known way, so the quarantine's counts can be checked exactly.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the world
#: (theme, effect on log-votes, its drift per year, share of posts, share drift per year (logit), words, phrases)
THEMES: tuple[tuple[str, float, float, float, float, tuple[str, ...], tuple[tuple[str, float], ...]], ...] = (
    ("conflict", 0.7, 0.0, 0.18, 0.0,
     ("war", "troops", "missile", "airstrike", "ceasefire", "invasion", "rebels", "soldiers", "attack", "bombing",
      "militants", "artillery", "drone", "frontline", "offensive", "insurgents", "military", "army", "warship",
      "tanks", "clashes", "gunmen", "hostages", "shelling"),
     (("death toll", 0.5), ("nuclear weapons", 0.6), ("chemical weapons", 0.5))),
    ("disaster", 0.4, 0.0, 0.09, 0.0,
     ("earthquake", "flood", "tsunami", "hurricane", "wildfire", "eruption", "landslide", "cyclone", "drought",
      "evacuation", "typhoon", "avalanche", "heatwave", "storm", "famine", "volcano"),
     (("rescue teams", 0.2), ("death toll", 0.5))),
    ("politics", 0.1, 0.0, 0.2, -0.05,
     ("election", "parliament", "president", "minister", "vote", "coalition", "referendum", "opposition",
      "sanctions", "summit", "diplomat", "senate", "cabinet", "regime", "dictator", "ballot", "campaign"),
     (("prime minister", 0.0), ("regime change", 0.4), ("foreign minister", -0.1))),
    ("economy", -0.25, 0.0, 0.15, 0.0,
     ("inflation", "market", "currency", "bank", "debt", "trade", "tariffs", "recession", "stocks", "oil",
      "prices", "budget", "economy", "unemployment", "exports", "investors", "bonds", "factory"),
     (("interest rates", -0.2), ("oil prices", 0.1))),
    ("science", -0.1, 0.15, 0.08, 0.1,
     ("researchers", "scientists", "study", "space", "rocket", "telescope", "satellite", "discovery", "climate",
      "genome", "fossil", "asteroid", "robot", "algorithm", "laboratory", "species"),
     (("climate change", 0.4), ("artificial intelligence", 0.3))),
    ("rights", 0.5, 0.0, 0.1, 0.0,
     ("protest", "protesters", "police", "crackdown", "arrested", "activists", "journalist", "censorship",
      "rights", "demonstrators", "dissident", "prisoners", "torture", "refugees", "asylum", "detained"),
     (("human rights", 0.3), ("tear gas", 0.4))),
    ("culture", -0.6, 0.0, 0.08, 0.0,
     ("olympics", "football", "festival", "museum", "film", "championship", "tournament", "artist", "concert",
      "cathedral", "heritage", "cuisine", "fashion", "novel", "orchestra"),
     (("world cup", 0.2),)),
    ("health", 0.15, 0.1, 0.06, 0.15,
     ("outbreak", "virus", "pandemic", "hospital", "disease", "cases", "doctors", "lockdown", "epidemic",
      "measles", "cholera", "ebola", "malaria", "vaccine", "patients", "infections"),
     (("public health", 0.0), ("bird flu", 0.4))),
    ("crime", 0.3, 0.0, 0.06, 0.0,
     ("corruption", "scandal", "bribery", "fraud", "trial", "court", "sentenced", "convicted", "smuggling",
      "cartel", "mafia", "extradition", "laundering", "murder", "kidnapping"),
     (("death penalty", 0.4), ("drug cartel", 0.3))),
)
FILLERS = ("says", "after", "amid", "over", "against", "new", "first", "report", "officials", "government",
           "calls", "warns", "claims", "killed", "dozens", "thousands", "million", "year", "week", "could",
           "may", "plans", "leader", "former", "top", "in", "of", "the", "to", "for", "on", "as", "with", "from")
COUNTRIES = ("Russia", "China", "Ukraine", "Iran", "Israel", "Syria", "India", "Pakistan", "Afghanistan", "Iraq",
             "Germany", "France", "Brazil", "Mexico", "Japan", "Turkey", "Türkiye", "México", "São Paulo",
             "Côte d'Ivoire", "Москва", "北京", "Kyiv", "Nigeria", "Egypt", "North Korea", "UK", "EU", "Venezuela",
             "Zürich")
_SYLLABLES = ("an", "ka", "ro", "mi", "tel", "vox", "zen", "qua", "lor", "pix", "dra", "nu", "sol", "bri", "gor",
              "fen", "ul", "tri", "mas", "jo", "ek", "wa", "ly", "xo", "ser", "pol", "ar", "ix")
#: Share of a title's content words written with quotes (``"war"``) or a trailing comma: formatting, no effect.
QUOTED_SHARE, COMMA_SHARE, NEWLINE_SHARE = 0.03, 0.08, 0.002
MAX_TOKENS = 12
#: Quadrature nodes for E[log1p(floor(e^(μ + σε)))]: midpoints of 128 equal-probability slices of N(0, 1).
_NODES = 128

#: Kinds of bad rows planted, and the quarantine reason each one must get.
BAD_KINDS: dict[str, str] = {
    "bad_number": "bad_number", "bad_time": "bad_time", "negative_votes": "negative_votes",
    "missing_title": "missing_title", "broken_quoting": "broken_quoting", "extra_field": "wrong_field_count",
    "missing_field": "wrong_field_count", "control_characters": "control_characters", "bad_flag": "bad_flag",
    "bad_date": "bad_date", "duplicate": "duplicate",
}


@dataclass(frozen=True)
class EngagementSpec:
    """What to generate. Days are generated from ``(seed, day)``; the rest of the world from ``seed``."""

    seed: int = 42
    start: date = date(2016, 1, 1)
    days: int = 180
    posts_per_day: float = 250.0
    n_authors: int = 4_000
    growth_per_year: float = 0.2
    base: float = 1.0
    trend_per_year: float = 0.12
    author_sd: float = 0.6
    noise_sd: float = 1.0
    bad_row_rate: float = 0.0

    @property
    def end(self) -> date:
        """The last generated day (inclusive)."""
        return self.start + timedelta(days=self.days - 1)

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def to_json(self) -> str:
        return json.dumps({k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()},
                          indent=2)

    @classmethod
    def from_json(cls, text: str) -> EngagementSpec:
        raw = json.loads(text)
        raw["start"] = date.fromisoformat(raw["start"])
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class World:
    """Everything drawn once per spec: the vocabulary with its effects, and the authors."""

    vocab: np.ndarray  # object array of token strings (index = token id)
    word_effect: np.ndarray  # per token
    theme_words: tuple[np.ndarray, ...]  # token ids per theme (plain variants)
    phrase_ids: tuple[np.ndarray, ...]  # per theme: token ids of its phrases
    phrase_bonus: tuple[np.ndarray, ...]
    quoted_offset: int  # token id + this = the quoted variant of a content word
    comma_offset: int
    filler_ids: np.ndarray
    country_ids: np.ndarray
    authors: np.ndarray  # object array of names
    author_effect: np.ndarray
    author_weight: np.ndarray
    author_start: np.ndarray  # days after spec.start when the author starts posting


@lru_cache(maxsize=8)
def world(spec: EngagementSpec) -> World:
    rng = np.random.default_rng([spec.seed, 0xE16A])
    content: list[str] = []
    theme_words = []
    for _, _, _, _, _, words, _ in THEMES:
        theme_words.append(np.arange(len(content), len(content) + len(words)))
        content.extend(words)
    n_content = len(content)
    vocab = [*content, *(f'"{w}"' for w in content), *(f"{w}," for w in content)]
    effect = np.concatenate([rng.normal(0, 0.15, n_content)] * 3)
    phrase_ids, phrase_bonus = [], []
    for *_, phrases in THEMES:
        phrase_ids.append(np.arange(len(vocab), len(vocab) + len(phrases)))
        phrase_bonus.append(np.array([b for _, b in phrases]))
        vocab.extend(p for p, _ in phrases)
    filler_ids = np.arange(len(vocab), len(vocab) + len(FILLERS))
    vocab.extend(FILLERS)
    country_ids = np.arange(len(vocab), len(vocab) + len(COUNTRIES))
    vocab.extend(COUNTRIES)
    effect = np.concatenate([effect, np.zeros(len(vocab) - len(effect))])
    n = spec.n_authors
    names, seen = [], set()
    for i in range(n):
        k = rng.integers(2, 4)
        name = "".join(rng.choice(_SYLLABLES, k)) + (str(rng.integers(1, 999)) if rng.random() < 0.4 else "")
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    ranks = rng.permutation(n) + 1
    starts = np.where(rng.random(n) < 0.5, 0, rng.integers(0, max(spec.days, 1), n))
    return World(vocab=np.array(vocab, dtype=object), word_effect=effect, theme_words=tuple(theme_words),
                 phrase_ids=tuple(phrase_ids), phrase_bonus=tuple(phrase_bonus), quoted_offset=n_content,
                 comma_offset=2 * n_content, filler_ids=filler_ids, country_ids=country_ids,
                 authors=np.array(names, dtype=object), author_effect=rng.normal(0, spec.author_sd, n),
                 author_weight=1.0 / ranks**1.1, author_start=starts)


@lru_cache(maxsize=8)
def _arrow_world(spec: EngagementSpec):
    """The vocabulary and author names as Arrow arrays (built once per spec, taken from per day)."""
    import pyarrow as pa

    w = world(spec)
    return pa.array(w.vocab.tolist(), pa.string()), pa.array(w.authors.tolist(), pa.string())


def _hour_profile() -> np.ndarray:
    h = np.arange(24)
    p = 1 + 0.6 * np.cos(2 * np.pi * (h - 16) / 24)
    return p / p.sum()


HOUR_EFFECT = 0.3 * np.cos(2 * np.pi * (np.arange(24) - 14) / 24)
WEEKDAY_EFFECT = np.array([0.05, 0.05, 0.05, 0.0, -0.05, -0.2, -0.15])  # Monday .. Sunday
WEEKDAY_VOLUME = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.8, 0.8])
OVER_18_SHARE, OVER_18_EFFECT = 0.004, 0.5


def theme_effects(spec: EngagementSpec, years: float) -> np.ndarray:
    return np.array([t[1] + t[2] * years for t in THEMES])


def theme_shares(years: float) -> np.ndarray:
    logits = np.array([np.log(t[3]) + t[4] * years for t in THEMES])
    p = np.exp(logits - logits.max())
    return p / p.sum()


def expected_log1p(mu: np.ndarray, sigma: float) -> np.ndarray:
    """E[log1p(floor(e^(μ + σε)))], ε ~ N(0, 1), by the midpoint rule over equal-probability slices."""
    from scipy.stats import norm

    eps = norm.ppf((np.arange(_NODES) + 0.5) / _NODES)
    out = np.empty(len(mu))
    for lo in range(0, len(mu), 65_536):
        z = mu[lo: lo + 65_536, None] + sigma * eps[None, :]
        out[lo: lo + 65_536] = np.log1p(np.floor(np.exp(np.minimum(z, 30.0)))).mean(axis=1)
    return out


# --------------------------------------------------------------------------- one day
@dataclass
class DayPosts:
    """One day's clean posts as columns (sorted by time), and what the truth needs."""

    time_created: np.ndarray
    up_votes: np.ndarray
    title: object  # pyarrow string array
    over_18: np.ndarray
    author: np.ndarray  # author indices
    mu: np.ndarray

    def __len__(self) -> int:
        return len(self.time_created)


def day_posts(spec: EngagementSpec, day: date) -> DayPosts:
    """The clean posts of ``day``, from ``(seed, day)`` alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    w = world(spec)
    rng = np.random.default_rng([spec.seed, day.toordinal()])
    years = (day - spec.start).days / 365.25
    rate = spec.posts_per_day * WEEKDAY_VOLUME[day.weekday()] * np.exp(spec.growth_per_year * years)
    n = int(rng.poisson(max(rate, 0.0)))
    day_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    hours = rng.choice(24, size=n, p=_hour_profile())
    times = np.sort(day_start + hours * 3600 + rng.integers(0, 3600, n))
    hours = (times - day_start) // 3600
    # authors active today, by activity weight
    offset = (day - spec.start).days
    weights = w.author_weight * (w.author_start <= offset)
    authors = rng.choice(len(weights), size=n, p=weights / weights.sum()) if n else np.zeros(0, np.int64)
    # themes and words
    n_themes = len(THEMES)
    theme = rng.choice(n_themes, size=n, p=theme_shares(years))
    second = np.where(rng.random(n) < 0.3, rng.choice(n_themes, size=n, p=theme_shares(years)), -1)
    effects = theme_effects(spec, years)
    tokens = np.full((n, MAX_TOKENS), -1, dtype=np.int64)
    k_content = rng.integers(2, 5, n)
    word_sum = np.zeros(n)
    for t in range(n_themes):
        rows = np.flatnonzero(theme == t)
        if not len(rows):
            continue
        picks = rng.choice(w.theme_words[t], size=(len(rows), 4))
        for j in range(4):
            use = j < k_content[rows]
            tokens[rows[use], j] = picks[use, j]
            word_sum[rows[use]] += w.word_effect[picks[use, j]]
    title_effect = effects[theme] + word_sum / k_content
    for t in range(n_themes):
        rows = np.flatnonzero(second == t)
        if len(rows):
            tokens[rows, 4] = rng.choice(w.theme_words[t], size=len(rows))
            title_effect[rows] += 0.5 * effects[t]
    phrase = rng.random(n) < 0.15
    for t in range(n_themes):
        rows = np.flatnonzero(phrase & (theme == t))
        if len(rows):
            k = rng.integers(0, len(w.phrase_ids[t]), len(rows))
            tokens[rows, 5] = w.phrase_ids[t][k]
            title_effect[rows] += w.phrase_bonus[t][k]
    n_fill = rng.integers(1, 5, n)
    fill = rng.choice(w.filler_ids, size=(n, 4))
    for j in range(4):
        tokens[:, 6 + j] = np.where(j < n_fill, fill[:, j], -1)
    tokens[:, 10] = np.where(rng.random(n) < 0.6, rng.choice(w.country_ids, size=n), -1)
    # formatting that carries no signal: quoted or comma-ed content words, then a shuffled word order
    style = rng.random((n, 5))
    content = tokens[:, :5]
    is_content = content >= 0
    content[:] = np.where(is_content & (style < QUOTED_SHARE), content + w.quoted_offset, content)
    content[:] = np.where(is_content & (style > 1 - COMMA_SHARE), content + w.comma_offset, content)
    order = np.argsort(rng.random((n, MAX_TOKENS)) + (tokens < 0) * 2.0, axis=1)
    tokens = np.take_along_axis(tokens, order, axis=1)
    over_18 = rng.random(n) < OVER_18_SHARE
    mu = (spec.base + spec.trend_per_year * years + title_effect + w.author_effect[authors] + HOUR_EFFECT[hours]
          + WEEKDAY_EFFECT[day.weekday()] + OVER_18_EFFECT * over_18)
    votes = np.floor(np.exp(np.minimum(mu + spec.noise_sd * rng.standard_normal(n), 30.0))).astype(np.int64)
    vocab = _arrow_world(spec)[0]
    columns = [pc.take(vocab, pa.array(tokens[:, j], mask=tokens[:, j] < 0)) for j in range(MAX_TOKENS)]
    title = pc.binary_join_element_wise(*columns, " ", null_handling="skip") if n else pa.array([], pa.string())
    newline = rng.random(n) < NEWLINE_SHARE
    if newline.any():
        broken = pc.replace_substring(title, " ", "\n", max_replacements=1)
        title = pc.if_else(pa.array(newline), broken, title)
    return DayPosts(time_created=times, up_votes=votes, title=title, over_18=over_18, author=authors, mu=mu)


# --------------------------------------------------------------------------- CSV
def _csv_field(values):
    """Strings as CSV fields, quoted only when needed (the Eluvio file's own style, pandas' QUOTE_MINIMAL)."""
    import pyarrow.compute as pc

    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(values, '[",\r\n]'), quoted, values)


def _lines(posts: DayPosts, authors, eol: str):
    """The posts as CSV lines, each ending in ``eol`` (built column-wise in Arrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(posts)
    days = posts.time_created // 86_400
    if n and days.min() == days.max():  # one UTC day (always, for a generated day): no per-row formatting
        dates = pa.repeat(pa.scalar(_date_strings(posts.time_created[:1])[0]), n)
    else:
        dates = pa.array(_date_strings(posts.time_created), pa.string())
    fields = [pc.cast(pa.array(posts.time_created), pa.string()), dates,
              pc.cast(pa.array(posts.up_votes), pa.string()), pa.repeat(pa.scalar("0"), n),
              _csv_field(posts.title), pc.if_else(pa.array(posts.over_18), "True", "False"), authors,
              pa.repeat(pa.scalar("worldnews"), n)]
    line = pc.binary_join_element_wise(*fields, ",")
    return pc.binary_join_element_wise(line, eol, "")


def _bytes_of(lines) -> bytes:
    """The concatenated values of a string array (one buffer copy)."""
    import pyarrow as pa

    lines = pa.array(lines) if not isinstance(lines, pa.Array) else lines
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset: lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0]: offsets[-1]]


def _date_strings(times: np.ndarray) -> list[str]:
    return np.datetime_as_string(times.astype("datetime64[s]"), unit="D").tolist()


@dataclass
class Chunk:
    """The CSV bytes of a day, the truth of its clean posts, and the bad rows planted in it (by reason)."""

    data: bytes
    rows: int
    clean: int
    bad: Counter
    truth: object | None  # pyarrow Table, or None


def day_chunk(spec: EngagementSpec, day: date, eol: str = "\n", truth: bool = True, daily: bool = False) -> Chunk:
    """One day's CSV lines (no header): the clean posts and, at ``bad_row_rate``, broken extra copies.

    ``daily``: the lines go into the day's own drop, where posts of another day are a fault (``outside_day``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.engagement.schema import post_id

    w = world(spec)
    posts = day_posts(spec, day)
    n = len(posts)
    times = posts.time_created
    authors = pc.take(_arrow_world(spec)[1], pa.array(posts.author, pa.int64()))
    lines = _lines(posts, authors, eol)
    bad: Counter = Counter()
    rows = n
    if spec.bad_row_rate > 0 and n:
        rng = np.random.default_rng([spec.seed, day.toordinal(), 0xBAD])
        k = int(rng.binomial(n, spec.bad_row_rate))
        kinds = list(BAD_KINDS) + (["outside_day"] if daily else [])
        titles, names = posts.title.to_pylist(), w.authors[posts.author]
        planted: list[tuple[int, str]] = []
        for src in rng.choice(n, size=k):
            kind = kinds[int(rng.integers(len(kinds)))]
            planted.append((int(src), _broken_line(kind, int(src), times, posts, titles, names, eol, day, rng)))
            bad[BAD_KINDS.get(kind, kind)] += 1
        out = lines.to_pylist()
        for src, line in sorted(planted, key=lambda p: p[0], reverse=True):
            out.insert(src + 1, line)
        data, rows = "".join(out).encode("utf-8"), len(out)
    else:
        data = _bytes_of(lines)
    table = None
    if truth and n:
        ids = [post_id(t, a, s) for t, a, s in zip(times.tolist(), authors.to_pylist(), posts.title.to_pylist(),
                                                      strict=True)]
        table = pa.table({"post_id": ids, "time_created": times, "mu": posts.mu,
                          "expected_log1p": expected_log1p(posts.mu, spec.noise_sd)})
    return Chunk(data=data, rows=rows, clean=n, bad=bad, truth=table)


def _broken_line(kind: str, i: int, times, posts: DayPosts, titles: list[str], authors, eol: str, day: date,
                 rng: np.random.Generator) -> str:
    """A copy of post ``i`` broken in exactly one way (the quarantine reason is ``BAD_KINDS[kind]``)."""
    fields = {"time": str(times[i]), "date": _date_strings(times[i: i + 1])[0], "up": str(posts.up_votes[i]),
              "title": titles[i], "flag": "True" if posts.over_18[i] else "False", "author": str(authors[i])}

    def line(f: dict, extra: str = "", drop_category: bool = False) -> str:
        title = f["title"]
        if any(c in title for c in '",\r\n'):
            title = '"' + title.replace('"', '""') + '"'
        tail = "" if drop_category else ",worldnews"
        return f"{f['time']},{f['date']},{f['up']},0,{title},{f['flag']},{f['author']}{tail}{extra}{eol}"

    if kind == "bad_number":
        return line({**fields, "up": str(rng.choice(["12a", "n/a", "1,5".replace(",", ";"), "--3", "7.5"]))})
    if kind == "bad_time":
        return line({**fields, "time": "0", "date": "1970-01-01"})
    if kind == "negative_votes":
        return line({**fields, "up": f"-{int(rng.integers(1, 50))}"})
    if kind == "missing_title":
        return line({**fields, "title": ""})
    if kind == "broken_quoting":  # an opening quote never closed; no quote, comma or newline inside the title
        plain = fields["title"].replace('"', "").replace(",", "").replace("\n", " ")
        return f"{fields['time']},{fields['date']},{fields['up']},0,\"{plain},{fields['flag']},{fields['author']}," \
               f"worldnews{eol}"
    if kind == "extra_field":
        return line(fields, extra=",extra")
    if kind == "missing_field":
        return line(fields, drop_category=True)
    if kind == "control_characters":
        cut = len(fields["title"]) // 2
        return line({**fields, "title": fields["title"][:cut] + "\x00" + fields["title"][cut:]})
    if kind == "bad_flag":
        return line({**fields, "flag": "maybe"})
    if kind == "bad_date":
        return line({**fields, "date": f"{day.year}-13-45"})
    if kind == "duplicate":
        return line(fields)
    if kind == "outside_day":
        t = int(times[i]) - 86_400 * int(rng.integers(1, 30))
        return line({**fields, "time": str(t), "date": _date_strings(np.array([t]))[0]})
    raise ValueError(kind)


# --------------------------------------------------------------------------- files
HEADER = "time_created,date_created,up_votes,down_votes,title,over_18,author,category"


def _open_out(path: Path, compress: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    return gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb")


def _chunk_job(job: tuple) -> Chunk:
    spec, day, eol, truth, daily = job
    return day_chunk(spec, day, eol=eol, truth=truth, daily=daily)


def _chunks(spec: EngagementSpec, days: list[date], eol: str, truth: bool, daily: bool, workers: int):
    """The days' chunks in order; with ``workers`` > 1 generated by that many processes (days are independent)."""
    jobs = [(spec, day, eol, truth, daily) for day in days]
    if workers <= 1:
        yield from map(_chunk_job, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_chunk_job, jobs, chunksize=2)


def _write(path: Path, days: list[date], spec: EngagementSpec, *, eol: str, bom: bool, truth_path: Path | None,
           daily: bool, progress: bool = False, workers: int = 1) -> dict:
    """Write ``days`` into one CSV (atomically: a temporary name, renamed when complete)."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    rows = clean = 0
    bad: Counter = Counter()
    writer = None
    try:
        with _open_out(tmp, path.suffix == ".gz") as out:
            out.write(("\ufeff" if bom else "").encode() + (HEADER + eol).encode())
            iterator: Iterator[Chunk] = _chunks(spec, days, eol, truth_path is not None, daily, workers)
            if progress:
                from tqdm import tqdm

                iterator = tqdm(iterator, total=len(days), desc=f"generate {path.name}", unit="day", disable=None)
            for chunk in iterator:
                out.write(chunk.data)
                rows, clean = rows + chunk.rows, clean + chunk.clean
                bad.update(chunk.bad)
                if chunk.truth is not None and truth_path is not None:
                    if writer is None:
                        truth_path.parent.mkdir(parents=True, exist_ok=True)
                        writer = pq.ParquetWriter(truth_path.with_name(f".{truth_path.name}.tmp"),
                                                  chunk.truth.schema)
                    writer.write_table(chunk.truth)
        if writer is not None:
            writer.close()
            writer = None
            truth_path.with_name(f".{truth_path.name}.tmp").replace(truth_path)
        tmp.replace(path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return {"file": str(path), "rows": rows, "clean": clean, "bad": dict(bad), "bytes": path.stat().st_size}


def truth_path_for(root: Path, rel: str) -> Path:
    """Where the truth of the raw file ``rel`` (relative to the data root) is written."""
    from pipelines.engagement.schema import GENERATED_REL

    return root / GENERATED_REL / "truth" / (rel.replace("/", "__") + ".parquet")


def write_history(spec: EngagementSpec, root: Path, name: str, first: date, last: date, *, eol: str = "\n",
                  bom: bool = False, truth: bool = True, progress: bool = False, workers: int = 1) -> dict:
    """One historical file ``engagement/raw/history/<name>`` with the days ``first`` .. ``last`` (generated by
    ``workers`` processes; the bytes are the same whatever their number)."""
    from pipelines.engagement.schema import HISTORY_DIR

    rel = f"{HISTORY_DIR}/{name}"
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return _write(root / rel, days, spec, eol=eol, bom=bom, truth_path=truth_path_for(root, rel) if truth else None,
                  daily=False, progress=progress, workers=workers)


def write_day(spec: EngagementSpec, root: Path, day: date, *, eol: str = "\n", bom: bool = False,
              truth: bool = True, name: str = "posts.csv") -> dict:
    """The daily drop ``engagement/raw/dt=<day>/<name>``."""
    from pipelines.engagement.schema import raw_day_dir

    rel = f"{raw_day_dir(day)}/{name}"
    return _write(root / rel, [day], spec, eol=eol, bom=bom, truth_path=truth_path_for(root, rel) if truth else None,
                  daily=True)


def write_spec(spec: EngagementSpec, root: Path) -> Path:
    """The spec beside the data: its presence marks the data root as generated (training reports the oracle)."""
    from pipelines.engagement.schema import GENERATED_REL

    path = root / GENERATED_REL / "spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.to_json())
    return path


def bytes_per_post(spec: EngagementSpec, sample_days: int = 3) -> float:
    """Average CSV bytes per post (calibrates ``posts_per_day`` for a target file size)."""
    total = rows = 0
    for i in range(sample_days):
        chunk = day_chunk(spec, spec.start + timedelta(days=i * 97), truth=False)
        total, rows = total + len(chunk.data), rows + chunk.rows
    return total / max(rows, 1)


def spec_for_size(target_bytes: int, days: int, seed: int = 42, start: date = date(2012, 1, 1),
                  **overrides) -> EngagementSpec:
    """A spec whose ``days`` of posts make a CSV of about ``target_bytes`` (volume growth included)."""
    probe = EngagementSpec(seed=seed, start=start, days=days, posts_per_day=2_000.0, **overrides)
    per_post = bytes_per_post(probe)
    years = np.arange(days) / 365.25
    growth = float(np.mean(np.exp(probe.growth_per_year * years)) * WEEKDAY_VOLUME.mean())
    ppd = target_bytes / per_post / days / growth
    return EngagementSpec(**{**asdict(probe), "posts_per_day": ppd})

"""SQL emitted from the feature config: per-user daily partials, their combination over a window, the features.

Every feature is computed from *additive partials* kept per (user, day): event counts, integer sums, DECIMAL
sums of float columns (exact, so the order of addition cannot change a bit), counts per listed value, events
per UTC hour, first and last timestamps. Distinct counts need the set of (user, value) pairs instead, kept per
day. Combining partials is integer addition (and min/max), so a window's partials are the same whether they
are summed from daily partials in one go (a full rebuild, or :func:`feature_sql`) or folded one day at a time
into a running all-time state (the incremental build): the two agree exactly, not approximately.

The pieces, each a SQL string over named relations (tables, views or ``read_parquet(...)`` calls):

* :func:`daily_sql` — events → one row per (user, day) of partials;
* :func:`pairs_sql` — events → distinct (user, day, value) of one column;
* :func:`window_sql` — daily partials + pairs → one row per user with the window's partials and distinct counts;
* :func:`new_pairs_sql` + :func:`fold_sql` — yesterday's all-time state + today → today's all-time state;
* :func:`projection_sql` — the windows' rows → the feature table;
* :func:`feature_sql` — all of it over a plain events relation, in one statement (the reference; tests check it
  on hand-computed cases, and the builder against it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date

from pipelines.sociodemo.features import Feature, FeatureConfig, Window, is_integer_column

#: Bumped when the state layout or the partials' SQL changes meaning (old state is then not reused).
STATE_FORMAT_VERSION = 1
_DECIMAL = "DECIMAL(38, 6)"


@dataclass(frozen=True)
class Partial:
    """One additive per-(user, day) quantity: its aggregate over the day's events and how days combine."""

    name: str
    expr: str
    combine: str  # "sum", "min" or "max"
    type: str


@dataclass(frozen=True)
class StatePlan:
    """What state a config needs: partial columns, pair sets, and which distinct counts are kept all-time."""

    partials: tuple[Partial, ...]
    distinct_columns: tuple[str, ...]
    cumulative_partials: tuple[Partial, ...]
    cumulative_distinct: tuple[str, ...]
    windows: tuple[Window, ...]

    @property
    def has_all_time(self) -> bool:
        return any(w.days is None for w in self.windows)

    def _hash(self, payload: object) -> str:
        text = json.dumps([STATE_FORMAT_VERSION, payload], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def daily_version(self) -> str:
        return self._hash([[p.name, p.expr, p.combine, p.type] for p in self.partials])

    def pairs_version(self, column: str) -> str:
        return self._hash(["pairs", column])

    @property
    def cumulative_version(self) -> str:
        return self._hash([self.daily_version, [p.name for p in self.cumulative_partials],
                           list(self.cumulative_distinct)])


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(column: str, value: str) -> str:
    return value if is_integer_column(column) else "'" + value.replace("'", "''") + "'"


def _value_partial(by: str, weight: str | None, value: str) -> Partial:
    digest = hashlib.md5(f"{by}\x00{value}".encode()).hexdigest()[:10]
    cond = f"{_q(by)} = {_literal(by, value)}"
    if weight is None:
        return Partial(f"by__{by}__n__{digest}", f"count(*) FILTER (WHERE {cond})", "sum", "BIGINT")
    return Partial(f"by__{by}__{weight}__{digest}", _sum_expr(weight, cond), "sum", _sum_type(weight))


def _sum_type(column: str) -> str:
    return "BIGINT" if is_integer_column(column) else _DECIMAL


def _sum_expr(column: str, cond: str | None = None) -> str:
    """A day's sum, never NULL; float columns are summed as DECIMAL so that any order of addition is exact."""
    value = _q(column) if is_integer_column(column) else f"CAST({_q(column)} AS DECIMAL(18, 6))"
    where = f" FILTER (WHERE {cond})" if cond else ""
    return f"CAST(coalesce(sum({value}){where}, 0) AS {_sum_type(column)})"


_COUNT = Partial("n_events", "count(*)", "sum", "BIGINT")


def _partials(feature: Feature) -> list[Partial]:
    if feature.agg == "count":
        return [_COUNT]
    if feature.agg in ("sum", "mean"):
        col = feature.column or ""
        out = [Partial(f"sum__{col}", _sum_expr(col), "sum", _sum_type(col))]
        return out + ([Partial(f"cnt__{col}", f"count({_q(col)})", "sum", "BIGINT")] if feature.agg == "mean" else [])
    if feature.agg in ("share", "top_k"):
        by = feature.by or ""
        total = (_COUNT if feature.weight is None else
                 Partial(f"sum__{feature.weight}", _sum_expr(feature.weight), "sum", _sum_type(feature.weight)))
        return [total] + [_value_partial(by, feature.weight, v) for _, v in feature.values]
    if feature.agg == "hour_histogram":
        return [_COUNT] + [Partial(f"hour__{h:02d}", f"count(*) FILTER (WHERE hour(event_timestamp) = {h})", "sum",
                                   "BIGINT") for h in range(24)]
    if feature.agg == "recency":
        if feature.of == "last":
            return [Partial("last_ts", "max(event_timestamp)", "max", "TIMESTAMP WITH TIME ZONE")]
        return [Partial("first_ts", "min(event_timestamp)", "min", "TIMESTAMP WITH TIME ZONE")]
    return []  # distinct_count: pair sets, not partials


def plan(config: FeatureConfig) -> StatePlan:
    """The state a config needs, with partials deduplicated and in a stable order."""
    partials: dict[str, Partial] = {}
    for feature in config.features:
        for p in _partials(feature):
            partials.setdefault(p.name, p)
    distinct = sorted({f.column or "" for f in config.features if f.agg == "distinct_count"})
    cumulative = sorted({f.column or "" for f in config.features
                         if f.agg == "distinct_count" and any(w.days is None for w in f.windows)})
    ordered = tuple(sorted(partials.values(), key=lambda p: p.name))
    all_time = {p.name for f in config.features if Window() in f.windows for p in _partials(f)}
    return StatePlan(partials=ordered, distinct_columns=tuple(distinct),
                     cumulative_partials=tuple(p for p in ordered if p.name in all_time),
                     cumulative_distinct=tuple(cumulative), windows=tuple(config.windows()))


def window_partials(config: FeatureConfig, window: Window) -> list[Partial]:
    """The partials the features of one window read (a window combines only those)."""
    if window.days is None:
        return list(plan(config).cumulative_partials)
    names = {p.name for f in config.features if window in f.windows for p in _partials(f)}
    return [p for p in plan(config).partials if p.name in names]


def window_distinct(config: FeatureConfig, window: Window) -> list[str]:
    """Columns whose distinct count a window needs."""
    return sorted({f.column or "" for f in config.features if f.agg == "distinct_count" and window in f.windows})


# --------------------------------------------------------------------------- state SQL
def daily_sql(state: StatePlan, events: str) -> str:
    """One row per (viewer_uid, event_date) with every partial, from an events relation."""
    cols = ",\n       ".join(f"{p.expr} AS {_q(p.name)}" for p in state.partials)
    return (f"SELECT viewer_uid, CAST(event_timestamp AS DATE) AS event_date,\n       {cols}\n"
            f"FROM {events}\nGROUP BY viewer_uid, CAST(event_timestamp AS DATE)")


def pairs_sql(column: str, events: str) -> str:
    """The distinct (viewer_uid, event_date, item) of one column's non-null values."""
    return (f"SELECT DISTINCT viewer_uid, CAST(event_timestamp AS DATE) AS event_date, {_q(column)} AS item\n"
            f"FROM {events} WHERE {_q(column)} IS NOT NULL")


def _combine(p: Partial) -> str:
    col = _q(p.name)
    if p.combine == "sum":
        return f"CAST(sum({col}) AS {p.type}) AS {_q(p.name)}"
    return f"{p.combine}({col}) AS {_q(p.name)}"


def _date_filter(as_of: date, window: Window) -> str:
    if window.days is None:
        return f"event_date <= DATE '{as_of.isoformat()}'"
    return (f"event_date BETWEEN DATE '{as_of.isoformat()}' - INTERVAL {window.days - 1} DAY "
            f"AND DATE '{as_of.isoformat()}'")


def window_sql(partials: list[Partial], as_of: date, window: Window, daily: str, pairs: dict[str, str],
               distinct: list[str]) -> str:
    """One row per user active in the window: the combined ``partials``, then ``distinct__<column>`` counts."""
    where = _date_filter(as_of, window)
    combined = ", ".join(["count(*) AS days_active"] * (not partials) + [_combine(p) for p in partials])
    counts = "".join(f", CAST(coalesce(d{i}.n, 0) AS BIGINT) AS {_q('distinct__' + col)}"
                     for i, col in enumerate(distinct))
    sql = f"SELECT c.*{counts}\n"
    sql += f"FROM (SELECT viewer_uid, {combined} FROM {daily} WHERE {where} GROUP BY viewer_uid) AS c"
    for i, col in enumerate(distinct):
        sql += (f"\nLEFT JOIN (SELECT viewer_uid, count(DISTINCT item) AS n FROM {pairs[col]} WHERE {where} "
                f"GROUP BY viewer_uid) AS d{i} ON d{i}.viewer_uid = c.viewer_uid")
    return sql


def new_pairs_sql(today: str, history: str) -> str:
    """Per user, how many of today's (user, item) pairs never occurred on an earlier day.

    The join keeps today's (small) pairs as the build side and streams the history past it.
    """
    return f"""WITH today AS (SELECT viewer_uid, item FROM {today}),
seen AS (
    SELECT DISTINCT t.viewer_uid, t.item
    FROM today AS t JOIN (SELECT viewer_uid, item FROM {history}) AS h
      ON h.viewer_uid = t.viewer_uid AND h.item = t.item
)
SELECT t.viewer_uid, count(*) FILTER (WHERE s.viewer_uid IS NULL) AS n
FROM today AS t LEFT JOIN seen AS s ON s.viewer_uid = t.viewer_uid AND s.item = t.item
GROUP BY t.viewer_uid"""


def fold_sql(state: StatePlan, previous: str | None, daily: str, new_pairs: dict[str, str]) -> str:
    """All-time state through day D from the state through D-1 (None on the first day) and day D's partials.

    ``new_pairs[column]`` is :func:`new_pairs_sql` of day D for each cumulative distinct column. A full outer
    join and column-wise addition: the same integers as summing the two rows in a GROUP BY, at a fraction of
    the cost of a hash aggregate over a hundred columns.
    """
    joins = "".join(f"\nLEFT JOIN {new_pairs[c]} AS n{i} ON n{i}.viewer_uid = d.viewer_uid"
                    for i, c in enumerate(state.cumulative_distinct))
    if previous is None:
        cols = [f"d.{_q(p.name)}" for p in state.cumulative_partials]
        cols += [f"CAST(coalesce(n{i}.n, 0) AS BIGINT) AS {_q('distinct__' + c)}"
                 for i, c in enumerate(state.cumulative_distinct)]
        return f"SELECT d.viewer_uid, {', '.join(cols)}\nFROM {daily} AS d{joins}"
    cols = []
    for p in state.cumulative_partials:
        a, b = f"p.{_q(p.name)}", f"d.{_q(p.name)}"
        if p.combine == "sum":
            cols.append(f"CAST(coalesce({a}, 0) + coalesce({b}, 0) AS {p.type}) AS {_q(p.name)}")
        else:  # greatest/least skip NULLs: a user new today, or absent today
            cols.append(f"{'greatest' if p.combine == 'max' else 'least'}({a}, {b}) AS {_q(p.name)}")
    cols += [f"CAST(coalesce(p.{_q('distinct__' + c)}, 0) + coalesce(n{i}.n, 0) AS BIGINT) AS {_q('distinct__' + c)}"
             for i, c in enumerate(state.cumulative_distinct)]
    return (f"SELECT coalesce(p.viewer_uid, d.viewer_uid) AS viewer_uid, {', '.join(cols)}\n"
            f"FROM {previous} AS p FULL JOIN {daily} AS d ON d.viewer_uid = p.viewer_uid{joins}")


# --------------------------------------------------------------------------- features
def _feature_exprs(feature: Feature, window: Window, as_of: date) -> list[str]:
    """SQL of each output column of one feature and window, reading alias ``w_<tag>``."""
    a = f"w_{window.tag}."

    def col(name: str) -> str:
        return a + _q(name)

    def ratio(numerator: str, denominator: str) -> str:
        return f"CAST({numerator} AS DOUBLE) / nullif(CAST({denominator} AS DOUBLE), 0)"

    agg = feature.agg
    if agg == "count":
        return [f"coalesce({col('n_events')}, 0)"]
    if agg == "sum":
        return [f"coalesce({col('sum__' + (feature.column or ''))}, 0)"]
    if agg == "mean":
        return [ratio(col(f"sum__{feature.column}"), col(f"cnt__{feature.column}"))]
    if agg == "distinct_count":
        return [f"coalesce({col('distinct__' + (feature.column or ''))}, 0)"]
    if agg in ("share", "top_k"):
        by = feature.by or ""
        total = col("n_events") if feature.weight is None else col(f"sum__{feature.weight}")
        parts = [col(_value_partial(by, feature.weight, v).name) for _, v in feature.values]
        if agg == "share":
            out = [ratio(p, total) for p in parts]
            return out + ([ratio(f"({total} - ({' + '.join(parts)}))", total)] if feature.other else [])
        return _top_k(feature, parts)
    if agg == "hour_histogram":
        out = []
        for start, end in feature.bucket_ranges():
            hours = [(h - feature.utc_offset_hours) % 24 for h in range(start, end)]
            out.append(ratio("(" + " + ".join(col(f"hour__{h:02d}") for h in hours) + ")", col("n_events")))
        return out
    ts = col("last_ts" if feature.of == "last" else "first_ts")
    return [f"DATE '{as_of.isoformat()}' - CAST({ts} AS DATE)"]


def _top_k(feature: Feature, amounts: list[str]) -> list[str]:
    """SQL of the k top values: each listed value's amount is encoded with its tie-break rank into one integer
    (``amount * n + code``, larger code = earlier in text order), the list is sorted descending, and codes are
    decoded back to values. Sorting integers is far cheaper than sorting structs; values with no amount are
    dropped. DECIMAL amounts are scaled to integers (exactly: they have 6 decimals)."""
    values = [v for _, v in feature.values]
    n = len(values)
    text_rank = {v: r for r, v in enumerate(sorted(values))}
    scale = "" if feature.weight is None or is_integer_column(feature.weight) else " * 1000000"
    cast = "HUGEINT" if scale else "BIGINT"
    keys = ", ".join(f"CAST({a}{scale} AS {cast}) * {n} + {n - 1 - text_rank[v]}"
                     for a, v in zip(amounts, values, strict=True))
    by_code = "[" + ", ".join(_literal("", v) for v in sorted(values, reverse=True)) + "]"  # index = code + 1
    ranked = f"list_reverse_sort(list_filter([{keys}], lambda x: x >= {n}))"
    return [f"{by_code}[CAST({ranked}[{i}] % {n} AS INTEGER) + 1]" for i in range(1, (feature.k or 0) + 1)]


def projection_sql(config: FeatureConfig, as_of: date, relations: dict[str, str]) -> str:
    """The feature table from each window's relation (``relations[window.tag]``, a :func:`window_sql` result).

    One row per user in the widest window (all time if any feature uses it), ``viewer_uid`` first, then the
    config's columns in order, sorted by ``viewer_uid``.
    """
    windows = config.windows()
    base = windows[0] if windows[0].days is None else max(windows, key=lambda w: w.days or 0)
    select = [f"w_{base.tag}.viewer_uid"]
    for feature in config.features:
        for window in feature.windows:
            exprs = _feature_exprs(feature, window, as_of)
            for (suffix, typ), expr in zip(feature.parts(), exprs, strict=True):
                select.append(f"CAST({expr} AS {typ}) AS {_q(f'{feature.name}_{window.tag}{suffix}')}")
    sql = "SELECT " + ",\n       ".join(select) + f"\nFROM {relations[base.tag]} AS w_{base.tag}"
    for window in windows:
        if window != base:
            sql += (f"\nLEFT JOIN {relations[window.tag]} AS w_{window.tag} "
                    f"ON w_{window.tag}.viewer_uid = w_{base.tag}.viewer_uid")
    return sql + "\nORDER BY viewer_uid"


def feature_sql(config: FeatureConfig, as_of: date, events: str = "events") -> str:
    """The whole feature table as of ``as_of`` from an events relation, in one statement.

    ``events`` needs ``viewer_uid``, ``event_timestamp`` and the columns the config uses; events after
    ``as_of`` are ignored. Days are UTC days (run it with ``SET TimeZone = 'UTC'``).
    """
    state = plan(config)
    ctes = [f"ev AS (SELECT * FROM {events} WHERE CAST(event_timestamp AS DATE) <= DATE '{as_of.isoformat()}')",
            f"daily AS (\n{daily_sql(state, 'ev')}\n)"]
    ctes += [f"{_q('pairs__' + c)} AS ({pairs_sql(c, 'ev')})" for c in state.distinct_columns]
    relations = {}
    for window in config.windows():
        pairs = {c: _q("pairs__" + c) for c in state.distinct_columns}
        body = window_sql(window_partials(config, window), as_of, window, "daily", pairs,
                          window_distinct(config, window))
        ctes.append(f"w_{window.tag}_rel AS (\n{body}\n)")
        relations[window.tag] = f"w_{window.tag}_rel"
    return "WITH " + ",\n".join(ctes) + "\n" + projection_sql(config, as_of, relations)

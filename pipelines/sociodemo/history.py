"""The user-history builder: the feature table as of a day, incrementally, out of core (DuckDB over Parquet).

State lives in the data root, one partition per day, each under the hash of what it holds
(:func:`~pipelines.sociodemo.schema.state_rel_dir`):

* ``daily``: per (user, day) additive partials of the day's staged events (:func:`feature_sql.daily_sql`);
* ``pairs_<column>``: the day's distinct (user, value) pairs, for distinct counts;
* ``cumulative``: per user, the partials of every day up to and including the partition's day, plus all-time
  distinct counts.

Each partition has a ``part.json`` sidecar naming what it was computed from (the staged day's SHA-256, or for
``cumulative`` a digest of every day's), written after the data, so a partition is used only if it is complete
and its inputs have not changed since (a re-validated day is re-aggregated, and cumulative state after it is
re-folded from before it).

A daily (``incremental``) run aggregates the one new staged day into its ``daily`` and ``pairs`` partitions,
folds it into yesterday's ``cumulative`` state (counting the day's never-seen-before pairs against the pair
history), and combines the few ``daily`` partitions inside each last-N-days window. A ``full`` run recomputes
every partition from the staged events and sums the cumulative state in one go. All combining is integer
(or DECIMAL) addition and min/max, so both modes, and :func:`feature_sql.feature_sql` over the raw staged
events, give exactly equal features (tested).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

from pipelines import duck
from pipelines.errors import MissingPartitionError
from pipelines.sociodemo import schema
from pipelines.sociodemo.feature_sql import (
    StatePlan,
    daily_sql,
    fold_sql,
    new_pairs_sql,
    pairs_sql,
    plan,
    projection_sql,
    window_distinct,
    window_partials,
    window_sql,
)
from pipelines.sociodemo.features import FeatureConfig, Window, load_config
from pipelines.sociodemo.validate import accepted_sources, staged_events_path
from pipelines.storage import DataRoot

log = logging.getLogger(__name__)

MODES = ("incremental", "full")


@dataclass
class FeatureBuildResult:
    """What a build wrote; :meth:`schema` is what the run registry records."""

    as_of: str
    uri: str
    rows: int
    columns: list[tuple[str, str]]
    config_hash: str
    mode: str
    seconds: float
    aggregated_days: list[str] = field(default_factory=list)
    folded_days: list[str] = field(default_factory=list)
    cumulative: str = "none"  # "reused", "folded", "rebuilt" or "none" (no all-time feature)
    state_versions: dict[str, str] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # aggregate, cumulative, features

    def schema(self) -> dict:
        return {"config_hash": self.config_hash, "as_of": self.as_of, "rows": self.rows,
                "columns": [{"name": n, "type": t} for n, t in self.columns]}

    def as_dict(self) -> dict:
        return asdict(self)


class _State:
    """Reads and writes the state partitions of one plan."""

    def __init__(self, root: DataRoot, state: StatePlan, sources: dict[date, str]) -> None:
        self.root, self.state, self.sources = root, state, sources
        self.days = list(sources)

    def rel(self, kind: str, day: date) -> str:
        version = {"daily": self.state.daily_version, "cumulative": self.state.cumulative_version}.get(kind)
        return schema.state_rel_dir(kind, version or self.state.pairs_version(kind.removeprefix("pairs_")), day)

    def path(self, kind: str, day: date) -> Path:
        rel = self.rel(kind, day)
        return self.root.local_dir(rel) / "part.parquet" if self.root.is_s3 else self.root.base / rel / "part.parquet"

    def read(self, kind: str, days: list[date]) -> str:
        return duck.read_parquet([self.path(kind, d) for d in days])

    def chain(self, day: date) -> str:
        """Digest of every accepted day's content up to ``day``: what a cumulative partition depends on."""
        items = [[d.isoformat(), s] for d, s in self.sources.items() if d <= day]
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()

    def marker(self, kind: str, day: date) -> dict:
        if kind == "cumulative":
            return {"chain": self.chain(day)}
        return {"source": self.sources[day]}

    def valid(self, kind: str, day: date) -> bool:
        rel = self.rel(kind, day)
        if not (self.root.exists(f"{rel}/part.json") and self.root.exists(f"{rel}/part.parquet")):
            return False
        return json.loads(self.root.read_bytes(f"{rel}/part.json")) == self.marker(kind, day)

    def write(self, con, kind: str, day: date, query: str) -> None:
        rel = self.rel(kind, day)
        duck.copy_to_root(con, query, self.root, f"{rel}/part.parquet")
        self.root.put_bytes(json.dumps(self.marker(kind, day)).encode(), f"{rel}/part.json")  # commit marker


def _needed_days(sources: dict[date, str], as_of: date, config: FeatureConfig, allow_gaps: bool) -> dict[date, str]:
    """The accepted days the build reads, checked for gaps (a missing day would silently shrink features)."""
    if as_of not in sources:
        raise MissingPartitionError(f"{as_of} has no accepted staged events (not validated yet, or rejected)")
    windows = config.windows()
    first = min(sources)
    if windows[0].days is not None:
        first = max(first, as_of - timedelta(days=max(w.days or 0 for w in windows) - 1))
    wanted = {d: s for d, s in sources.items() if first <= d <= as_of}
    expected = {first + timedelta(days=i) for i in range((as_of - first).days + 1)}
    missing = sorted(expected - set(wanted))
    if missing and not allow_gaps:
        shown = ", ".join(d.isoformat() for d in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise MissingPartitionError(f"features as of {as_of} need every day from {first}; {len(missing)} day(s) "
                                    f"have no accepted staged events: {shown}")
    return wanted


def _aggregate_days(con, store: _State, root: DataRoot, days: list[date], force: bool) -> list[date]:
    """Make sure every day has current ``daily`` and ``pairs`` partitions; returns the days (re)computed."""
    done = []
    kinds = ["daily"] + [f"pairs_{c}" for c in store.state.distinct_columns]
    for day in days:
        stale = [k for k in kinds if force or not store.valid(k, day)]
        if not stale:
            continue
        events = duck.read_parquet([staged_events_path(root, day)])
        for kind in stale:
            if kind == "daily":
                store.write(con, kind, day, daily_sql(store.state, events))
            else:
                store.write(con, kind, day, pairs_sql(kind.removeprefix("pairs_"), events))
        done.append(day)
    return done


def _cumulative(con, store: _State, as_of: date, mode: str) -> tuple[str, list[date]]:
    """Bring the all-time state to ``as_of``: reuse it, fold the days since the last good partition into it, or
    (full mode, or nothing to start from) sum every day's partials at once. Returns (how, folded days)."""
    state, days = store.state, store.days
    start = None
    if mode == "incremental":
        start = next((i for i in range(len(days) - 1, -1, -1) if store.valid("cumulative", days[i])), None)
    if start is None:
        pairs = {c: store.read(f"pairs_{c}", days) for c in state.cumulative_distinct}
        query = window_sql(list(state.cumulative_partials), as_of, Window(), store.read("daily", days), pairs,
                           list(state.cumulative_distinct))
        store.write(con, "cumulative", as_of, query)
        return "rebuilt", []
    if days[start] == as_of:
        return "reused", []
    folded = []
    for i in range(start + 1, len(days)):
        day = days[i]
        new_pairs = {c: f"({new_pairs_sql(store.read(f'pairs_{c}', [day]), store.read(f'pairs_{c}', days[:i]))})"
                     for c in state.cumulative_distinct}
        query = fold_sql(state, store.read("cumulative", [days[i - 1]]), store.read("daily", [day]), new_pairs)
        store.write(con, "cumulative", day, query)
        folded.append(day)
    return "folded", folded


def build_features(as_of: date, root: DataRoot | None = None, config: FeatureConfig | None = None,
                   mode: str = "incremental", *, allow_gaps: bool = False, memory_limit: str | None = None,
                   threads: int | None = None) -> FeatureBuildResult:
    """Build the user-feature table as of ``as_of`` (inclusive) from the accepted staged days.

    Writes ``sociodemo/features/as_of=<day>/version=<config hash>/features.parquet`` (one row per user with an
    event in the widest window, ``viewer_uid`` first, sorted by it) and ``schema.json`` beside it, atomically.

    Args:
        mode: ``incremental`` reuses every state partition whose inputs have not changed; ``full`` recomputes
            all of them from the staged events. Both give exactly the same table.
        allow_gaps: build even if a day inside the history has no accepted events (default: refuse).

    Raises:
        MissingPartitionError: ``as_of`` (or, unless ``allow_gaps``, an earlier day of the history) has no
            accepted staged events.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    started = time.perf_counter()
    root = root or DataRoot()
    config = config or load_config()
    state = plan(config)
    sources = _needed_days(accepted_sources(root, through=as_of), as_of, config, allow_gaps)
    store = _State(root, state, sources)
    rel_dir = schema.features_rel_dir(as_of, config.config_hash)
    with tempfile.TemporaryDirectory(prefix="sociodemo-history-") as tmp:
        con = duck.connect(Path(tmp), memory_limit, threads)
        phases = {"start": time.perf_counter()}
        aggregated = _aggregate_days(con, store, root, store.days, force=mode == "full")
        phases["aggregate"] = time.perf_counter()
        relations: dict[str, str] = {}
        how, folded = "none", []
        if state.has_all_time:
            how, folded = _cumulative(con, store, as_of, mode)
            relations["all"] = store.read("cumulative", [as_of])
        phases["cumulative"] = time.perf_counter()
        for window in config.windows():
            if window.days is None:
                continue
            days = [d for d in store.days if d > as_of - timedelta(days=window.days)]
            pairs = {c: store.read(f"pairs_{c}", days) for c in window_distinct(config, window)}
            con.execute(f"CREATE TEMP VIEW w_{window.tag}_rel AS "
                        + window_sql(window_partials(config, window), as_of, window, store.read("daily", days),
                                     pairs, window_distinct(config, window)))
            relations[window.tag] = f"w_{window.tag}_rel"
        uri = duck.copy_to_root(con, projection_sql(config, as_of, relations), root, f"{rel_dir}/features.parquet")
        written = duck.read_parquet([root.local_dir(rel_dir) / "features.parquet"])
        columns = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {written}").fetchall()]
        rows = con.execute(f"SELECT count(*) FROM {written}").fetchone()[0]
        con.close()
        phases["features"] = time.perf_counter()
    expected = [("viewer_uid", "BIGINT"), *config.columns()]
    if columns != expected:
        raise RuntimeError(f"feature table columns differ from the config's: {columns} != {expected}")
    result = FeatureBuildResult(
        as_of=as_of.isoformat(), uri=uri, rows=rows, columns=columns, config_hash=config.config_hash, mode=mode,
        seconds=round(time.perf_counter() - started, 3), aggregated_days=[d.isoformat() for d in aggregated],
        folded_days=[d.isoformat() for d in folded], cumulative=how,
        state_versions={"daily": state.daily_version, "cumulative": state.cumulative_version,
                        **{f"pairs_{c}": state.pairs_version(c) for c in state.distinct_columns}},
        phase_seconds={name: round(phases[name] - phases[prev], 3)
                       for prev, name in zip(phases, list(phases)[1:], strict=False)},
    )
    meta = {**result.schema(), "config": config.canonical(), "state_versions": result.state_versions}
    root.put_bytes(json.dumps(meta, indent=2, ensure_ascii=False).encode(), f"{rel_dir}/schema.json")
    log.info("features as of %s (%s): %d users, %d columns in %.1fs; aggregated %d day(s), cumulative %s",
             as_of, mode, rows, len(columns), result.seconds, len(aggregated), how)
    return result

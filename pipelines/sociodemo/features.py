"""The declarative user-feature config: a YAML file parsed into typed, validated dataclasses.

Every feature has a ``name``, an aggregation ``agg``, the ``windows`` it is computed over (``all`` = all time up
to the as-of day, ``last_Nd`` = the N days ending on it) and the aggregation's own parameters:

==================  =========================================================  ==================================
agg                 parameters                                                 output (per window)
==================  =========================================================  ==================================
``count``           none                                                       events (BIGINT)
``sum``             ``column`` (numeric)                                       sum (BIGINT or DOUBLE)
``mean``            ``column`` (numeric)                                       mean over non-null values (DOUBLE)
``share``           ``by``, ``values``, ``weight`` (optional), ``other``       one share per value (+ other)
``top_k``           ``by``, ``values``, ``k``, ``weight`` (optional)           k columns: the top values
``distinct_count``  ``column``                                                 distinct non-null values (BIGINT)
``hour_histogram``  ``buckets`` (24 or bucket start hours), ``utc_offset_hours``  share of events per bucket
``recency``         ``of``: ``last`` (default) or ``first``                    days from that event to as-of
==================  =========================================================  ==================================

Columns are ``<name>_<window>`` (``events_all``, ``events_7d``), with ``__<part>`` for multi-column features
(``category_share_all__sport``, ``top_category_all__1``, ``day_parts_all__06_10``). ``values`` is a list (each
value's column part is its lower-cased ASCII slug) or a mapping ``{part: value}`` (for values without a usable
slug, such as Cyrillic categories). Shares are of event counts, or of ``weight`` when given; ``other`` is the
rest (values not listed, and missing ones). ``top_k`` ranks by the same amount, highest first, ties by value;
values not listed are not ranked. A user absent from a window gets 0 for counts, sums and distinct counts and
NULL for the rest.

Adding a feature is a change to the YAML file, not to code. The config hash (the feature table's version)
changes with any semantic change and not with comments or formatting.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.sociodemo import schema

DEFAULT_CONFIG_PATH = Path(__file__).with_name("features_config.yaml")
#: Bumped when the meaning of a config changes with the code (so old feature versions are not reused).
FORMAT_VERSION = 1

AGGREGATIONS = ("count", "sum", "mean", "share", "top_k", "distinct_count", "hour_histogram", "recency")
_PARAMS: dict[str, set[str]] = {
    "count": set(),
    "sum": {"column"},
    "mean": {"column"},
    "share": {"by", "values", "weight", "other"},
    "top_k": {"by", "values", "weight", "k"},
    "distinct_count": {"column"},
    "hour_histogram": {"buckets", "utc_offset_hours"},
    "recency": {"of"},
}
_REQUIRED: dict[str, set[str]] = {"sum": {"column"}, "mean": {"column"}, "share": {"by", "values"},
                                  "top_k": {"by", "values", "k"}, "distinct_count": {"column"}}
_COMMON = {"name", "agg", "windows"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PART_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_WINDOW_RE = re.compile(r"^last_([1-9][0-9]*)d$")


class FeatureConfigError(ValueError):
    """The feature config is invalid; the message says where and why."""


@dataclass(frozen=True)
class Window:
    """All time up to the as-of day (``days=None``), or the ``days`` days ending on it."""

    days: int | None = None

    @property
    def tag(self) -> str:
        return "all" if self.days is None else f"{self.days}d"

    @property
    def spec(self) -> str:
        return "all" if self.days is None else f"last_{self.days}d"

    @classmethod
    def parse(cls, text: Any, where: str) -> Window:
        if text == "all":
            return cls(None)
        match = _WINDOW_RE.match(text) if isinstance(text, str) else None
        if not match:
            raise FeatureConfigError(f"{where}: window {text!r} is neither 'all' nor 'last_<N>d' (N >= 1)")
        return cls(int(match.group(1)))


@dataclass(frozen=True)
class Feature:
    """One declared feature (possibly several output columns per window)."""

    name: str
    agg: str
    windows: tuple[Window, ...] = (Window(),)
    column: str | None = None
    by: str | None = None
    values: tuple[tuple[str, str], ...] = ()  # (column part, value)
    weight: str | None = None
    other: bool = True
    k: int | None = None
    buckets: tuple[int, ...] = ()  # local bucket start hours
    utc_offset_hours: int = 0
    of: str = "last"

    def parts(self) -> list[tuple[str, str]]:
        """(column suffix, DuckDB type) of the output columns of one window; suffix '' for a single column."""
        if self.agg in ("count", "distinct_count"):
            return [("", "BIGINT")]
        if self.agg == "sum":
            return [("", "BIGINT" if is_integer_column(self.column) else "DOUBLE")]
        if self.agg == "mean":
            return [("", "DOUBLE")]
        if self.agg == "share":
            return [(f"__{p}", "DOUBLE") for p, _ in self.values] + ([("__other", "DOUBLE")] if self.other else [])
        if self.agg == "top_k":
            return [(f"__{i}", "VARCHAR") for i in range(1, (self.k or 0) + 1)]
        if self.agg == "hour_histogram":
            return [(f"__{start:02d}_{end:02d}", "DOUBLE") for start, end in self.bucket_ranges()]
        return [("", "INTEGER")]  # recency

    def bucket_ranges(self) -> list[tuple[int, int]]:
        ends = [*self.buckets[1:], 24]
        return list(zip(self.buckets, ends, strict=True))

    def columns(self) -> list[tuple[str, str]]:
        """(column name, DuckDB type) of every output column, windows in declared order."""
        return [(f"{self.name}_{w.tag}{suffix}", t) for w in self.windows for suffix, t in self.parts()]


@dataclass(frozen=True)
class FeatureConfig:
    """The parsed config: features in declared order."""

    features: tuple[Feature, ...]
    version: int = 1
    source: str = field(default="<dict>", compare=False)

    def columns(self) -> list[tuple[str, str]]:
        """The feature table's columns after ``viewer_uid``."""
        return [c for f in self.features for c in f.columns()]

    def windows(self) -> list[Window]:
        """Every window used, all-time first, then by length."""
        found = {w for f in self.features for w in f.windows}
        return sorted(found, key=lambda w: (w.days is not None, w.days or 0))

    def canonical(self) -> dict:
        return {"format": FORMAT_VERSION, "version": self.version,
                "features": [_canonical_feature(f) for f in self.features]}

    @property
    def config_hash(self) -> str:
        """12 hex digits identifying the config's meaning (the feature table's version)."""
        text = json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _canonical_feature(feature: Feature) -> dict:
    data = asdict(feature)
    data["windows"] = [w.spec for w in feature.windows]
    data["values"] = [list(v) for v in feature.values]
    data["buckets"] = list(feature.buckets)
    return data


def is_integer_column(column: str | None) -> bool:
    """Whether a staged event column holds integers (sums stay BIGINT; float sums go through DECIMAL)."""
    return schema.STAGED_EVENT_TYPES.get(column or "") in schema.INTEGER_TYPES


def slug(value: str) -> str:
    """Lower-case ASCII slug of a value ('Yandex Browser' → 'yandex_browser'); '' if nothing is left."""
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


# --------------------------------------------------------------------------- parsing and validation
def load_config(path: Path | str | None = None) -> FeatureConfig:
    """Read and validate a YAML feature config (default: the one shipped in the package)."""
    import yaml

    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FeatureConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_config(data, source=str(path))


def parse_config(data: Any, source: str = "<dict>") -> FeatureConfig:
    """Validate a config already loaded from YAML (a mapping with ``features``)."""
    if not isinstance(data, dict):
        raise FeatureConfigError(f"{source}: the config must be a mapping with a 'features' list")
    unknown = set(data) - {"version", "features"}
    if unknown:
        raise FeatureConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: version, features")
    version = data.get("version", 1)
    if version != 1:
        raise FeatureConfigError(f"{source}: version {version!r} is not supported (only 1)")
    items = data.get("features")
    if not isinstance(items, list) or not items:
        raise FeatureConfigError(f"{source}: 'features' must be a non-empty list")
    features = tuple(_parse_feature(item, f"{source}: features[{i}]") for i, item in enumerate(items))
    seen: dict[str, str] = {}
    for feature in features:
        for column, _ in feature.columns():
            if column in seen or column == "viewer_uid":
                raise FeatureConfigError(f"{source}: output column {column!r} of feature {feature.name!r} clashes "
                                         f"with {seen.get(column, 'the key column')!r}")
            seen[column] = feature.name
    return FeatureConfig(features=features, version=version, source=source)


def _parse_feature(item: Any, where: str) -> Feature:
    if not isinstance(item, dict):
        raise FeatureConfigError(f"{where}: each feature must be a mapping, got {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise FeatureConfigError(f"{where}: 'name' must match {_NAME_RE.pattern} (got {name!r})")
    where = f"{where} ({name})"
    agg = item.get("agg")
    if agg not in AGGREGATIONS:
        raise FeatureConfigError(f"{where}: unknown agg {agg!r}; expected one of {', '.join(AGGREGATIONS)}")
    allowed = _COMMON | _PARAMS[agg]
    unknown = set(item) - allowed
    if unknown:
        raise FeatureConfigError(f"{where}: {sorted(unknown)} not allowed for agg {agg!r}; "
                                 f"allowed: {', '.join(sorted(allowed))}")
    missing = _REQUIRED.get(agg, set()) - set(item)
    if missing:
        raise FeatureConfigError(f"{where}: agg {agg!r} needs {sorted(missing)}")
    kwargs: dict[str, Any] = {"name": name, "agg": agg, "windows": _parse_windows(item.get("windows", ["all"]), where)}
    if "column" in item:
        kwargs["column"] = _column(item["column"], where, "column", numeric=agg in ("sum", "mean"))
    if agg in ("share", "top_k"):
        kwargs["by"] = _column(item["by"], where, "by", numeric=False)
        kwargs["values"] = _parse_values(item["values"], where)
        if is_integer_column(kwargs["by"]):
            not_int = [v for _, v in kwargs["values"] if not re.fullmatch(r"-?[0-9]+", v)]
            if not_int:
                raise FeatureConfigError(f"{where}: by {kwargs['by']!r} is an integer column; values {not_int} "
                                         "are not integers")
        if item.get("weight") is not None:
            kwargs["weight"] = _column(item["weight"], where, "weight", numeric=True)
    if agg == "share":
        if not isinstance(item.get("other", True), bool):
            raise FeatureConfigError(f"{where}: 'other' must be true or false")
        kwargs["other"] = item.get("other", True)
    if agg == "top_k":
        k = item["k"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(kwargs["values"]):
            raise FeatureConfigError(f"{where}: 'k' must be an integer in 1..{len(kwargs['values'])} "
                                     f"(the number of values), got {k!r}")
        kwargs["k"] = k
    if agg == "hour_histogram":
        kwargs["buckets"] = _parse_buckets(item.get("buckets", 24), where)
        offset = item.get("utc_offset_hours", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or not -12 <= offset <= 14:
            raise FeatureConfigError(f"{where}: 'utc_offset_hours' must be an integer in -12..14, got {offset!r}")
        kwargs["utc_offset_hours"] = offset
    if agg == "recency":
        of = item.get("of", "last")
        if of not in ("last", "first"):
            raise FeatureConfigError(f"{where}: 'of' must be 'last' or 'first', got {of!r}")
        kwargs["of"] = of
    return Feature(**kwargs)


def _parse_windows(windows: Any, where: str) -> tuple[Window, ...]:
    if isinstance(windows, str):
        windows = [windows]
    if not isinstance(windows, list) or not windows:
        raise FeatureConfigError(f"{where}: 'windows' must be a non-empty list like [all, last_7d]")
    parsed = tuple(Window.parse(w, where) for w in windows)
    if len(set(parsed)) != len(parsed):
        raise FeatureConfigError(f"{where}: duplicate window in {windows}")
    return parsed


def _column(column: Any, where: str, key: str, numeric: bool) -> str:
    if column not in schema.STAGED_EVENT_TYPES or column == "viewer_uid":
        known = ", ".join(c for c in schema.STAGED_EVENT_TYPES if c != "viewer_uid")
        raise FeatureConfigError(f"{where}: {key} {column!r} is not a staged event column; known: {known}")
    if numeric and schema.STAGED_EVENT_TYPES[column] not in schema.NUMERIC_TYPES:
        raise FeatureConfigError(f"{where}: {key} {column!r} must be numeric "
                                 f"(it is {schema.STAGED_EVENT_TYPES[column]})")
    return column


def _parse_values(values: Any, where: str) -> tuple[tuple[str, str], ...]:
    if isinstance(values, list):
        pairs = []
        for v in values:
            if not isinstance(v, str | int) or isinstance(v, bool):
                raise FeatureConfigError(f"{where}: value {v!r} must be a string or an integer")
            if not slug(str(v)):
                raise FeatureConfigError(f"{where}: value {v!r} has no ASCII slug for its column name; give "
                                         "'values' as a mapping {column_part: value}")
            pairs.append((slug(str(v)), str(v)))
    elif isinstance(values, dict):
        pairs = [(str(p), str(v)) for p, v in values.items()]
    else:
        raise FeatureConfigError(f"{where}: 'values' must be a list or a mapping {{column_part: value}}")
    if not pairs:
        raise FeatureConfigError(f"{where}: 'values' is empty")
    parts = [p for p, _ in pairs]
    bad = [p for p in parts if not _PART_RE.match(p) or p == "other"]
    if bad:
        raise FeatureConfigError(f"{where}: column part(s) {bad} must match {_PART_RE.pattern} and not be 'other'")
    for label, items in (("column part", parts), ("value", [v for _, v in pairs])):
        dupes = sorted({x for x in items if items.count(x) > 1})
        if dupes:
            raise FeatureConfigError(f"{where}: duplicate {label}(s) {dupes}")
    return tuple(pairs)


def _parse_buckets(buckets: Any, where: str) -> tuple[int, ...]:
    if buckets == 24:
        return tuple(range(24))
    ok = (isinstance(buckets, list) and buckets and all(isinstance(b, int) and not isinstance(b, bool)
                                                         for b in buckets))
    if not ok or buckets[0] != 0 or any(b >= a for a, b in zip(buckets[1:], buckets, strict=False)) \
            or buckets[-1] > 23:
        raise FeatureConfigError(f"{where}: 'buckets' must be 24 or increasing start hours from 0, each in 0..23 "
                                 f"(e.g. [0, 6, 12, 18]), got {buckets!r}")
    return tuple(buckets)

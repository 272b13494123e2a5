"""The feature config (validation errors, hashing) and the SQL emitted from it, on hand-built events with
hand-computed values for every aggregation and both kinds of window."""

import math
from datetime import date

import duckdb
import pytest

from pipelines.sociodemo.feature_sql import feature_sql, plan
from pipelines.sociodemo.features import FeatureConfigError, load_config, parse_config

AS_OF = date(2024, 6, 10)

# fmt: off
# user, UTC time, video, category, author, watch seconds, watch fraction
EVENTS = [
    (1, "2024-06-01 10:30:00", "v1", "A", 1, 100, 0.5),   # 13:30 Moscow time
    (1, "2024-06-09 22:15:00", "v2", "B", 2, 300, 1.0),   # 01:15 Moscow, next day
    (1, "2024-06-10 23:59:59", "v1", "A", 1, 50, 0.25),   # last second of the as-of day
    (1, "2024-06-11 10:00:00", "v3", "B", 3, 1000, 0.9),  # after the as-of day: ignored
    (2, "2024-06-05 02:00:00", "v3", "C", 3, 0, 0.0),
    (2, "2024-06-05 02:30:00", "v3", "C", 3, 60, None),   # a zero-length video: no watch fraction
    (3, "2024-06-12 12:00:00", "v1", "A", 1, 10, 0.1),    # only after the as-of day: no row
]
# fmt: on

CONFIG = {
    "version": 1,
    "features": [
        {"name": "n", "agg": "count", "windows": ["all", "last_2d"]},
        {"name": "wt", "agg": "sum", "column": "total_watchtime", "windows": ["all", "last_2d"]},
        {"name": "wt_mean", "agg": "mean", "column": "total_watchtime"},
        {"name": "wf_mean", "agg": "mean", "column": "watch_fraction", "windows": ["all", "last_2d"]},
        {"name": "wf_sum", "agg": "sum", "column": "watch_fraction"},
        {"name": "cat_wt", "agg": "share", "by": "category", "values": ["A", "B"], "weight": "total_watchtime",
         "windows": ["all", "last_2d"]},
        {"name": "cat_n", "agg": "share", "by": "category", "values": ["A", "B"], "other": False},
        {"name": "top", "agg": "top_k", "by": "category", "values": {"a": "A", "b": "B", "c": "C"}, "k": 2,
         "windows": ["all", "last_2d"]},
        {"name": "top_wt", "agg": "top_k", "by": "category", "values": ["A", "B", "C"], "k": 1,
         "weight": "total_watchtime"},
        {"name": "top_author", "agg": "top_k", "by": "author_id", "values": [1, 2, 3], "k": 1},
        {"name": "videos", "agg": "distinct_count", "column": "rutube_video_id", "windows": ["all", "last_2d"]},
        {"name": "authors", "agg": "distinct_count", "column": "author_id"},
        {"name": "halves", "agg": "hour_histogram", "buckets": [0, 12], "utc_offset_hours": 3,
         "windows": ["all", "last_2d"]},
        {"name": "hours", "agg": "hour_histogram"},
        {"name": "last", "agg": "recency", "windows": ["all", "last_2d"]},
        {"name": "first", "agg": "recency", "of": "first", "windows": ["all", "last_2d"]},
    ],
}

# fmt: off
EXPECTED = {
    1: {"n_all": 3, "n_2d": 2, "wt_all": 450, "wt_2d": 350, "wt_mean_all": 150.0,
        "wf_mean_all": 1.75 / 3, "wf_mean_2d": 0.625, "wf_sum_all": 1.75,
        "cat_wt_all__a": 150 / 450, "cat_wt_all__b": 300 / 450, "cat_wt_all__other": 0.0,
        "cat_wt_2d__a": 50 / 350, "cat_wt_2d__b": 300 / 350, "cat_wt_2d__other": 0.0,
        "cat_n_all__a": 2 / 3, "cat_n_all__b": 1 / 3,
        "top_all__1": "A", "top_all__2": "B",
        "top_2d__1": "A", "top_2d__2": "B",           # a tie (one event each): broken by value
        "top_wt_all__1": "B", "top_author_all__1": "1",
        "videos_all": 2, "videos_2d": 2, "authors_all": 2,
        "halves_all__00_12": 2 / 3, "halves_all__12_24": 1 / 3,   # local hours 13, 01, 02
        "halves_2d__00_12": 1.0, "halves_2d__12_24": 0.0,
        "last_all": 0, "last_2d": 0, "first_all": 9, "first_2d": 1},
    2: {"n_all": 2, "n_2d": 0, "wt_all": 60, "wt_2d": 0, "wt_mean_all": 30.0,
        "wf_mean_all": 0.0, "wf_mean_2d": None, "wf_sum_all": 0.0,
        "cat_wt_all__a": 0.0, "cat_wt_all__b": 0.0, "cat_wt_all__other": 1.0,
        "cat_wt_2d__a": None, "cat_wt_2d__b": None, "cat_wt_2d__other": None,
        "cat_n_all__a": 0.0, "cat_n_all__b": 0.0,
        "top_all__1": "C", "top_all__2": None, "top_2d__1": None, "top_2d__2": None,
        "top_wt_all__1": "C", "top_author_all__1": "3",
        "videos_all": 1, "videos_2d": 0, "authors_all": 1,
        "halves_all__00_12": 1.0, "halves_all__12_24": 0.0, "halves_2d__00_12": None, "halves_2d__12_24": None,
        "last_all": 5, "last_2d": None, "first_all": 5, "first_2d": None},
}
# fmt: on


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TABLE events (viewer_uid BIGINT, event_timestamp TIMESTAMPTZ, rutube_video_id VARCHAR,
                   category VARCHAR, author_id BIGINT, total_watchtime BIGINT, watch_fraction DOUBLE)""")
    con.executemany("INSERT INTO events VALUES (?, CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?)", EVENTS)
    yield con
    con.close()


def _rows(con, sql: str) -> dict[int, dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_every_aggregation_and_window_on_hand_computed_events(con):
    config = parse_config(CONFIG)
    rows = _rows(con, feature_sql(config, AS_OF))
    assert sorted(rows) == [1, 2]  # user 3 has no event up to the as-of day
    for uid, expected in EXPECTED.items():
        for column, value in expected.items():
            got = rows[uid][column]
            if isinstance(value, float):
                assert got == pytest.approx(value, abs=1e-12), (uid, column)
            else:
                assert got == value, (uid, column)
    hours = [rows[1][f"hours_all__{h:02d}_{h + 1:02d}"] for h in range(24)]
    assert hours[10] == hours[22] == hours[23] == pytest.approx(1 / 3) and math.isclose(sum(hours), 1.0)


def test_output_columns_and_types_follow_the_config(con):
    config = parse_config(CONFIG)
    cursor = con.execute(f"DESCRIBE {feature_sql(config, AS_OF)}")
    described = [(r[0], r[1]) for r in cursor.fetchall()]
    assert described == [("viewer_uid", "BIGINT"), *config.columns()]
    types = dict(described)
    assert types["n_all"] == "BIGINT" and types["wt_all"] == "BIGINT" and types["wf_sum_all"] == "DOUBLE"
    assert types["top_all__1"] == "VARCHAR" and types["last_all"] == "INTEGER"


def test_only_windowed_features_keep_users_of_the_widest_window(con):
    config = parse_config({"features": [
        {"name": "n", "agg": "count", "windows": ["last_2d", "last_6d"]},
        {"name": "videos", "agg": "distinct_count", "column": "rutube_video_id", "windows": ["last_6d"]},
    ]})
    rows = _rows(con, feature_sql(config, AS_OF))
    assert rows == {1: {"viewer_uid": 1, "n_2d": 2, "n_6d": 2, "videos_6d": 2},
                    2: {"viewer_uid": 2, "n_2d": 0, "n_6d": 2, "videos_6d": 1}}
    # As of 06-04, user 2's events (06-05) are in the future and user 1 has one event in the 6 days.
    assert _rows(con, feature_sql(config, date(2024, 6, 4))) == {1: {"viewer_uid": 1, "n_2d": 0, "n_6d": 1,
                                                                     "videos_6d": 1}}
    assert _rows(con, feature_sql(config, date(2024, 5, 31))) == {}


def test_the_as_of_day_moves_the_windows(con):
    config = parse_config(CONFIG)
    rows = _rows(con, feature_sql(config, date(2024, 6, 5)))
    assert rows[1]["n_all"] == 1 and rows[1]["n_2d"] == 0 and rows[1]["last_all"] == 4
    assert rows[2]["n_2d"] == 2 and rows[2]["halves_2d__00_12"] == 1.0
    rows = _rows(con, feature_sql(config, date(2024, 6, 12)))
    assert rows[1]["n_all"] == 4 and rows[1]["n_2d"] == 1 and rows[1]["wt_2d"] == 1000
    assert rows[3]["n_all"] == 1 and rows[1]["last_all"] == 1


def test_shipped_config_is_valid_and_its_hash_ignores_formatting():
    config = load_config()
    names = [c for c, _ in config.columns()]
    assert len(names) == len(set(names)) > 100
    assert "category_share_all__sport" in names and "top_category_all__3" in names and "day_parts_7d__22_24" in names
    reordered = {"features": [{k: f[k] for k in reversed(list(f))} for f in CONFIG["features"]], "version": 1}
    assert parse_config(CONFIG).config_hash == parse_config(reordered).config_hash
    changed = {**CONFIG, "features": [*CONFIG["features"][:-1], {**CONFIG["features"][-1], "windows": ["all"]}]}
    assert parse_config(changed).config_hash != parse_config(CONFIG).config_hash
    # Partials are shared between features and windows: one per listed value, not one per feature.
    assert len(plan(config).partials) < len(config.columns())


@pytest.mark.parametrize(("feature", "message"), [
    ({"name": "x", "agg": "median", "column": "total_watchtime"}, r"unknown agg 'median'; expected one of count"),
    ({"name": "x", "agg": "sum"}, r"agg 'sum' needs \['column'\]"),
    ({"name": "x", "agg": "sum", "column": "region"}, r"column 'region' must be numeric \(it is VARCHAR\)"),
    ({"name": "x", "agg": "mean", "column": "watch_time"}, r"column 'watch_time' is not a staged event column"),
    ({"name": "x", "agg": "count", "column": "region"}, r"\['column'\] not allowed for agg 'count'"),
    ({"name": "x", "agg": "count", "windows": ["last_week"]}, r"window 'last_week' is neither 'all' nor 'last_<N>d'"),
    ({"name": "x", "agg": "count", "windows": ["last_0d"]}, r"window 'last_0d'"),
    ({"name": "x", "agg": "count", "windows": ["all", "all"]}, r"duplicate window"),
    ({"name": "X-1", "agg": "count"}, r"'name' must match"),
    ({"name": "x", "agg": "share", "by": "category", "values": ["Юмор"]}, r"value 'Юмор' has no ASCII slug"),
    ({"name": "x", "agg": "share", "by": "category", "values": []}, r"'values' is empty"),
    ({"name": "x", "agg": "share", "by": "category", "values": {"a": "A", "b": "A"}}, r"duplicate value\(s\) \['A'\]"),
    ({"name": "x", "agg": "share", "by": "category", "values": {"other": "A"}}, r"not be 'other'"),
    ({"name": "x", "agg": "share", "by": "category", "values": ["A"], "weight": "category"}, r"weight 'category' must"),
    ({"name": "x", "agg": "top_k", "by": "category", "values": ["A", "B"], "k": 3}, r"'k' must be an integer in 1..2"),
    ({"name": "x", "agg": "top_k", "by": "author_id", "values": ["a1"], "k": 1}, r"values \['a1'\] are not integers"),
    ({"name": "x", "agg": "hour_histogram", "buckets": [6, 12]}, r"'buckets' must be 24 or increasing start hours"),
    ({"name": "x", "agg": "hour_histogram", "buckets": [0, 12, 12]}, r"'buckets' must be"),
    ({"name": "x", "agg": "hour_histogram", "utc_offset_hours": 30}, r"'utc_offset_hours' must be an integer"),
    ({"name": "x", "agg": "recency", "of": "middle"}, r"'of' must be 'last' or 'first'"),
    ({"name": "x", "agg": "distinct_count", "column": "viewer_uid"}, r"column 'viewer_uid' is not a staged event"),
])
def test_invalid_features_are_rejected_with_a_clear_message(feature, message):
    with pytest.raises(FeatureConfigError, match=message):
        parse_config({"features": [feature]}, source="cfg.yaml")


@pytest.mark.parametrize(("config", "message"), [
    ([], r"the config must be a mapping"),
    ({"features": []}, r"'features' must be a non-empty list"),
    ({"features": [{"name": "x", "agg": "count"}], "extra": 1}, r"unknown top-level key\(s\) \['extra'\]"),
    ({"version": 2, "features": [{"name": "x", "agg": "count"}]}, r"version 2 is not supported"),
    ({"features": [{"name": "x", "agg": "count"}, {"name": "x", "agg": "count"}]},
     r"output column 'x_all' of feature 'x' clashes with 'x'"),
    ({"features": [{"name": "a", "agg": "share", "by": "category", "values": {"all": "B"}},
                   {"name": "a_all_", "agg": "count"}]}, r"output column 'a_all__all' of feature 'a_all_' clashes"),
])
def test_invalid_configs_are_rejected(config, message):
    with pytest.raises(FeatureConfigError, match=message):
        parse_config(config)


def test_errors_name_the_file_and_the_feature(tmp_path):
    path = tmp_path / "features.yaml"
    path.write_text("features:\n  - name: good\n    agg: count\n  - name: bad\n    agg: sum\n    column: region\n")
    with pytest.raises(FeatureConfigError, match=rf"{path}: features\[1\] \(bad\): column 'region' must be numeric"):
        load_config(path)
    path.write_text("features: [unclosed\n")
    with pytest.raises(FeatureConfigError, match="not valid YAML"):
        load_config(path)

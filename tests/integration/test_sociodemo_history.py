"""Validation and the user-history builder end to end on generated data in a temporary data root.

Checked: quarantine counts equal the planted ones per reason; incremental day-by-day builds, a full rebuild and
the one-statement reference SQL give exactly equal tables; windows roll (against an independent count); a
re-validated day is re-aggregated and re-folded; missing days fail clearly; a bad day is rejected. Validation
runs under the ingest contract, so these tests use a real PostgreSQL (``pg_dsn``)."""

import json
from collections import Counter
from datetime import date, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import ingest
from pipelines.errors import MissingPartitionError, RunRejected
from pipelines.sociodemo import schema
from pipelines.sociodemo.feature_sql import feature_sql
from pipelines.sociodemo.features import load_config, parse_config
from pipelines.sociodemo.generate import SociodemoSpec, write_dataset
from pipelines.sociodemo.history import build_features
from pipelines.sociodemo.user_sets import build_user_sets
from pipelines.sociodemo.validate import (
    accepted_days,
    staged_events_path,
    staged_targets_path,
    validate_day,
    validate_targets,
)
from pipelines.storage import DataRoot

SPEC = SociodemoSpec(seed=3, n_users=800, n_videos=1_500, n_authors=120, start=date(2024, 6, 1), days=9,
                     bad_row_rate=0.02, bad_target_rate=0.04, chunk_users=300)


def _connect():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _table(uri: str) -> pa.Table:
    """A written table with every field nullable: whether DuckDB marks a column required depends on whether it
    came through a state file, which is not part of the contract (values and types are)."""
    return _nullable(pq.read_table(uri))


def _nullable(table: pa.Table) -> pa.Table:
    return table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))


def _staged(root) -> str:
    """Every accepted day's staged events (what readers may use)."""
    paths = [str(staged_events_path(DataRoot(), d)) for d in accepted_days(DataRoot())]
    return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "], hive_partitioning = false)"


def _reference(root, as_of: date, config=None):
    """The feature table computed in one statement straight from every staged event (no state), written the
    same way as the builder's (so the comparison is of values and types, not of writers)."""
    con = _connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM {_staged(root)}")
    path = root.parent / f"reference-{as_of}.parquet"
    con.execute(f"COPY ({feature_sql(config or load_config(), as_of)}) TO '{path}' (FORMAT parquet)")
    con.close()
    return _nullable(pq.read_table(path))


@pytest.fixture
def dataset(pg_dsn, data_root):
    counts = write_dataset(SPEC, data_root)
    return data_root, counts


@pytest.fixture
def validated(dataset):
    root, counts = dataset
    results = [validate_day(day, DataRoot()) for day in SPEC.dates()]
    return root, counts, results


def test_quarantine_counts_equal_the_planted_counts(validated):
    root, counts, results = validated
    found = Counter()
    for result in results:
        found.update(result.reasons)
        staged = ingest.accepted_dir("sociodemo", result.partition)
        quarantine = Counter(pq.read_table(staged / "quarantine.parquet")["reason"].to_pylist())
        assert quarantine == Counter(result.reasons)
        summary = json.loads((staged / "summary.json").read_text())
        assert summary["status"] == "accepted" and summary["rows_valid"] == result.rows_valid
    assert dict(found) == counts["bad_rows"]
    assert sum(r.rows_valid for r in results) == counts["events"]
    assert sum(r.rows_read for r in results) == counts["rows"]
    staged = _connect().execute(f"SELECT count(*), count(DISTINCT (viewer_uid, rutube_video_id, event_timestamp)), "
                                f"bool_and(category IS NOT NULL) FROM {_staged(root)}").fetchone()
    assert staged == (counts["events"], counts["events"], True)


def test_targets_reject_impossible_rows_and_count_users_without_events(validated):
    _, counts, _ = validated
    result = validate_targets(DataRoot(), max_bad_share=0.2)
    assert {r: n for r, n in result.reasons.items() if r != "no_events"} == counts["bad_targets"]
    assert result.rows_valid == counts["labelled_users"]
    assert result.extra["users_without_events"] == counts["labelled_users_without_events"] > 0
    staged = pq.read_table(staged_targets_path()).to_pydict()
    assert len(staged["viewer_uid"]) == len(set(staged["viewer_uid"])) == result.rows_valid
    assert set(staged["sex"]) == {"male", "female"}
    assert all(schema.age_class_of(a) == c for a, c in zip(staged["age"], staged["age_class"], strict=True))
    assert sum(not h for h in staged["has_events"]) == result.extra["users_without_events"]
    with pytest.raises(RunRejected, match=r"targets: .* rows are bad"):
        validate_targets(DataRoot(), max_bad_share=0.01)


def test_incremental_days_equal_a_full_rebuild_and_the_reference(validated):
    root, _, _ = validated
    runs = [build_features(day, DataRoot()) for day in SPEC.dates()]
    assert runs[0].cumulative == "rebuilt"
    for day, run in zip(SPEC.dates()[1:], runs[1:], strict=True):
        assert run.aggregated_days == [day.isoformat()] and run.folded_days == [day.isoformat()]
    mid = SPEC.start + timedelta(days=4)
    assert _table(runs[4].uri).equals(_reference(root, mid))  # the earlier as-of days stay right
    incremental = _table(runs[-1].uri)
    full = build_features(SPEC.end, DataRoot(), mode="full")
    assert full.uri == runs[-1].uri and full.cumulative == "rebuilt"
    assert len(full.aggregated_days) == SPEC.days
    assert _table(full.uri).equals(incremental)
    assert incremental.equals(_reference(root, SPEC.end))
    # A rerun of the same day reuses everything and writes the same table.
    again = build_features(SPEC.end, DataRoot())
    assert again.aggregated_days == [] and again.cumulative == "reused"
    assert _table(again.uri).equals(incremental)
    # What the run registry records.
    assert again.schema()["config_hash"] == load_config().config_hash
    assert again.schema()["columns"][0] == {"name": "viewer_uid", "type": "BIGINT"}
    meta = json.loads((root / schema.features_rel_dir(SPEC.end, again.config_hash) / "schema.json").read_text())
    assert meta["rows"] == again.rows == incremental.num_rows
    assert [c["name"] for c in meta["columns"]] == incremental.column_names


def test_windows_roll_against_an_independent_count(validated):
    root, _, _ = validated
    con = _connect()
    for as_of in (SPEC.start + timedelta(days=2), SPEC.end):
        table = _table(build_features(as_of, DataRoot()).uri).to_pydict()
        expected = dict(con.execute(f"""
            SELECT viewer_uid, {{'all': count(*), '7d': count(*) FILTER (WHERE event_date > DATE '{as_of}' - 7),
                                 'wt7': sum(total_watchtime) FILTER (WHERE event_date > DATE '{as_of}' - 7),
                                 'videos': count(DISTINCT rutube_video_id),
                                 'last': DATE '{as_of}' - max(event_date)}}
            FROM {_staged(root)} WHERE event_date <= DATE '{as_of}' GROUP BY viewer_uid""").fetchall())
        assert table["viewer_uid"] == sorted(expected)
        for i, uid in enumerate(table["viewer_uid"]):
            e = expected[uid]
            got = (table["events_all"][i], table["events_7d"][i], table["watchtime_7d"][i], table["videos_all"][i],
                   table["days_since_last_all"][i])
            assert got == (e["all"], e["7d"], e["wt7"] or 0, e["videos"], e["last"]), uid


def test_a_revalidated_day_is_reaggregated_and_refolded(validated):
    root, _, _ = validated
    for day in SPEC.dates():
        build_features(day, DataRoot())
    # The day-3 drop is replaced by a smaller one (half the rows), and validated again.
    day3 = SPEC.start + timedelta(days=2)
    raw = root / schema.raw_events_rel_dir(day3)
    for path in raw.glob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.slice(0, table.num_rows // 2), path)
    validate_day(day3, DataRoot())
    run = build_features(SPEC.end, DataRoot())
    assert run.aggregated_days == [day3.isoformat()]
    assert run.folded_days == [d.isoformat() for d in SPEC.dates()[2:]]
    assert _table(run.uri).equals(_reference(root, SPEC.end))


def test_a_config_change_gets_its_own_version_and_state(validated):
    root, _, _ = validated
    config = parse_config({"features": [
        {"name": "n", "agg": "count", "windows": ["all", "last_3d"]},
        {"name": "authors", "agg": "distinct_count", "column": "author_id", "windows": ["last_3d"]},
    ]})
    for day in SPEC.dates():
        run = build_features(day, DataRoot(), config=config)
    default = build_features(SPEC.end, DataRoot())
    assert run.config_hash != default.config_hash and run.uri != default.uri
    assert run.columns == [("viewer_uid", "BIGINT"), ("n_all", "BIGINT"), ("n_3d", "BIGINT"), ("authors_3d", "BIGINT")]
    assert run.state_versions["daily"] != default.state_versions["daily"]
    assert _table(run.uri).equals(_reference(root, SPEC.end, config))


def test_missing_days_fail_clearly(dataset, data_root):
    with pytest.raises(MissingPartitionError, match="no events drop for 2024-07-01"):
        validate_day(date(2024, 7, 1), DataRoot())
    with pytest.raises(MissingPartitionError, match="2024-06-01 has no accepted staged events"):
        build_features(SPEC.start, DataRoot())
    for day in SPEC.dates():
        if day != SPEC.start + timedelta(days=1):
            validate_day(day, DataRoot())
    with pytest.raises(MissingPartitionError, match=r"need every day from 2024-06-01; 1 day\(s\) .*: 2024-06-02"):
        build_features(SPEC.end, DataRoot())
    run = build_features(SPEC.end, DataRoot(), allow_gaps=True)
    assert len(run.aggregated_days) == SPEC.days - 1


def test_a_day_past_the_threshold_is_rejected_and_not_used(pg_dsn, data_root):
    spec = SociodemoSpec(seed=4, n_users=300, n_videos=500, days=2, start=date(2024, 6, 1), bad_row_rate=0.15)
    counts = write_dataset(spec, data_root)
    with pytest.raises(RunRejected, match=r"rows are bad \(.*% > threshold 5.00%\)"):
        validate_day(spec.start, DataRoot(), max_bad_share=0.05)
    status = ingest.partition_status("sociodemo", spec.start.isoformat())
    assert status["status"] == "rejected" and status["rows_quarantined"] > 0
    assert accepted_days(DataRoot()) == []  # a rejected day is never read downstream
    with pytest.raises(MissingPartitionError):
        build_features(spec.start, DataRoot())
    # A looser threshold accepts it; a stricter rerun is then rejected but the accepted run stays what readers
    # see, with the quarantine that belongs to it.
    first = validate_day(spec.start, DataRoot(), max_bad_share=0.2)
    assert first.status == "accepted" and accepted_days(DataRoot()) == [spec.start]
    with pytest.raises(RunRejected):
        validate_day(spec.start, DataRoot(), max_bad_share=0.05)
    status = ingest.partition_status("sociodemo", spec.start.isoformat())
    assert status["status"] == "accepted" and str(status["run_id"]) == first.run_id
    assert status["last_status"] == "rejected"
    staged = ingest.accepted_dir("sociodemo", spec.start.isoformat())
    assert pq.read_table(staged / "quarantine.parquet").num_rows == status["rows_quarantined"]
    assert counts["bad_rows"]


def test_user_sets_hold_each_users_top_videos(validated, monkeypatch):
    root, _, _ = validated
    uri = build_user_sets(SPEC.end, DataRoot(), max_items=3)
    one_pass = pq.read_table(uri)
    monkeypatch.setattr("pipelines.sociodemo.user_sets.EVENTS_PER_RANGE", 1_000)  # ~11 viewer_uid ranges
    assert build_user_sets(SPEC.end, DataRoot(), max_items=3) == uri
    assert pq.read_table(uri).equals(one_pass)
    sets = one_pass.to_pydict()
    vocab = pq.read_table(uri.replace("user_sets.parquet", "videos.parquet")).to_pydict()
    video_of = dict(zip(vocab["video_idx"], vocab["rutube_video_id"], strict=True))
    assert vocab["video_idx"] == list(range(SPEC.n_videos))
    con = _connect()
    per_video = con.execute(f"""SELECT viewer_uid, rutube_video_id, sum(total_watchtime), count(*)
                                FROM {_staged(root)} GROUP BY ALL""").fetchall()
    truth: dict[int, dict[str, tuple[int, int]]] = {}
    for uid, video, watch, views in per_video:
        truth.setdefault(uid, {})[video] = (watch, views)
    assert sets["viewer_uid"] == sorted(truth)
    for i, uid in enumerate(sets["viewer_uid"]):
        videos = truth[uid]
        ranked = sorted(videos, key=lambda v: (-videos[v][0], v))  # ids sort like indices (same width)
        assert [video_of[v] for v in sets["video_idx"][i]] == ranked[:3]
        assert sets["n_videos"][i] == len(videos)
        total = sum(w for w, _ in videos.values())
        assert sets["views"][i] == [videos[v][1] for v in ranked[:3]]
        if total:
            assert np.allclose(sets["watch_share"][i], [videos[v][0] / total for v in ranked[:3]])
        assert all(f <= last for f, last in zip(sets["first_ts"][i], sets["last_ts"][i], strict=True))

"""The socio-demographic generator: determinism, the contest's exact formats, imbalance, planted signal, and an
oracle that is calibrated (so it really is the Bayes posterior) and beats the prior without being perfect."""

from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.sociodemo import schema
from pipelines.sociodemo.generate import (
    SociodemoSpec,
    _chunk_events,
    oracle_probabilities,
    prior,
    truth,
    user_ids,
    user_index,
    write_dataset,
)

SPEC = SociodemoSpec(seed=11, n_users=1_500, n_videos=2_000, n_authors=150, start=date(2024, 3, 1), days=4,
                     bad_row_rate=0.02, bad_target_rate=0.03, chunk_users=600)
# Large enough for group statistics, cheap enough for a unit test (no files written).
STATS = SociodemoSpec(seed=5, n_users=30_000, n_videos=5_000, days=7)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("sociodemo")
    return root, write_dataset(SPEC, root)


def _one(sql: str) -> tuple:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def _events(root) -> str:
    return f"read_parquet('{root}/sociodemo/raw/events/*/*.parquet', hive_partitioning = false)"


def test_output_is_deterministic_and_seeded(tmp_path, written):
    root, counts = written
    again = write_dataset(SPEC, tmp_path)
    assert again == counts
    for rel in ("sociodemo/raw/events/dt=2024-03-02/part-00001.parquet", schema.VIDEO_INFO_REL, schema.TARGETS_REL):
        assert pq.read_table(root / rel).equals(pq.read_table(tmp_path / rel)), rel
    a = _chunk_events(SPEC, 1, 0)
    b = _chunk_events(SociodemoSpec(**{**SPEC.__dict__, "seed": 12}), 1, 0)
    assert not np.array_equal(a.ts_ms[:50], b.ts_ms[:50])


def test_files_have_the_contest_columns_and_types(written):
    root, counts = written
    events = sorted((root / "sociodemo/raw/events").glob("dt=*/*.parquet"))
    assert len(events) == SPEC.days * 3 == counts["files"]  # 1500 users in chunks of 600
    expected = pa.schema([
        ("event_timestamp", pa.timestamp("ms", tz="UTC")), ("region", pa.string()), ("ua_device_type", pa.string()),
        ("ua_client_type", pa.string()), ("ua_os", pa.string()), ("ua_client_name", pa.string()),
        ("total_watchtime", pa.int64()), ("rutube_video_id", pa.string()), ("viewer_uid", pa.int64()),
    ])
    for path in events:
        assert pq.read_schema(path).remove_metadata() == expected, path
    assert pq.read_schema(root / schema.VIDEO_INFO_REL).remove_metadata() == pa.schema([
        ("rutube_video_id", pa.string()), ("title", pa.string()), ("category", pa.string()),
        ("duration", pa.int64()), ("author_id", pa.int64())])
    assert pq.read_schema(root / schema.TARGETS_REL).remove_metadata() == pa.schema([
        ("viewer_uid", pa.int64()), ("age", pa.int32()), ("sex", pa.string()), ("age_class", pa.int32())])
    # Values look like the contest's: known device types, client types, ids, durations in ms, Russian regions.
    row = _one(f"""SELECT list(DISTINCT ua_device_type ORDER BY ua_device_type),
                                list(DISTINCT ua_client_type ORDER BY ua_client_type),
                                bool_and(rutube_video_id LIKE 'video_%'), count(DISTINCT region)
                         FROM {_events(root)}""")
    assert row[0] == ["desktop", "smartphone", "tablet", "tv"]
    assert row[1] == ["browser", "mobile app"]
    assert row[2] and row[3] > 15
    duration_s = _one(f"SELECT median(duration) / 1000 FROM '{root / schema.VIDEO_INFO_REL}'")[0]
    assert 60 < duration_s < 3600


def test_clean_events_fall_in_their_day_and_bad_rows_are_counted(written):
    root, counts = written
    planted = sum(counts["bad_rows"].values())
    assert counts["rows"] == counts["events"] + planted
    assert set(counts["bad_rows"]) == set(schema.PLANTED_EVENT_REASONS)
    assert abs(planted - SPEC.bad_row_rate * counts["events"]) < 10
    outside = _one(f"""SELECT count(*) FROM read_parquet('{root}/sociodemo/raw/events/*/*.parquet',
                                   hive_partitioning = true)
                        WHERE CAST(event_timestamp AS DATE) <> CAST(dt AS DATE)""")[0]
    assert outside == counts["bad_rows"]["outside_day"]
    assert set(counts["bad_targets"]) <= set(schema.PLANTED_TARGET_REASONS) and counts["bad_targets"]


def test_age_classes_are_imbalanced_and_ages_match_classes():
    male, cls, age = truth(STATS, user_ids(np.arange(STATS.n_users)))
    shares = np.bincount(cls, minlength=4) / cls.size
    assert 0.35 <= shares.max() <= 0.40 and shares.argmax() == 3
    assert shares.min() > 0.15
    assert 0.5 < male.mean() < 0.6
    expected = np.array([schema.age_class_of(int(a)) for a in age])
    assert np.array_equal(expected, cls)


def test_planted_signal_category_device_and_hour_differ_by_group():
    """Category, device and hour-of-day preferences differ by sex and age class (the learnable signal)."""
    male, cls, _ = truth(STATS, user_ids(np.arange(STATS.n_users)))
    from pipelines.sociodemo.generate import CATEGORIES, PROFILES

    cat_names = [c[0] for c in CATEGORIES]
    events = [_chunk_events(STATS, d, 0) for d in range(STATS.days)]
    user = np.concatenate([e.user for e in events])
    category = np.concatenate([e.category for e in events])
    hour = np.concatenate([e.hour_local for e in events])
    device = np.array([p[0] for p in PROFILES])[np.concatenate([e.profile for e in events])]

    def share(mask: np.ndarray, hit: np.ndarray) -> float:
        return hit[mask].mean()

    is_male, age = male[user], cls[user]
    for name in ("Спорт", "Авто-мото", "Видеоигры"):
        hit = category == cat_names.index(name)
        assert share(is_male, hit) > 1.8 * share(~is_male, hit), name
    beauty = category == cat_names.index("Красота")
    assert share(~is_male, beauty) > 3 * share(is_male, beauty)
    anime, news = category == cat_names.index("Аниме"), category == cat_names.index("Новости и СМИ")
    assert share(age == 0, anime) > 3 * share(age == 3, anime)
    assert share(age == 3, news) > 2 * share(age == 0, news)
    late = np.isin(hour, [23, 0, 1, 2, 3])
    assert share(age == 0, late) > 1.5 * share(age == 3, late)
    tv = device == "tv"
    assert share(age == 3, tv) > 1.5 * share(age == 0, tv)


def test_oracle_is_a_calibrated_posterior_that_beats_the_prior_but_is_not_perfect():
    uids = user_ids(np.arange(STATS.n_users))
    p_male, p_age = oracle_probabilities(STATS, uids)
    male, cls, _ = truth(STATS, uids)
    assert p_male.shape == (uids.size,) and p_age.shape == (uids.size, 4)
    assert ((p_male > 0) & (p_male < 1)).all() and ((p_age > 0) & (p_age < 1)).all()
    assert np.allclose(p_age.sum(axis=1), 1.0)
    prior_male, prior_age = prior()
    loss = -np.mean(np.log(np.where(male, p_male, 1 - p_male)))
    loss_prior = -np.mean(np.log(np.where(male, prior_male, 1 - prior_male)))
    age_loss = -np.mean(np.log(p_age[np.arange(cls.size), cls]))
    age_loss_prior = -np.mean(np.log(prior_age[cls]))
    assert loss < 0.8 * loss_prior and age_loss < 0.85 * age_loss_prior
    accuracy = ((p_male > 0.5) == male).mean()
    age_accuracy = (p_age.argmax(axis=1) == cls).mean()
    majority = np.bincount(cls).max() / cls.size
    assert 0.65 < accuracy < 0.97 and majority + 0.1 < age_accuracy < 0.9
    # Calibrated: in every probability band, the share of men is the band's mean prediction (the posterior
    # of the true model; a mis-specified one drifts by far more than the sampling error checked here).
    for low in np.arange(0.0, 1.0, 0.1):
        band = (p_male >= low) & (p_male < low + 0.1)
        if band.sum() > 400:
            assert abs(male[band].mean() - p_male[band].mean()) < 3 * np.sqrt(0.25 / band.sum()) + 0.01, low
    top = p_age.argmax(axis=1)
    for k in range(4):
        chosen = top == k
        assert abs((cls[chosen] == k).mean() - p_age[chosen, k].mean()) < 0.03, k


def test_every_source_of_evidence_in_the_oracle_carries_information():
    """Ignoring the hours, the device or the region (zero counts make a term the same for every group) gives a
    worse posterior: the exact one uses all the evidence the generator planted."""
    from pipelines.sociodemo.generate import _posterior, _sufficient_counts

    uids = user_ids(np.arange(STATS.n_users))
    male, cls, _ = truth(STATS, uids)
    counts = _sufficient_counts(STATS, np.ones(STATS.n_users, dtype=bool), np.arange(STATS.n_users), STATS.days)

    def loss(post: np.ndarray) -> float:
        p_male, p_age = post[:, 4:].sum(axis=1), post[:, :4] + post[:, 4:]
        return -np.mean(np.log(np.where(male, p_male, 1 - p_male))) - np.mean(np.log(p_age[np.arange(cls.size), cls]))

    full = loss(_posterior(STATS, counts, STATS.days))
    for name in ("hour_local", "profile", "region"):
        ignored = {**counts, name: np.zeros_like(counts[name])}
        assert loss(_posterior(STATS, ignored, STATS.days)) > full + 0.001, name


def test_oracle_depends_on_the_days_seen():
    uids = user_ids(np.arange(2_000))
    early, _ = oracle_probabilities(STATS, uids, through=date(2024, 6, 2))
    late, _ = oracle_probabilities(STATS, uids, through=STATS.end)
    male, _, _ = truth(STATS, uids)
    assert not np.allclose(early, late)
    assert np.mean(np.log(np.where(male, late, 1 - late))) > np.mean(np.log(np.where(male, early, 1 - early)))
    with pytest.raises(ValueError, match="outside the generated period"):
        oracle_probabilities(STATS, uids, through=date(2024, 5, 1))


def test_uids_map_back_to_users():
    idx = np.array([0, 1, 17, STATS.n_users - 1])
    assert np.array_equal(user_index(user_ids(idx), STATS), idx)
    assert len(set(user_ids(np.arange(STATS.n_users)).tolist())) == STATS.n_users
    with pytest.raises(KeyError):
        user_index(np.array([user_ids(np.array([STATS.n_users]))[0]]), STATS)

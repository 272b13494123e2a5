"""The Last.fm-360K generator: exact formats, determinism, a realistic popularity tail, planted signal, truth."""

import dataclasses
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from itertools import combinations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.recs import schema
from pipelines.recs.generate import RecsDataSpec, Truth, write_snapshot

SPEC = RecsDataSpec()
DAY = SPEC.start


def _raw(root, day=DAY):
    folder = root / schema.raw_rel_dir(day)
    return (folder / schema.PLAYS_FILE).read_bytes(), (folder / schema.PROFILE_FILE).read_bytes()


def _rows(root, day=DAY) -> list[list[str]]:
    return [line.split("\t") for line in _raw(root, day)[0].decode().splitlines()]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A default-size snapshot with no planted quirks, and its truth."""
    root = tmp_path_factory.mktemp("recs-clean")
    spec = SPEC.without_quirks()
    report = write_snapshot(spec, root, DAY)
    return root, spec, report, Truth.load(root, spec)


def test_default_spec_is_deterministic(tmp_path):
    """(How fast the generator is, is measured by bench/recs_bench.py, not asserted here.)"""
    first = write_snapshot(SPEC, tmp_path / "a", DAY)
    again = write_snapshot(SPEC, tmp_path / "b", DAY)
    assert _raw(tmp_path / "a") == _raw(tmp_path / "b")
    assert {k: v for k, v in first.items() if k not in ("files", "truth")} == \
           {k: v for k, v in again.items() if k not in ("files", "truth")}
    write_snapshot(dataclasses.replace(SPEC, seed=8), tmp_path / "c", DAY)
    other = _raw(tmp_path / "c")
    assert other[0] != _raw(tmp_path / "a")[0] and other[1] != _raw(tmp_path / "a")[1]


def test_a_later_day_drifts_a_little(tmp_path):
    later = DAY + timedelta(days=3)
    base = write_snapshot(SPEC, tmp_path, DAY)
    drift = write_snapshot(SPEC, tmp_path, later)
    assert drift["users"] == base["users"] + 3 * SPEC.new_users_per_day
    first, second = ({(r[0], r[2]): int(r[3]) for r in _rows(tmp_path, day)
                      if len(r) == 4 and r[3].isdigit() and int(r[3]) <= schema.MAX_PLAUSIBLE_PLAYS}
                     for day in (DAY, later))
    common = first.keys() & second.keys()
    assert len(common) > 0.97 * len(first)  # the same users keep the same artists ...
    assert sum(second[k] for k in common) > sum(first[k] for k in common)  # ... and listen on
    truth = Truth.load(tmp_path, SPEC)  # the truth grew with the new users
    assert len(truth.user_ids) == drift["users"]


def test_formats_are_exactly_lastfm(clean):
    root, _, report, _ = clean
    plays, profile = (b.decode() for b in _raw(root))
    rows = [line.split("\t") for line in plays.splitlines()]
    assert len(rows) == report["rows"] and {len(r) for r in rows} == {4}
    assert all(schema.USER_ID_RE.match(r[0]) for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", r[1])
               for r in rows if r[1])
    assert 0.08 < sum(not r[1] for r in rows) / len(rows) < 0.3  # empty mbids are common
    plays_n = np.array([int(r[3]) for r in rows])
    assert plays_n.min() >= 1 and plays_n.max() < schema.MAX_PLAUSIBLE_PLAYS
    assert 20 < np.median(plays_n) < 500 and plays_n.max() > 2000  # tens to thousands
    per_user = Counter(r[0] for r in rows)
    assert 40 < np.mean(list(per_user.values())) < 56 and min(per_user.values()) == 1
    assert len({(r[0], r[2]) for r in rows}) == len(rows)  # no duplicate without the quirk
    lines = profile.splitlines()
    assert len(lines) == report["users"]
    fields = [line.split("\t") for line in lines]
    assert {len(f) for f in fields} == {5}
    assert {f[1] for f in fields} == {"m", "f", ""}
    assert all(f[2] == "" or schema.AGE_RANGE[0] <= int(f[2]) <= schema.AGE_RANGE[1] for f in fields)
    assert all(re.fullmatch(r"[A-Z][a-z]{2} [1-9][0-9]?, 20[01][0-9]", f[4]) for f in fields)
    assert all(datetime.strptime(f[4], schema.SIGNUP_FORMAT).date() < DAY for f in fields)
    assert [f[0] for f in fields] == sorted(f[0] for f in fields)  # sorted by user, as the dump is
    countries = Counter(f[3] for f in fields)
    assert countries.most_common(1)[0][0] == "United States" and len(countries) > 30
    assert report["normal"]["cold_start_users"] == report["users"] - len(per_user)


def test_popularity_has_a_head_and_a_long_tail(clean):
    root, _, report, _ = clean
    listeners = Counter(schema.artist_key(r[2]) for r in _rows(root))
    counts = np.array(sorted(listeners.values(), reverse=True))
    share_top = counts[0] / (report["users"] - report["normal"]["cold_start_users"])
    assert 0.25 < share_top < 0.8, share_top
    assert counts[0] > 50 * np.median(counts)
    assert np.mean(counts <= 3) > 0.1  # plenty of artists only a few people know


def test_users_of_one_taste_share_more_artists(clean):
    root, _, _, truth = clean
    artists = defaultdict(set)
    for r in _rows(root):
        artists[r[0]].add(r[2])
    users = [u for u, a in artists.items() if len(a) >= 10]
    genre = dict(zip(users, truth.dominant_genre(users), strict=True))
    rng = np.random.default_rng(0)

    def jaccard(a, b):
        return len(artists[a] & artists[b]) / len(artists[a] | artists[b])

    same = [jaccard(a, b) for a, b in combinations(users[:400], 2) if genre[a] == genre[b]]
    pairs = rng.choice(len(users), size=(3000, 2))
    random = [jaccard(users[i], users[j]) for i, j in pairs if i != j]
    assert np.mean(same) > 1.8 * np.mean(random), (np.mean(same), np.mean(random))


def test_truth_prefers_what_users_chose(clean):
    root, spec, _, truth = clean
    rows = _rows(root)
    users = sorted({r[0] for r in rows})[:200]
    keys = list(truth.artist_keys)
    pref = truth.preference(users, keys)
    assert pref.dtype == np.float32 and pref.shape == (200, spec.n_artists) and (pref > 0).all()
    chosen = defaultdict(set)
    for r in rows:
        chosen[r[0]].add(schema.artist_key(r[2]))
    col = {k: i for i, k in enumerate(keys)}
    lift = [pref[i, [col[k] for k in chosen[u]]].mean() / pref[i].mean() for i, u in enumerate(users)]
    assert np.median(lift) > 3  # the sampled artists are the preferred ones
    odd = truth.preference([users[0], "f" * 40], [keys[0], "no such artist", keys[1]])
    assert odd.shape == (2, 3) and odd[1].sum() == 0 and odd[:, 1].sum() == 0 and odd[0, 0] > 0
    assert odd[0, 2] == pytest.approx(pref[0, 1])


def test_truth_keys_are_the_pipeline_keys_and_belong_to_one_spec(clean):
    root, spec, _, truth = clean
    rows = _rows(root)
    assert {schema.artist_key(r[2]) for r in rows} <= set(truth.artist_keys)
    assert all(schema.artist_key(k) == k for k in truth.artist_keys)
    with pytest.raises(ValueError, match="another spec"):
        Truth.load(root, dataclasses.replace(spec, n_artists=spec.n_artists + 1))


def test_local_artists_are_popular_at_home(clean):
    truth = clean[3]
    local = np.flatnonzero(truth.local_country >= 0)
    users = list(truth.user_ids[:300])
    pref = truth.preference(users, [truth.artist_keys[i] for i in local])
    home = truth.user_country[:300, None] == truth.local_country[local][None, :]
    ratio = (pref * home).sum(0) / np.maximum(home.sum(0), 1) / (pref * ~home).sum(0) * (~home).sum(0)
    assert np.median(ratio[home.any(0)]) > 5


def test_quirks_are_counted_under_the_ingest_reasons(tmp_path):
    report = write_snapshot(SPEC, tmp_path, DAY)
    assert set(report["planted"]) == set(schema.REASONS)
    assert report["normal"]["unicode_variant"] > 0 and report["normal"]["empty_mbid"] > 0
    rows = _rows(tmp_path)
    assert sum(len(r) > 4 for r in rows) >= report["planted"]["tab_in_name_repaired"]
    bad = sum(report["planted"][r] for r in schema.PLAYS_BAD_REASONS)
    assert bad < 0.01 * report["rows"]  # the defaults pass the 5% threshold
    # Every spelling of a kept row normalises back to a real artist (variants and tabs included).
    keys = set(Truth.load(tmp_path, SPEC).artist_keys)
    names = [schema.artist_key(" ".join(r[2:-1])) for r in rows if len(r) >= 4]
    assert sum(n not in keys for n in names) == report["planted"]["missing_artist"]
    assert sum(n != schema.clean_artist_name(" ".join(r[2:-1])).casefold() for n, r in
               zip(names, (r for r in rows if len(r) >= 4), strict=True)) == 0
    canonical = dict(zip(*pq.read_table(tmp_path / schema.truth_rel_dir(SPEC.seed) / "artists.parquet",
                                        columns=["artist_key", "artist_name"]).to_pydict().values(), strict=True))
    other = [r[2] for r in rows if len(r) == 4 and r[2] != canonical.get(schema.artist_key(r[2]), r[2])]
    assert len(other) == report["normal"]["unicode_variant"]
    louder = write_snapshot(dataclasses.replace(SPEC, bad_plays_rate=0.01), tmp_path / "loud", DAY)
    assert louder["planted"]["bad_plays"] > 5 * report["planted"]["bad_plays"]

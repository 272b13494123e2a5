"""Features: title hashing is stable and formatting-blind, the ordered author encoding never sees a row's own
target, the out-of-sample encoding equals statistics recomputed without the excluded rows, time features."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from pipelines.engagement import features as F


def _hashes(tokens: F.Tokens, row: int) -> list[int]:
    return tokens.hashes[tokens.offsets[row]: tokens.offsets[row + 1]].tolist()


def test_title_tokens_are_stable_and_ignore_case_and_punctuation():
    titles = pa.array(['War "Crimes", in KYIV', "war crimes in kyiv", "Москва: 北京 São", "", None])
    tokens = F.title_tokens(titles)
    again = F.title_tokens(pa.array(["war crimes in kyiv"]))
    assert _hashes(tokens, 0) == _hashes(tokens, 1) == _hashes(again, 0)
    assert tokens.n_words.tolist() == [4, 4, 3, 0, 0]
    assert len(_hashes(tokens, 0)) == 4 + 3  # unigrams then bigrams
    assert len(set(_hashes(tokens, 2))) == 3 + 2
    assert _hashes(tokens, 3) == [] and _hashes(tokens, 4) == []
    unigrams = F.title_tokens(titles, bigrams=False)
    assert _hashes(unigrams, 0) == _hashes(tokens, 0)[:4]
    assert (tokens.buckets(1 << 10) < 1 << 10).all()


def test_bigram_order_matters():
    tokens = F.title_tokens(pa.array(["north korea", "korea north"]))
    assert sorted(_hashes(tokens, 0)[:2]) == sorted(_hashes(tokens, 1)[:2])
    assert _hashes(tokens, 0)[2] != _hashes(tokens, 1)[2]


def _stats(authors, y, weight=10.0) -> F.AuthorStats:
    names = np.array(sorted(set(authors)), dtype=object)
    idx = {a: i for i, a in enumerate(names)}
    n, s = np.zeros(len(names)), np.zeros(len(names))
    for a, v in zip(authors, y, strict=True):
        n[idx[a]] += 1
        s[idx[a]] += v
    return F.AuthorStats(names, n, s, float(np.mean(y)), weight)


def test_ordered_encoding_never_sees_a_rows_own_or_later_target():
    rng = np.random.default_rng(0)
    authors = rng.choice(["a", "b", "c"], 300).astype(object)
    y = rng.normal(size=300)
    stats = _stats(authors, y)

    def encode(values: np.ndarray) -> np.ndarray:
        enc = F.OrderedEncoder(stats)
        return np.concatenate([enc.encode_and_update(authors[lo: lo + 64], values[lo: lo + 64])[0]
                               for lo in range(0, 300, 64)])

    base = encode(y)
    changed = y.copy()
    changed[150] += 100.0
    moved = encode(changed)
    assert np.allclose(base[:151], moved[:151])  # rows up to and including 150 did not see it
    later = np.flatnonzero(authors[151:] == authors[150]) + 151
    assert not np.allclose(base[later], moved[later])  # the author's later rows did
    m, g = stats.prior_weight, stats.prior_mean  # the first row of each author gets the prior alone
    for a in "abc":
        first = int(np.flatnonzero(authors == a)[0])
        assert base[first] == (m * g) / m


def test_out_of_sample_encoding_equals_statistics_without_the_rows():
    authors = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    stats = _stats(authors, y, weight=2.0)
    te, log_n = stats.encode(np.array(["a", "b", "z"], dtype=object), exclude_n=np.array([1.0, 2.0, 0.0]),
                             exclude_s=np.array([3.0, 9.0, 0.0]))
    g = stats.prior_mean
    assert np.allclose(te, [(3.0 + 2 * g) / (2 + 2), (0.0 + 2 * g) / (0 + 2), g])
    assert np.allclose(log_n, np.log1p([2.0, 0.0, 0.0]))


def test_time_features():
    t = int(datetime(2016, 1, 4, 13, 30, tzinfo=UTC).timestamp())  # a Monday
    f = F.time_features(np.array([t, t + 6 * 86_400 + 11 * 3_600]))
    assert f["hour"].tolist() == [13, 0] and f["weekday"].tolist() == [0, 0]
    assert abs(f["years"][0] - (2016 + 3 / 365.25 - 2005 - 151 / 365.25)) < 0.01


def test_hashed_strings_are_stable_buckets():
    a = F.hashed_strings(pa.array(["alice", "bob", "alice", None]), 97)
    assert a[0] == a[2] and a.min() >= 0 and a.max() < 97
    assert F.hashed_strings(pa.array(["bob"]), 97)[0] == a[1]

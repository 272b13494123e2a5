"""The user-user model's parts on small planted data: top-N selection, splitting, neighbours, fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.recs.evaluate import holdout_split
from pipelines.recs.features import ModelParams, Snapshot, profile_codes, profile_matrix, user_vectors
from pipelines.recs.model import UserUserModel
from pipelines.recs.neighbours import exact_neighbours, neighbour_recall, top_k_dense
from pipelines.recs.recommend import top_n_sparse


def _clustered(n_users: int = 600, n_artists: int = 400, n_clusters: int = 6, seed: int = 0):
    """Users of a cluster play artists of their genre far more often than others."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, n_clusters, n_artists)
    cluster = rng.integers(0, n_clusters, n_users)
    rows, cols = [], []
    for u in range(n_users):
        w = np.where(genre == cluster[u], 30.0, 1.0) / np.arange(1, n_artists + 1) ** 0.5
        n = int(rng.integers(8, 30)) if u % 50 else 1  # every 50th user is cold (one artist)
        items = rng.choice(n_artists, size=n, replace=False, p=w / w.sum())
        rows += [u] * n
        cols += items.tolist()
    plays = sp.csr_matrix((rng.integers(1, 300, len(rows)).astype(np.float32), (rows, cols)),
                          shape=(n_users, n_artists))
    users = pd.DataFrame({"user_id": [f"{u:040x}" for u in range(n_users)],
                          "gender": rng.choice(["m", "f", None], n_users),
                          "age_band": rng.choice(["18-24", "25-34"], n_users),
                          "country": np.where(cluster % 2 == 0, "Germany", "Poland")})
    artists = pd.DataFrame({"artist_key": [f"a{a}" for a in range(n_artists)],
                            "artist_name": [f"A{a}" for a in range(n_artists)], "mbid": None})
    return Snapshot(plays, users, artists), cluster, genre


def test_top_n_sparse_orders_and_pads():
    scores = sp.csr_matrix(np.array([[0, 3, 0, 5, 3], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    idx, val = top_n_sparse(scores, 3)
    assert idx.tolist() == [[3, 1, 4], [-1, -1, -1], [0, -1, -1]]  # ties go to the lower column
    assert val[0].tolist() == [5, 3, 3]


def test_top_k_dense_excludes_minus_inf():
    idx, _ = top_k_dense(np.array([[0.1, -np.inf, 0.5]]), 3)
    assert idx.tolist() == [[2, 0, -1]]


def test_profile_cosine_is_shared_fields_over_sqrt_counts():
    users = pd.DataFrame({"gender": ["m", "m", None], "age_band": ["18-24", "25-34", "18-24"],
                          "country": ["Poland", "Poland", "Poland"]})
    p = profile_matrix(profile_codes(users)).toarray()
    sims = p @ p.T
    assert sims[0, 1] == pytest.approx(2 / 3)  # gender and country of 3 fields
    assert sims[0, 2] == pytest.approx(2 / np.sqrt(3 * 2))  # age band and country; user 2 has 2 fields


def test_exact_neighbours_match_brute_force_blended_cosine():
    snap, _, _ = _clustered(200, 120)
    params = ModelParams(profile_weight=0.3, k_neighbours=10)
    content, vectors = user_vectors(snap, params)
    brute = (vectors @ vectors.T).toarray()
    np.fill_diagonal(brute, -np.inf)
    rows = np.arange(0, 200, 7)
    candidates = np.ones(200, dtype=bool)
    got = exact_neighbours(content, profile_codes(snap.users), 0.3, rows, 10, candidates, block=8)
    want_idx, want_sim = top_k_dense(brute[rows], 10)
    np.testing.assert_allclose(got.sims, want_sim, rtol=1e-5)
    assert neighbour_recall(got, type(got)(want_idx, want_sim)) > 0.97  # only float ties may differ


def test_holdout_split_partitions_each_user():
    snap, _, _ = _clustered()
    train, holdout = holdout_split(snap.plays, 0.2, 5, seed=1)
    assert (train + holdout - snap.plays).nnz == 0 or abs(train + holdout - snap.plays).max() == 0
    assert train.multiply(holdout).nnz == 0
    sizes = np.diff(snap.plays.indptr)
    held = np.diff(holdout.indptr)
    assert np.all(held[sizes < 5] == 0)
    assert np.all(held[sizes >= 5] == np.maximum(1, np.round(0.2 * sizes[sizes >= 5])))
    again, _ = holdout_split(snap.plays, 0.2, 5, seed=1)
    assert (again != train).nnz == 0


@pytest.mark.parametrize("kind", ["approx", "exact"])
def test_recommendations_are_unseen_and_from_the_users_taste(kind):
    snap, cluster, genre = _clustered()
    model = UserUserModel.fit(snap, ModelParams(neighbours=kind, k_neighbours=20, svd_dim=16, n_recs=10))
    rows = np.arange(snap.n_users)
    idx, val, sources = model.recommend(rows, block=128)
    assert (idx >= 0).all()  # everyone gets 10: CF, completed by fallbacks
    seen = snap.plays.toarray() > 0
    assert not seen[np.repeat(rows, 10), idx.ravel()].any()
    assert all(len(set(r)) == 10 for r in idx.tolist())
    assert np.all(np.diff(val, axis=1) <= 1e-6)  # ranked by score
    warm = np.diff(snap.plays.indptr) >= 3
    in_genre = (genre[idx[warm]] == cluster[warm][:, None]).mean()
    assert in_genre > 0.6  # 1 genre in 6 would give ~0.17 by chance
    assert {sources[i] for i in np.nonzero(~warm)[0]} <= {"fallback:country_age", "fallback:country",
                                                          "fallback:global"}


def test_model_roundtrip_gives_identical_recommendations(tmp_path):
    snap, _, _ = _clustered(300, 200)
    model = UserUserModel.fit(snap, ModelParams(k_neighbours=15, svd_dim=12))
    model.save(tmp_path / "m")
    again = UserUserModel.load(tmp_path / "m")
    rows = np.arange(300)
    a, b = model.recommend(rows), again.recommend(rows)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    refit = UserUserModel.fit(snap, ModelParams(k_neighbours=15, svd_dim=12))  # a rerun: same lists
    np.testing.assert_array_equal(refit.recommend(rows)[0], a[0])


def test_pair_similarity_matches_the_exact_search_and_ratio_is_one_for_exact():
    from pipelines.recs.neighbours import pair_similarity, similarity_ratio

    snap, _, _ = _clustered(200, 120)
    content, _ = user_vectors(snap, ModelParams(profile_weight=0.3))
    codes = profile_codes(snap.users)
    rows = np.arange(0, 200, 9)
    exact = exact_neighbours(content, codes, 0.3, rows, 10, np.ones(200, dtype=bool))
    np.testing.assert_allclose(pair_similarity(content, codes, 0.3, rows, exact.indices), exact.sims, rtol=1e-5)
    assert similarity_ratio(exact.sims, exact) == pytest.approx(1.0)
    worse = exact_neighbours(content, codes, 0.3, rows, 20, np.ones(200, dtype=bool)).indices[:, 10:]
    assert similarity_ratio(pair_similarity(content, codes, 0.3, rows, worse), exact) < 1.0

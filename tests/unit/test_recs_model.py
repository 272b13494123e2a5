"""The user-user model's parts on small planted data: top-N selection, splitting, neighbours (exact, pruned
index, SVD + HNSW), scoring, fallbacks, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.recs.evaluate import holdout_split
from pipelines.recs.features import ModelParams, Snapshot, profile_codes, profile_matrix, user_vectors
from pipelines.recs.model import UserUserModel
from pipelines.recs.neighbours import (
    Neighbours,
    PostingIndex,
    ProfileKeys,
    exact_neighbours,
    neighbour_recall,
    pair_similarity,
    search,
    similarity_ratio,
    top_k_dense,
)
from pipelines.recs.recommend import cf_scores, cf_top_n, top_n_sparse


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
    got = exact_neighbours(content, profile_codes(snap.users), 0.3, rows, 10, candidates)
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


@pytest.mark.parametrize("kind", ["approx", "exact", "svd_hnsw"])
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


@pytest.mark.parametrize("kind", ["approx", "exact", "svd_hnsw"])
def test_model_roundtrip_gives_identical_recommendations(tmp_path, kind):
    snap, _, _ = _clustered(300, 200)
    params = ModelParams(k_neighbours=15, svd_dim=12, neighbours=kind, index_postings=10)
    model = UserUserModel.fit(snap, params)
    model.save(tmp_path / "m")
    again = UserUserModel.load(tmp_path / "m")
    rows = np.arange(300)
    a, b = model.recommend(rows), again.recommend(rows)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    assert (kind == "svd_hnsw") == (not (tmp_path / "m" / "postings.npz").exists())
    refit = UserUserModel.fit(snap, params)  # a rerun: same lists
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


def _brute(snap, w: float, candidates: np.ndarray) -> np.ndarray:
    """Every pair's blended cosine from the stacked vectors: the definition the searches must meet."""
    _, vectors = user_vectors(snap, ModelParams(profile_weight=w))
    brute = (vectors @ vectors.T).toarray()
    np.fill_diagonal(brute, -np.inf)
    brute[:, ~candidates] = -np.inf
    brute[brute <= 0] = -np.inf  # nothing in common at all: not a neighbour
    return brute


@pytest.mark.parametrize("w", [0.0, 0.1, 0.5])
def test_exact_search_equals_brute_force_with_cold_candidates_excluded(w):
    snap, _, _ = _clustered(250, 150, seed=3)
    candidates = np.diff(snap.plays.indptr) >= 3
    content, _ = user_vectors(snap, ModelParams(profile_weight=w))
    codes = profile_codes(snap.users)
    rows = np.arange(250)
    got = search(content, codes, w, PostingIndex.build(content, codes, candidates, None), rows, 12)
    want_idx, want_sim = top_k_dense(_brute(snap, w, candidates), 12)
    np.testing.assert_allclose(got.sims, want_sim, atol=2e-6)
    same = (got.indices == want_idx) | np.isclose(got.sims, want_sim, atol=2e-6)  # only float ties may swap
    assert same.all()
    assert not np.isin(got.indices[got.indices >= 0], np.nonzero(~candidates)[0]).any()
    assert (got.indices != rows[:, None]).all()


def test_exact_search_finds_neighbours_by_profile_alone():
    """A user whose artists nobody else played still gets the users of the same profile as neighbours."""
    users = pd.DataFrame({"user_id": [f"{u:040x}" for u in range(6)],
                          "gender": ["m", "m", "m", "f", "f", "m"], "age_band": ["25-34"] * 6,
                          "country": ["Poland", "Poland", "Poland", "Spain", "Spain", "Spain"]})
    plays = sp.csr_matrix(np.array([[5, 3, 1, 0, 0, 0, 0, 0],  # user 0: artists only they played
                                    [0, 0, 0, 4, 4, 4, 0, 0],
                                    [0, 0, 0, 4, 4, 4, 0, 0],
                                    [0, 0, 0, 0, 0, 4, 4, 4],
                                    [0, 0, 0, 0, 0, 4, 4, 4],
                                    [0, 0, 0, 0, 0, 4, 4, 4]], dtype=np.float32))
    snap = Snapshot(plays, users, pd.DataFrame({"artist_key": list("abcdefgh")}))
    content, _ = user_vectors(snap, ModelParams(profile_weight=0.2))
    codes = profile_codes(users)
    got = search(content, codes, 0.2, PostingIndex.build(content, codes, np.ones(6, bool), None),
                 np.array([0]), 3)
    assert got.indices[0].tolist() == [1, 2, 5]  # same gender, band and country; then gender and band
    np.testing.assert_allclose(got.sims[0], [0.2, 0.2, 0.2 * 2 / 3], rtol=1e-6)


def test_pruned_index_keeps_each_artists_heaviest_listeners():
    content = sp.csr_matrix(np.array([[0.9, 0.1], [0.5, 0.0], [0.5, 0.7], [0.2, 0.7], [0.0, 0.7]],
                                     dtype=np.float32))
    codes = np.zeros((5, 3), np.int32)
    index = PostingIndex.build(content, codes, np.array([True, True, True, True, False]), postings=2)
    col = [index.users[index.ptr[a]:index.ptr[a + 1]].tolist() for a in range(2)]
    assert col[0] == [0, 1]  # 0.9 and the first 0.5 (ties: lower row), in row order
    assert col[1] == [2, 3]  # user 4 is not a candidate
    full = PostingIndex.build(content, codes, np.ones(5, bool), postings=None)
    assert full.nnz == content.nnz


def test_pruned_search_with_room_for_everyone_is_exact():
    snap, _, _ = _clustered(300, 150, seed=4)
    content, _ = user_vectors(snap, ModelParams())
    codes = profile_codes(snap.users)
    candidates = np.ones(300, bool)
    rows = np.arange(0, 300, 3)
    exact = search(content, codes, 0.1, PostingIndex.build(content, codes, candidates, None), rows, 10)
    roomy = search(content, codes, 0.1, PostingIndex.build(content, codes, candidates, 10_000), rows, 10)
    np.testing.assert_array_equal(roomy.indices, exact.indices)


def test_pruned_search_judges_its_neighbours_exactly_and_gets_close():
    """However hard the pruning, the reported similarities are the exact ones of the users found; a modest
    pool gives most of the exact neighbours' similarity."""
    snap, _, _ = _clustered(600, 400, seed=5)
    content, _ = user_vectors(snap, ModelParams())
    codes = profile_codes(snap.users)
    candidates = np.diff(snap.plays.indptr) >= 3
    rows = np.nonzero(candidates)[0]
    exact = search(content, codes, 0.1, PostingIndex.build(content, codes, candidates, None), rows, 20)
    pruned = PostingIndex.build(content, codes, candidates, postings=15)
    found = search(content, codes, 0.1, pruned, rows, 20, pool=60)
    np.testing.assert_allclose(pair_similarity(content, codes, 0.1, rows, found.indices), found.sims, atol=2e-6)
    assert similarity_ratio(found.sims, exact) > 0.93
    assert similarity_ratio(search(content, codes, 0.1, pruned, rows, 20, pool=20).sims, exact) < \
        similarity_ratio(found.sims, exact)  # a larger pool re-scored exactly helps


def test_search_does_not_depend_on_how_users_are_split_or_ordered():
    """Shards and threads must not change anyone's neighbours: each query is computed alone."""
    snap, _, _ = _clustered(400, 200, seed=6)
    content, _ = user_vectors(snap, ModelParams())
    codes = profile_codes(snap.users)
    index = PostingIndex.build(content, codes, np.ones(400, bool), postings=20)
    rows = np.arange(400)
    whole = search(content, codes, 0.1, index, rows, 15, pool=30)
    shuffled = np.random.default_rng(0).permutation(400)
    parts = [search(content, codes, 0.1, index, shuffled[i:i + 37], 15, pool=30) for i in range(0, 400, 37)]
    indices = np.concatenate([p.indices for p in parts])
    back = np.argsort(shuffled)
    np.testing.assert_array_equal(indices[back], whole.indices)
    np.testing.assert_array_equal(np.concatenate([p.sims for p in parts])[back], whole.sims)


def test_ties_go_to_the_lower_row():
    """Identical users are equally similar: the lower rows win, as top_k_dense orders them."""
    same = np.tile(np.array([[3, 1, 2, 0, 0]], np.float32), (9, 1))
    others = np.tile(np.array([[0, 0, 0, 4, 1]], np.float32), (21, 1))  # so the first artists are not universal
    plays = sp.csr_matrix(np.vstack([same, others]))
    users = pd.DataFrame({"user_id": [f"{u:040x}" for u in range(30)], "gender": ["m"] * 30,
                          "age_band": ["25-34"] * 30, "country": ["Poland"] * 30})
    snap = Snapshot(plays, users, pd.DataFrame({"artist_key": list("abcde")}))
    content, _ = user_vectors(snap, ModelParams())
    codes = profile_codes(users)
    for postings in (None, 3):
        got = search(content, codes, 0.1, PostingIndex.build(content, codes, np.ones(30, bool), postings),
                     np.array([4, 0]), 3)
        assert got.indices.tolist() == [[0, 1, 2], [1, 2, 3]]
        np.testing.assert_allclose(got.sims, 1.0, rtol=1e-6)


def test_profile_keys_pack_every_field_and_unknowns():
    codes = np.array([[0, 3, 40], [-1, 3, 40], [1, -1, -1], [-1, -1, -1]], np.int32)
    keys = ProfileKeys.pack(codes)
    unpacked = np.stack([(keys.keys >> s) & m for s, m in zip(keys.shifts, keys.masks, strict=True)], axis=1) - 1
    np.testing.assert_array_equal(unpacked, codes)
    table = keys.similarity_table()
    assert table[0].tolist() == [0, 0, 0, 0] and table[3, 2] == pytest.approx(1 / np.sqrt(6))


def test_compiled_scoring_equals_the_sparse_formulation():
    snap, _, _ = _clustered(300, 200, seed=7)
    content, _ = user_vectors(snap, ModelParams())
    codes = profile_codes(snap.users)
    rows = np.arange(300)
    nb = search(content, codes, 0.1, PostingIndex.build(content, codes, np.ones(300, bool), None), rows, 25)
    got_idx, got_val = cf_top_n(nb, content, snap.plays, rows, 10)
    want_idx, want_val = top_n_sparse(cf_scores(nb, content, snap.plays[rows]), 10)
    np.testing.assert_allclose(got_val, want_val, rtol=1e-5)
    assert ((got_idx == want_idx) | np.isclose(got_val, want_val, rtol=1e-5)).all()
    few = Neighbours(np.array([[1, -1]], np.int32), np.array([[0.5, 0]], np.float32))  # a short list: -1 padded
    idx, val = cf_top_n(few, content, snap.plays, np.array([0]), 60)
    assert (idx[0] >= 0).sum() == len(set(content[1].indices) - set(snap.plays[0].indices))
    assert (val[0][idx[0] < 0] == 0).all()

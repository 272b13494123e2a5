"""Top-K most similar users by the blended cosine, exactly or from a pruned inverted index; SVD + HNSW kept.

The similarity of users u and v is ``(1 - w)·cos(plays) + w·cos(profile)`` (``features.py``). Both the exact
and the default approximate search run one compiled kernel (numba) over the query users, in parallel; each
query is independent of the others, so the result depends neither on the threads nor on the shards:

1. **Accumulate** the plays part through an inverted index: for each of u's artists, the users who played it
   (its *postings*), adding ``w(u, a) · w(v, a)`` for each.
2. **Select** a pool of candidates by ``(1 - w)·accumulated plays + w·profile``; the profile part is exact
   (three codes compared), so users who share u's country, age band and gender compete as they should.
3. **Re-score** the pool exactly (u's weights scattered into a dense vector, one pass over each candidate's
   row) and keep the best ``k``, ties to the lower user row.
4. **Profile-only neighbours**: when fewer than ``k`` were found, or the ``k``-th is below what a profile match
   alone gives (``w``), the first users of each well-matching profile group that shared no indexed artist are
   scored too.

*Exact* search keeps every posting and re-scores every candidate it may need: the result is the exact top-k.
Its cost is Σ over artists of (listeners)², dominated by the few hundred artists that tens of thousands of
users played: tens of minutes at Last.fm-360K scale. *Approximate* search (the default) keeps only the
``postings`` heaviest weights of each artist: a user still meets everyone who shares one of their rarer
artists, and for a hit artist the listeners for whom it weighs most; the pool (``rerank × k``) is then judged
by the exact similarity. Its neighbour quality against exact search is measured (``similarity_ratio``,
``neighbour_recall``) by the evaluation and the benchmark.

The older approximate search, a truncated SVD of the blended vectors indexed by hnswlib (``svd_hnsw``), stays
available for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

#: Exact search re-scores this many more candidates than it keeps, so that float rounding between the
#: accumulated and the re-scored similarity cannot change which users make the top k.
EXACT_MARGIN = 32


@dataclass
class Neighbours:
    """For each query user, candidate users (row ids, -1 = none) and their similarities, best first."""

    indices: np.ndarray  # (n_query, k) int32
    sims: np.ndarray  # (n_query, k) float32

    def as_matrix(self, n_users: int) -> sp.csr_matrix:
        """The (n_query × n_users) similarity matrix, negative similarities dropped."""
        keep = (self.indices >= 0) & (self.sims > 0)
        rows = np.nonzero(keep)[0]
        return sp.csr_matrix((self.sims[keep], (rows, self.indices[keep])),
                             shape=(self.indices.shape[0], n_users), dtype=np.float32)


def top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best columns of a dense score block, best first (ties: lower column first)."""
    k_eff = min(k, scores.shape[1])
    if k_eff == 0:
        return np.full((scores.shape[0], k), -1, np.int32), np.zeros((scores.shape[0], k), np.float32)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int32)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    idx[~np.isfinite(vals)] = -1
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - k_eff)), constant_values=0)
    return idx, vals


# -- the index ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileKeys:
    """Each user's profile codes packed into one int64 (field f in bits ``shifts[f]``…, value code + 1, 0 =
    unknown), so the kernel compares two profiles without touching a users × fields table (a cache miss per
    candidate was half of the search time)."""

    keys: np.ndarray  # (n_users,) int64
    shifts: np.ndarray  # (n_fields,) int64
    masks: np.ndarray  # (n_fields,) int64

    @classmethod
    def pack(cls, codes: np.ndarray) -> ProfileKeys:
        n_fields = codes.shape[1]
        widths = [max(1, int(codes[:, f].max(initial=-1) + 1).bit_length()) for f in range(n_fields)]
        if sum(widths) > 62:
            raise ValueError(f"profile codes too wide to pack into 62 bits: {widths}")
        shifts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64) if n_fields else \
            np.zeros(0, np.int64)
        masks = np.array([(1 << wd) - 1 for wd in widths], np.int64)
        keys = np.zeros(len(codes), np.int64)
        for f in range(n_fields):
            keys |= (codes[:, f].astype(np.int64) + 1) << shifts[f]
        return cls(keys, shifts, masks)

    def similarity_table(self) -> np.ndarray:
        """``1 / sqrt(known_u · known_v)`` by the numbers of known fields (0 where one knows none)."""
        counts = np.arange(len(self.shifts) + 1, dtype=np.float64)
        outer = np.outer(counts, counts)
        return np.divide(1.0, np.sqrt(outer), out=np.zeros_like(outer), where=outer > 0)


@dataclass
class PostingIndex:
    """Per artist, the candidate users who played it, their weights and packed profiles (CSC-like arrays), and
    the candidate users grouped by profile (for neighbours found by the profile alone).

    ``postings`` = None keeps every listener (exact search); a number keeps each artist's heaviest weights
    (ties: lower user row)."""

    ptr: np.ndarray  # (n_artists + 1,) int64
    users: np.ndarray  # int32
    weights: np.ndarray  # float32
    postings: int | None
    profiles: ProfileKeys
    group_ptr: np.ndarray  # (n_groups + 1,) int64
    group_users: np.ndarray  # int32, candidate users sorted by (profile, row)
    _user_keys: np.ndarray | None = None

    @classmethod
    def build(cls, content: sp.csr_matrix, codes: np.ndarray, candidates: np.ndarray,
              postings: int | None) -> PostingIndex:
        masked = (sp.diags(candidates.astype(np.float32)) @ content).tocsc()
        masked.eliminate_zeros()
        masked.sort_indices()
        ptr = masked.indptr.astype(np.int64)
        users = masked.indices.astype(np.int32)
        weights = masked.data.astype(np.float32)
        if postings is not None:
            ptr, users, weights = _truncate_postings(ptr, users, weights, int(postings))
        return cls._with_profiles(ptr, users, weights, postings, codes, candidates)

    @classmethod
    def _with_profiles(cls, ptr, users, weights, postings, codes, candidates) -> PostingIndex:
        profiles = ProfileKeys.pack(codes)
        rows = np.nonzero(candidates)[0]
        order = np.lexsort((rows, profiles.keys[rows]))  # by profile, then row
        grouped = rows[order].astype(np.int32)
        starts = np.flatnonzero(np.diff(profiles.keys[grouped], prepend=-1)) if len(grouped) else \
            np.zeros(0, np.int64)
        group_ptr = np.append(starts, len(grouped)).astype(np.int64)
        return cls(ptr, users, weights, postings, profiles, group_ptr, grouped)

    @property
    def nnz(self) -> int:
        return len(self.users)

    @property
    def user_keys(self) -> np.ndarray:
        """Each posting's user's packed profile, beside it: read in sequence while accumulating."""
        if self._user_keys is None:
            self._user_keys = self.profiles.keys[self.users]
        return self._user_keys

    def save(self, folder: Path) -> list[Path]:
        np.savez(folder / "postings.npz", ptr=self.ptr, users=self.users, weights=self.weights,
                 postings=np.array(-1 if self.postings is None else self.postings))
        return [folder / "postings.npz"]

    @classmethod
    def load(cls, folder: Path, codes: np.ndarray, candidates: np.ndarray) -> PostingIndex:
        with np.load(folder / "postings.npz") as f:
            postings = int(f["postings"])
            ptr, users, weights = f["ptr"], f["users"], f["weights"]
        return cls._with_profiles(ptr, users, weights, None if postings < 0 else postings, codes, candidates)


def _truncate_postings(ptr: np.ndarray, users: np.ndarray, weights: np.ndarray, keep: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.minimum(np.diff(ptr), keep)
    new_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    new_users = np.empty(int(new_ptr[-1]), np.int32)
    new_weights = np.empty(int(new_ptr[-1]), np.float32)
    _truncate_kernel(ptr, users, weights, keep, new_ptr, new_users, new_weights)
    return new_ptr, new_users, new_weights


@numba.njit(parallel=True, cache=True)
def _truncate_kernel(ptr, users, weights, keep, new_ptr, new_users, new_weights):  # pragma: no cover - compiled
    for a in numba.prange(len(ptr) - 1):
        lo, hi, out = ptr[a], ptr[a + 1], new_ptr[a]
        if hi - lo <= keep:
            new_users[out:out + hi - lo] = users[lo:hi]
            new_weights[out:out + hi - lo] = weights[lo:hi]
            continue
        order = np.argsort(-weights[lo:hi], kind="mergesort")[:keep]  # stable: ties keep the lower row
        order.sort()  # back to row order: the accumulator is then walked forwards
        for j in range(keep):
            new_users[out + j] = users[lo + order[j]]
            new_weights[out + j] = weights[lo + order[j]]


# -- the search -----------------------------------------------------------------------------------------------

def search(content: sp.csr_matrix, codes: np.ndarray, profile_weight: float, index: PostingIndex,
           rows: np.ndarray, k: int, pool: int | None = None) -> Neighbours:
    """Top-``k`` neighbours of ``rows`` among the index's candidate users (never the user itself).

    ``pool``: candidates re-scored exactly (default ``k``; exact search adds :data:`EXACT_MARGIN`)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    pool = max(k, pool or k) + (EXACT_MARGIN if index.postings is None else 0)
    if len(rows) == 0:
        return Neighbours(np.full((0, k), -1, np.int32), np.zeros((0, k), np.float32))
    prof = index.profiles
    chunks = int(min(len(rows), max(1, numba.get_num_threads()) * 4))
    w = float(profile_weight) if len(prof.shifts) else 0.0
    indices, data = content.indices.astype(np.int32, copy=False), content.data.astype(np.float32, copy=False)
    idx, sims = _search_kernel(rows, content.indptr.astype(np.int64), indices, data, index.ptr, index.users,
                               index.weights, index.user_keys, prof.keys, prof.shifts, prof.masks,
                               prof.similarity_table(), index.group_ptr, index.group_users, w, int(k), int(pool),
                               int(content.shape[0]), int(content.shape[1]), chunks)
    return Neighbours(idx, sims)


@numba.njit(inline="always")
def _worse(s1, i1, s2, i2):  # pragma: no cover - compiled
    """The total order of candidates: higher similarity first, then the lower row."""
    return s1 < s2 or (s1 == s2 and i1 > i2)


@numba.njit(inline="always")
def _heap_push(hs, hi, size, cap, s, i):  # pragma: no cover - compiled
    """Keep the ``cap`` best (score, row) pairs in a heap whose root is the worst; returns the new size."""
    if size < cap:
        pos = size
        size += 1
        while pos > 0:
            parent = (pos - 1) // 2
            if _worse(s, i, hs[parent], hi[parent]):
                hs[pos], hi[pos] = hs[parent], hi[parent]
                pos = parent
            else:
                break
        hs[pos], hi[pos] = s, i
        return size
    if _worse(hs[0], hi[0], s, i):
        _sift_down(hs, hi, size, s, i)
    return size


@numba.njit(inline="always")
def _heap_pop(hs, hi, size):  # pragma: no cover - compiled
    """Remove the root (the worst) of a heap of ``size``: the last element sifts down from the root."""
    if size > 1:
        _sift_down(hs, hi, size - 1, hs[size - 1], hi[size - 1])


@numba.njit(inline="always")
def _sift_down(hs, hi, size, s, i):  # pragma: no cover - compiled
    """Put (s, i) at the root of a heap of ``size`` (the root's old pair dropped) and sift it down."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(hs[child + 1], hi[child + 1], hs[child], hi[child]):
            child += 1
        if _worse(hs[child], hi[child], s, i):
            hs[pos], hi[pos] = hs[child], hi[child]
            pos = child
        else:
            break
    hs[pos], hi[pos] = s, i


@numba.njit(inline="always")
def _profile(key_u, key_v, shifts, masks, inv_u):  # pragma: no cover - compiled
    """Cosine of two one-hot profiles from their packed keys: shared known fields / sqrt(known_u · known_v)."""
    shared = 0
    known_v = 0
    for f in range(len(shifts)):
        cv = (key_v >> shifts[f]) & masks[f]
        if cv != 0:
            known_v += 1
            if cv == (key_u >> shifts[f]) & masks[f]:
                shared += 1
    return shared * inv_u[known_v]


@numba.njit
def _select_best(scores, ids, m, want, scratch, out):  # pragma: no cover - compiled
    """The ``want`` best of ``m`` (score, id) pairs into ``out`` (any order) in linear time: the threshold by
    quickselect, then everything above it and the lowest ids among those equal to it. Returns how many."""
    if m <= want:
        out[:m] = ids[:m]
        return m
    scratch[:m] = scores[:m]
    theta = _kth_largest(scratch, m, want)
    n = 0
    ties = 0
    for t in range(m):
        if scores[t] > theta:
            out[n] = ids[t]
            n += 1
        elif scores[t] == theta:
            ties += 1
    if n < want:
        tied = np.empty(ties, ids.dtype)
        j = 0
        for t in range(m):
            if scores[t] == theta:
                tied[j] = ids[t]
                j += 1
        tied.sort()
        for j in range(want - n):
            out[n + j] = tied[j]
        n = want
    return n


@numba.njit
def _kth_largest(a, m, kth):  # pragma: no cover - compiled
    """The ``kth`` largest of ``a[:m]`` (1-based), reordering ``a`` (Hoare quickselect, middle pivot)."""
    target = m - kth  # its position in ascending order
    lo, hi = 0, m - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return a[target]


@numba.njit
def _dot(dense, c_ptr, c_idx, c_val, v):  # pragma: no cover - compiled
    d = 0.0
    for j in range(c_ptr[v], c_ptr[v + 1]):
        d += dense[c_idx[j]] * c_val[j]
    return d


@numba.njit(parallel=True, cache=True)
def _search_kernel(rows, c_ptr, c_idx, c_val, p_ptr, p_users, p_weights, p_keys, keys, shifts, masks, inv, g_ptr,
                   g_users, w, k, pool, n_users, n_artists, chunks):  # pragma: no cover - compiled
    n_query = len(rows)
    out_idx = np.full((n_query, k), -1, np.int32)
    out_sim = np.zeros((n_query, k), np.float32)
    n_fields = len(shifts)
    for chunk in numba.prange(chunks):
        acc = np.zeros(n_users, np.float32)  # > 0 exactly for the users met (weights are positive)
        touched = np.empty(n_users, np.int32)
        dense = np.zeros(n_artists, np.float32)
        cand_s = np.empty(n_users, np.float32)
        cand_i = np.empty(n_users, np.int32)
        scratch = np.empty(n_users, np.float32)
        pool_i = np.empty(pool, np.int64)
        top_s = np.empty(k, np.float64)
        top_i = np.empty(k, np.int64)
        for r in range(chunk * n_query // chunks, (chunk + 1) * n_query // chunks):
            u = rows[r]
            key_u = keys[u]
            known_u = 0
            for f in range(n_fields):
                if (key_u >> shifts[f]) & masks[f] != 0:
                    known_u += 1
            inv_u = inv[known_u]
            # 0. accumulate the plays part, starting each user met at its profile similarity: the pool's score
            #    is then (1 - w) · acc, with no second table to read
            n_touched = 0
            bonus_scale = w / (1.0 - w)
            for j in range(c_ptr[u], c_ptr[u + 1]):
                a = c_idx[j]
                x = c_val[j]
                dense[a] = x
                for p in range(p_ptr[a], p_ptr[a + 1]):
                    v = p_users[p]
                    if acc[v] == 0:
                        touched[n_touched] = v
                        n_touched += 1
                        if w > 0:
                            acc[v] = bonus_scale * _profile(key_u, p_keys[p], shifts, masks, inv_u)
                    acc[v] += x * p_weights[p]
            # 1. the pool: partial plays + exact profile, the best `pool` by a linear-time selection
            m = 0
            for t in range(n_touched):
                v = touched[t]
                if v == u:
                    continue
                cand_s[m] = acc[v]
                cand_i[m] = v
                m += 1
            size = _select_best(cand_s, cand_i, m, pool, scratch, pool_i)
            # 2. exact re-scoring of the pool
            top = 0
            for h in range(size):
                v = pool_i[h]
                s = (1.0 - w) * _dot(dense, c_ptr, c_idx, c_val, v)
                if w > 0:
                    s += w * _profile(key_u, keys[v], shifts, masks, inv_u)
                top = _heap_push(top_s, top_i, top, k, s, v)
            # 3. users who share no indexed artist but match the profile, when they can make the top k
            if w > 0 and (top < k or top_s[0] <= w):
                for g in range(len(g_ptr) - 1):
                    prof = _profile(key_u, keys[g_users[g_ptr[g]]], shifts, masks, inv_u)
                    if prof <= 0 or (top == k and w * prof < top_s[0]):
                        continue
                    taken = 0
                    for q in range(g_ptr[g], g_ptr[g + 1]):
                        v = g_users[q]
                        if v == u or acc[v] > 0:
                            continue
                        s = (1.0 - w) * _dot(dense, c_ptr, c_idx, c_val, v) + w * prof
                        top = _heap_push(top_s, top_i, top, k, s, v)
                        taken += 1
                        if taken == k:  # the rest of the group only ties (exact search) or is a long shot
                            break
            # best first, ties to the lower row: pop the heap's root (its worst) into the last free slot
            for h in range(top - 1, -1, -1):
                out_idx[r, h] = top_i[0]
                out_sim[r, h] = top_s[0]
                _heap_pop(top_s, top_i, h + 1)
            for t in range(n_touched):
                acc[touched[t]] = 0.0
            for j in range(c_ptr[u], c_ptr[u + 1]):
                dense[c_idx[j]] = 0.0
    return out_idx, out_sim


def exact_neighbours(content: sp.csr_matrix, codes: np.ndarray | None, profile_weight: float, rows: np.ndarray,
                     k: int, candidates: np.ndarray) -> Neighbours:
    """Exact top-``k`` by blended cosine for ``rows`` among ``candidates`` (a boolean mask over users); builds a
    full index first, so for repeated calls build a :class:`PostingIndex` once and use :func:`search`."""
    codes = np.full((content.shape[0], 0), -1, np.int32) if codes is None else codes
    index = PostingIndex.build(content, codes, candidates, postings=None)
    return search(content, codes, profile_weight if codes.shape[1] else 0.0, index, rows, k)


# -- SVD + HNSW (the earlier approximate search, kept for comparison) ---------------------------------------

def svd_embedding(vectors: sp.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """Rows of ``U·Σ`` of a rank-``dim`` truncated SVD, unit length: their dot products approximate the cosine
    of the original rows (``X Xᵀ ≈ U Σ² Uᵀ``)."""
    from sklearn.utils.extmath import randomized_svd

    dim = min(dim, min(vectors.shape) - 1)
    u, s, _ = randomized_svd(vectors, n_components=dim, n_iter=4, random_state=seed)
    emb = (u * s).astype(np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return emb / norms


class AnnIndex:
    """An hnswlib graph over the warm users' embeddings (labels are user rows)."""

    def __init__(self, index, dim: int) -> None:
        self.index, self.dim = index, dim

    @classmethod
    def build(cls, emb: np.ndarray, candidates: np.ndarray, *, m: int, ef_construction: int, seed: int) -> AnnIndex:
        """Built single-threaded: insertion order shapes the graph, so this keeps a rerun's neighbours identical."""
        import hnswlib

        labels = np.nonzero(candidates)[0]
        index = hnswlib.Index(space="ip", dim=emb.shape[1])
        index.init_index(max_elements=max(len(labels), 1), ef_construction=ef_construction, M=m, random_seed=seed)
        if len(labels):
            index.add_items(emb[labels], labels, num_threads=1)
        return cls(index, emb.shape[1])

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    @classmethod
    def load(cls, path: Path, dim: int) -> AnnIndex:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path))
        return cls(index, dim)

    def query(self, emb: np.ndarray, rows: np.ndarray, k: int, ef: int, threads: int = -1) -> Neighbours:
        """Top-``k`` other users for ``rows`` (the query itself removed); similarity = inner product."""
        count = self.index.get_current_count()
        if count == 0 or len(rows) == 0:
            return Neighbours(np.full((len(rows), k), -1, np.int32), np.zeros((len(rows), k), np.float32))
        kq = min(k + 1, count)
        self.index.set_ef(max(ef, kq))
        labels, dist = self.index.knn_query(emb[rows], k=kq, num_threads=threads)
        labels = labels.astype(np.int64)
        sims = (1.0 - dist).astype(np.float32)
        is_self = labels == rows[:, None]
        n = len(rows)
        if kq == k + 1:  # drop the query itself where found, else the weakest hit: k per row
            drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kq - 1)
            keep = np.ones_like(is_self)
            keep[np.arange(n), drop] = False
            return Neighbours(labels[keep].reshape(n, k).astype(np.int32), sims[keep].reshape(n, k))
        idx = np.full((n, k), -1, np.int32)  # a tiny index: every other user is a neighbour
        val = np.zeros((n, k), np.float32)
        for r in range(n):
            sel = ~is_self[r]
            idx[r, :sel.sum()], val[r, :sel.sum()] = labels[r][sel], sims[r][sel]
        return Neighbours(idx, val)


# -- judging an approximate search against the exact one -------------------------------------------------------

def neighbour_recall(approx: Neighbours, exact: Neighbours) -> float:
    """Share of the exact top-K found by the approximate search (rows without exact neighbours skipped).

    Near-ties make this a harsh figure: when many users are almost equally similar, which of them make the exact
    top K is nearly arbitrary; :func:`similarity_ratio` judges what was found by the exact measure instead."""
    hits = total = 0
    for a, e in zip(approx.indices, exact.indices, strict=True):
        e = e[e >= 0]
        if len(e):
            hits += len(np.intersect1d(a[a >= 0], e))
            total += len(e)
    return hits / total if total else float("nan")


def pair_similarity(content: sp.csr_matrix, codes: np.ndarray | None, profile_weight: float, rows: np.ndarray,
                    neighbour_idx: np.ndarray) -> np.ndarray:
    """Exact blended cosine of each (row, neighbour) pair (0 where the neighbour slot is empty)."""
    k = neighbour_idx.shape[1]
    flat = neighbour_idx.ravel()
    valid = flat >= 0
    left = content[np.repeat(rows, k)[valid]]
    right = content[flat[valid]]
    sims = np.zeros(len(flat), np.float32)
    sims[valid] = np.asarray(left.multiply(right).sum(axis=1)).ravel()
    if profile_weight > 0 and codes is not None:
        a, b = codes[np.repeat(rows, k)[valid]], codes[flat[valid]]
        shared = ((a == b) & (a >= 0)).sum(axis=1)
        denom = np.sqrt((a >= 0).sum(axis=1) * (b >= 0).sum(axis=1))
        profile = np.divide(shared, denom, out=np.zeros(len(a)), where=denom > 0)
        sims[valid] = (1 - profile_weight) * sims[valid] + profile_weight * profile
    return sims.reshape(neighbour_idx.shape)


def similarity_ratio(approx_exact_sims: np.ndarray, exact: Neighbours) -> float:
    """How good the approximate neighbours are, judged by the exact measure: the total exact similarity of the
    approximate top-K over that of the exact top-K (1.0 = as similar; near-ties make this the fairer figure
    when many users are almost equally similar and recall alone looks poor)."""
    best = np.where(exact.indices >= 0, exact.sims, 0).sum()
    return float(approx_exact_sims.sum() / best) if best > 0 else float("nan")

"""Top-K most similar users, exactly (blockwise) or approximately (truncated SVD + an HNSW graph).

Exact search scores a block of query users against every candidate: the plays part is one sparse product,
the profile part compares three small integer codes, so nothing larger than ``block × users`` floats exists
at once. It costs O(users²) overall, which is why the daily run uses the approximate search by default: a
``svd_dim``-dimensional truncated SVD of the same blended vectors (cosine in that space approximates cosine
in the original one) indexed by hnswlib, whose neighbour recall against exact search the evaluation reports.

Only "warm" users (at least ``min_history`` artists) are candidates: a neighbour is useful for what it has
played, and cold users are served the popularity fallback anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp


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


def profile_similarity(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine of the one-hot profiles of ``rows`` against every user: shared fields / sqrt(n_u * n_v)."""
    present = (codes >= 0).sum(axis=1).astype(np.float32)
    shared = np.zeros((len(rows), codes.shape[0]), dtype=np.float32)
    for j in range(codes.shape[1]):
        q = codes[rows, j][:, None]
        shared += (codes[None, :, j] == q) & (q >= 0)
    denom = np.sqrt(present[rows][:, None] * present[None, :])
    return np.divide(shared, denom, out=np.zeros_like(shared), where=denom > 0)


def exact_neighbours(content: sp.csr_matrix, codes: np.ndarray | None, profile_weight: float, rows: np.ndarray,
                     k: int, candidates: np.ndarray, block: int = 256) -> Neighbours:
    """Exact top-``k`` by blended cosine for ``rows``, among ``candidates`` (a boolean mask over users)."""
    content_t = content.T.tocsr()
    out_idx = np.full((len(rows), k), -1, np.int32)
    out_sim = np.zeros((len(rows), k), np.float32)
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        sims = (content[part] @ content_t).toarray()
        if profile_weight > 0 and codes is not None:
            sims *= 1 - profile_weight
            sims += profile_weight * profile_similarity(codes, part)
        sims[:, ~candidates] = -np.inf
        sims[np.arange(len(part)), part] = -np.inf  # never your own neighbour
        idx, val = top_k_dense(sims, k)
        out_idx[start:start + len(part)], out_sim[start:start + len(part)] = idx, val
    return Neighbours(out_idx, out_sim)


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


def neighbour_recall(approx: Neighbours, exact: Neighbours) -> float:
    """Share of the exact top-K found by the approximate search (rows without exact neighbours skipped)."""
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

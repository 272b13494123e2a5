"""Top-K ranking metrics over a per-user holdout, vectorised over users.

Definitions (``rel_u`` = the user's held-out artists, ``hit_r`` = the item at rank r is in ``rel_u``):

* Precision@K = hits / K
* Recall@K = hits / |rel_u|
* NDCG@K = Σ_r hit_r / log2(r + 1) ÷ the same sum for a perfect list of min(K, |rel_u|) hits
* MAP@K = Σ_r hit_r · Precision@r ÷ min(K, |rel_u|)
* coverage = distinct artists recommended ÷ catalogue size

Each is averaged over users with at least one held-out artist.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hit_matrix(recommended: np.ndarray, holdout: sp.csr_matrix) -> np.ndarray:
    """Boolean (users × K): is the artist at each rank in the user's holdout (-1 = empty slot = miss)."""
    n_users = recommended.shape[0]
    width = np.int64(holdout.shape[1])
    truth = holdout.tocsr()
    truth_keys = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(truth.indptr)) * width + truth.indices
    rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * width + recommended
    return np.isin(rec_keys, truth_keys) & (recommended >= 0)


def ranking_metrics(recommended: np.ndarray, holdout: sp.csr_matrix, k: int, n_items: int | None = None) -> dict:
    """Precision, recall, NDCG, MAP at ``k`` and catalogue coverage for row-aligned recommendations."""
    recommended = np.asarray(recommended)[:, :k]
    if recommended.shape[1] < k:
        recommended = np.pad(recommended, ((0, 0), (0, k - recommended.shape[1])), constant_values=-1)
    n_rel = np.diff(holdout.tocsr().indptr)
    users = n_rel > 0
    hits = hit_matrix(recommended, holdout)[users]
    n_rel = n_rel[users].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k).astype(int) - 1]
    precision_at_r = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at_r * hits).sum(axis=1) / np.minimum(n_rel, k)
    n_hits = hits.sum(axis=1)
    recommended_items = np.unique(recommended[recommended >= 0])
    catalogue = n_items if n_items is not None else holdout.shape[1]
    return {
        f"precision_at_{k}": float(np.mean(n_hits / k)) if len(n_rel) else float("nan"),
        f"recall_at_{k}": float(np.mean(n_hits / n_rel)) if len(n_rel) else float("nan"),
        f"ndcg_at_{k}": float(np.mean(dcg / ideal)) if len(n_rel) else float("nan"),
        f"map_at_{k}": float(np.mean(ap)) if len(n_rel) else float("nan"),
        "coverage": len(recommended_items) / catalogue if catalogue else float("nan"),
        "users_evaluated": int(users.sum()),
    }

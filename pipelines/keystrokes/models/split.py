"""The held-out split: stratified by user, fixed by the seed, and stable for an attempt.

Within each user, attempts are ranked by a hash of (seed, sample id) and the first ``round(share × n)`` are
held out (at least one, and at least one left to train on; a user with a single attempt only trains). An
attempt's side depends on its own id and its user's count, not on file order, so re-ingesting the same data
gives the same split.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _rank_key(seed: int, sample_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{sample_id}".encode(), digest_size=8).digest()


def holdout_mask(sample_ids, labels, share: float, seed: int = 42) -> np.ndarray:
    """Boolean mask of held-out attempts (see the module docstring)."""
    if not 0 < share < 1:
        raise ValueError(f"holdout share must be strictly between 0 and 1, got {share}")
    sample_ids, labels = np.asarray(sample_ids, dtype=object), np.asarray(labels, dtype=object)
    mask = np.zeros(len(labels), dtype=bool)
    by_user: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_user.setdefault(label, []).append(i)
    for members in by_user.values():
        n = len(members)
        if n < 2:
            continue
        k = int(np.clip(round(share * n), 1, n - 1))
        ranked = sorted(members, key=lambda i: _rank_key(seed, str(sample_ids[i])))
        mask[ranked[:k]] = True
    return mask

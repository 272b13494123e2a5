"""Deterministic train / valid / test split of users by a hash of ``viewer_uid`` and a seed.

A user's split depends only on (uid, seed), not on who else is in the data, so the held-out users stay held out
across weekly retrains while new users spread over the splits in the same proportions.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uid_unit(uids, seed: int = 42) -> np.ndarray:
    """A uniform number in [0, 1) per uid, fixed by (uid, seed): integers by SplitMix64, anything else by BLAKE2b."""
    uids = np.asarray(uids)
    if np.issubdtype(uids.dtype, np.integer):
        with np.errstate(over="ignore"):
            key = uids.astype(np.int64).view(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.uint64))
            hashed = _splitmix64(key)
    else:
        hashed = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{u}".encode(), digest_size=8).digest(), "little")
                           for u in uids], dtype=np.uint64)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def split_users(uids, test_share: float = 0.2, valid_share: float = 0.1, seed: int = 42
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, valid, test) over ``uids``: disjoint, covering every user, deterministic."""
    if test_share < 0 or valid_share < 0 or test_share + valid_share >= 1:
        raise ValueError(f"bad shares test={test_share} valid={valid_share}")
    unit = uid_unit(uids, seed)
    test = unit < test_share
    valid = ~test & (unit < test_share + valid_share)
    return ~test & ~valid, valid, test

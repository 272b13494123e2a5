"""Seeded, stratified, near-duplicate-aware splits: the held-out articles and the CV folds.

A republished copy of an article (a headline marked "updated", a sentence changed) in the training folds and
the original in the validation fold would flatter every model: the copy is nearly the answer. So articles are
grouped first (:func:`near_duplicate_groups`: MinHash over their long sentences, then the Jaccard overlap
checked), and a group never straddles a split. Splits are stratified on the primary tag (the first one listed)
with scikit-learn's ``StratifiedGroupKFold``, shuffled with a fixed seed: the same data and seed give the same
splits.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

import numpy as np

_SENTENCE_BREAK = re.compile(r"[。？！?!\n]+")
_SPACE = re.compile(r"\s+")
_PRIME = (1 << 61) - 1


def _sentences(text: str, min_chars: int) -> set[int]:
    parts = {_SPACE.sub("", s) for s in _SENTENCE_BREAK.split(text)}
    keep = {p for p in parts if len(p) >= min_chars} or {_SPACE.sub("", text)}
    return {int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8).digest(), "big") for p in keep}


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_groups(texts: Sequence[str], threshold: float = 0.35, min_chars: int = 8, bands: int = 8,
                          rows: int = 1, seed: int = 0) -> np.ndarray:
    """A group number per article: articles whose long sentences overlap by ``threshold`` (Jaccard) or more are
    one group (transitively). MinHash with ``bands × rows`` hashes finds the candidates; each is then checked."""
    sets = [_sentences(t, min_chars) for t in texts]
    rng = random.Random(seed)
    coefficients = [(rng.randrange(1, _PRIME), rng.randrange(_PRIME)) for _ in range(bands * rows)]
    buckets: dict[tuple, list[int]] = {}
    for i, hashes in enumerate(sets):
        signature = [min((a * h + b) % _PRIME for h in hashes) for a, b in coefficients]
        for band in range(bands):
            key = (band, *signature[band * rows:(band + 1) * rows])
            buckets.setdefault(key, []).append(i)
    groups = _UnionFind(len(sets))
    checked: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        pairs = ((members[0], m) for m in members[1:]) if len(members) > 50 else \
            ((a, b) for k, a in enumerate(members) for b in members[k + 1:])
        for a, b in pairs:
            if (a, b) in checked:
                continue
            checked.add((a, b))
            overlap = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
            if overlap >= threshold:
                groups.union(a, b)
    roots = [groups.find(i) for i in range(len(sets))]
    _, numbered = np.unique(np.asarray(roots), return_inverse=True)
    return numbered.astype(np.int64)


def _splitter(n_splits: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def holdout_split(primary: Sequence[str], groups: np.ndarray, share: float = 0.2,
                  seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held out)`` row indices: one fold of a ``round(1 / share)``-fold stratified group split."""
    if not 0 < share < 1:
        raise ValueError(f"holdout share {share} is not strictly between 0 and 1")
    n_splits = max(2, round(1 / share))
    primary = np.asarray(primary)
    train, test = next(_splitter(n_splits, seed).split(np.zeros(len(primary)), primary, groups))
    return np.sort(train), np.sort(test)


def cv_folds(primary: Sequence[str], groups: np.ndarray, k: int = 5,
             seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` stratified, group-aware, seeded ``(train, validation)`` folds over the given rows (positions)."""
    primary = np.asarray(primary)
    if len(np.unique(groups)) < k:
        raise ValueError(f"{len(np.unique(groups))} article groups cannot make {k} folds")
    return [(np.sort(tr), np.sort(va)) for tr, va in _splitter(k, seed).split(np.zeros(len(primary)), primary, groups)]

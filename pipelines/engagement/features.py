"""Features from staged posts: hashed title n-grams, author target encoding, time of posting.

All of it is computed batch by batch in Arrow and NumPy (no Python loop over rows), so a streamed model sees
every post of a file larger than memory at hundreds of thousands of rows a second:

* **title tokens**: lower-cased, split on whitespace, punctuation trimmed from both ends of each word (any
  script); each token hashed once per batch (BLAKE2b, 8 bytes, cached across batches), bigrams combined from
  their two hashes; the model takes ``hash % buckets``. The same hashes feed the linear model's sparse
  columns and the neural model's embedding bag, and they do not depend on the data seen: nothing to fit,
  nothing to store.
* **author target encoding**: an author's smoothed mean of ``log1p(up_votes)``, ``(sum + m·ḡ) / (n + m)``,
  from the **training months only** (:class:`AuthorStats`). Rows the encoding is fitted on never see their own
  target: the streamed model uses ordered statistics (each row's encoding from the author's earlier training
  rows only, :class:`OrderedEncoder`), and sample-based models an encoding without the sample's rows.
* **time**: UTC hour and weekday, and years since June 2005 (so a linear model can follow the drift).

:data:`FEATURE_VERSION` names this definition; a saved model records it and scoring refuses another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pipelines.engagement import schema

#: Bumped when a change here changes what a feature means (models trained on another version are refused).
FEATURE_VERSION = "engagement-features-1"
#: Stripped from both ends of every word (words are split on whitespace: far faster than a regex split, and
#: "U.S." or "d'Ivoire" keep their inner punctuation).
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»—–…„·"
SECONDS_PER_YEAR = 365.25 * 86_400
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_BIGRAM = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
        return x ^ (x >> np.uint64(31))


class _TokenHashes:
    """Stable 64-bit hashes of token strings, cached (bounded) across batches."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self.cache: dict[str, int] = {}
        self.limit = limit

    def __call__(self, tokens: list[str]) -> np.ndarray:
        cache = self.cache
        missing = [t for t in tokens if t not in cache]
        if len(cache) + len(missing) > self.limit:
            cache.clear()
            missing = tokens
        for t in missing:
            cache[t] = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
        return np.fromiter((cache[t] for t in tokens), dtype=np.uint64, count=len(tokens))


_HASHES = _TokenHashes()


@dataclass
class Tokens:
    """The title n-grams of a batch: row ``r``'s hashes are ``hashes[offsets[r]:offsets[r + 1]]``."""

    offsets: np.ndarray  # int64, n + 1
    hashes: np.ndarray  # uint64: unigrams of a row, then its bigrams
    n_words: np.ndarray  # int64, words per row

    def buckets(self, n: int) -> np.ndarray:
        return (self.hashes % np.uint64(n)).astype(np.int64)


def title_tokens(titles, bigrams: bool = True) -> Tokens:
    """Unigram (and bigram) hashes of every title of an Arrow string array, vectorised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    titles = titles.combine_chunks() if isinstance(titles, pa.ChunkedArray) else titles
    n = len(titles)
    parts = pc.ascii_split_whitespace(pc.utf8_lower(pc.fill_null(titles, "")))
    flat = pc.utf8_trim(pc.list_flatten(parts), PUNCTUATION)
    parent = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    flat, parent = flat.filter(nonempty), parent[nonempty.to_numpy(zero_copy_only=False)]
    encoded = pc.dictionary_encode(flat)
    unique = encoded.dictionary.to_pylist()
    uni = _HASHES(unique)[encoded.indices.to_numpy(zero_copy_only=False)] if len(unique) else np.zeros(0, np.uint64)
    n_words = np.bincount(parent, minlength=n).astype(np.int64)
    if not bigrams or len(uni) < 2:
        offsets = np.concatenate([[0], np.cumsum(n_words)])
        return Tokens(offsets=offsets, hashes=uni, n_words=n_words)
    same = parent[1:] == parent[:-1]
    with np.errstate(over="ignore"):
        bi = _splitmix(uni[:-1][same] * _BIGRAM + uni[1:][same])
    rows = np.concatenate([parent, parent[:-1][same]])
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n)
    return Tokens(offsets=np.concatenate([[0], np.cumsum(counts)]), hashes=np.concatenate([uni, bi])[order],
                  n_words=n_words)


def hashed_strings(values, n: int) -> np.ndarray:
    """A stable bucket in ``[0, n)`` per string (authors for the neural model's embedding)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    encoded = pc.dictionary_encode(pc.fill_null(values, ""))
    unique = encoded.dictionary.to_pylist()
    hashes = _HASHES(unique) if unique else np.zeros(0, np.uint64)
    return (hashes % np.uint64(n)).astype(np.int64)[encoded.indices.to_numpy(zero_copy_only=False)]


def time_features(time_created: np.ndarray) -> dict[str, np.ndarray]:
    """UTC ``hour`` (0-23), ``weekday`` (0 = Monday) and ``years`` since June 2005 of unix times."""
    t = np.asarray(time_created, dtype=np.int64)
    return {"hour": (t % 86_400) // 3_600, "weekday": ((t // 86_400) + 3) % 7,
            "years": (t - schema.MIN_TIME) / SECONDS_PER_YEAR}


def target(up_votes) -> np.ndarray:
    """The regression target: ``log1p(up_votes)``."""
    return np.log1p(np.asarray(up_votes, dtype=np.float64))


# ----------------------------------------------------------------------------------------------- authors
@dataclass
class AuthorStats:
    """Per-author count and sum of the target over the training months, and the smoothing."""

    authors: np.ndarray  # sorted unique author names (object array)
    n: np.ndarray  # float64
    s: np.ndarray  # float64
    prior_mean: float
    prior_weight: float = 20.0

    def index(self, authors) -> np.ndarray:
        """Position of each author in :attr:`authors`, -1 when unseen in training. ``authors`` is an Arrow array
        (or anything ``pyarrow.array`` takes): a batch's distinct names are looked up once each."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if getattr(self, "_lookup", None) is None:
            self._lookup = {a: i for i, a in enumerate(self.authors.tolist())}
        if isinstance(authors, pa.ChunkedArray):
            authors = authors.combine_chunks()
        elif not isinstance(authors, pa.Array):
            authors = pa.array(list(authors), pa.string())
        encoded = pc.dictionary_encode(pc.fill_null(authors, ""))
        lookup = self._lookup
        positions = np.fromiter((lookup.get(a, -1) for a in encoded.dictionary.to_pylist()), dtype=np.int64,
                                count=len(encoded.dictionary))
        return positions[encoded.indices.to_numpy(zero_copy_only=False)] if len(authors) else np.zeros(0, np.int64)

    def encode(self, authors, exclude_n: np.ndarray | None = None, exclude_s: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(encoding, log1p(count))`` per row; ``exclude_*`` are per-row amounts taken out of the author's
        statistics first (a sample's own rows, so its rows never see their own targets)."""
        idx = self.index(authors)
        seen = idx >= 0
        n = np.where(seen, self.n[np.maximum(idx, 0)], 0.0)
        s = np.where(seen, self.s[np.maximum(idx, 0)], 0.0)
        if exclude_n is not None:
            n, s = n - exclude_n, s - exclude_s
        m, g = self.prior_weight, self.prior_mean
        return (s + m * g) / (n + m), np.log1p(n)

    def to_table(self):
        import pyarrow as pa

        return pa.table({"author": pa.array(self.authors.tolist(), pa.string()), "n": self.n, "s": self.s})

    @classmethod
    def from_table(cls, table, prior_mean: float, prior_weight: float) -> AuthorStats:
        order = np.argsort(np.asarray(table["author"].to_pylist(), dtype=object), kind="stable")
        authors = np.asarray(table["author"].to_pylist(), dtype=object)[order]
        return cls(authors=authors, n=table["n"].to_numpy()[order].astype(np.float64),
                   s=table["s"].to_numpy()[order].astype(np.float64), prior_mean=prior_mean,
                   prior_weight=prior_weight)


def _running(key: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, how many earlier rows of the batch share its key, and the sum of their ``y``."""
    order = np.argsort(key, kind="stable")
    k, v = key[order], y[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    group = np.repeat(starts, np.diff(np.r_[starts, len(k)]))
    count = np.arange(len(k)) - group
    csum = np.cumsum(v)
    before = csum - v - np.where(group > 0, csum[group - 1], 0.0)
    n, s = np.empty(len(k)), np.empty(len(k))
    n[order], s[order] = count, before
    return n, s


class OrderedEncoder:
    """Target encoding of the training stream in stream order: a row's encoding comes from the author's rows
    before it only, then the row is added (CatBoost's ordered statistics; no row sees its own target)."""

    def __init__(self, stats: AuthorStats) -> None:
        self.stats = stats
        self.n = np.zeros(len(stats.authors))
        self.s = np.zeros(len(stats.authors))

    def reset(self) -> None:
        self.n[:] = 0.0
        self.s[:] = 0.0

    def encode_and_update(self, authors, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = self.stats.index(authors)
        before_n, before_s = _running(idx, y)
        seen = idx >= 0
        safe = np.maximum(idx, 0)
        n = np.where(seen, self.n[safe], 0.0) + before_n
        s = np.where(seen, self.s[safe], 0.0) + before_s
        np.add.at(self.n, idx[seen], 1.0)
        np.add.at(self.s, idx[seen], y[seen])
        m, g = self.stats.prior_weight, self.stats.prior_mean
        return (s + m * g) / (n + m), np.log1p(n)

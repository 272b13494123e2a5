"""Features of valid attempts: a fixed-width table for the classic models, event sequences for the networks.

Table (:data:`FEATURE_NAMES`), from the replayed attempt (:func:`~pipelines.keystrokes.replay.replay`):

* ``lat_01`` .. ``lat_36``: for each character of the phrase from the second, log milliseconds from the press
  just before it to the press that typed it (the one that survived): the digraph latency, or, at a corrected
  position, the time from the last backspace to the retyped key (measured: taking the span from the previous
  surviving character instead, which includes the whole correction, cut the identification of 1,000 new users
  by a learnt linear metric from 24% to 14%: one correction makes an outlier of that position);
* ``word_1`` .. ``word_6``: log milliseconds from the first to the last character of each word;
* ``total_log_ms`` and ``chars_per_s`` (speed), the mean / std / median of the character latencies;
* pauses: gaps longer than three times the attempt's median gap (``pause_count``, ``pause_share``) and the
  longest gap (``max_gap_log``);
* the error habits published solutions threw away: ``backspaces``, ``corrections`` (separate runs),
  ``deleted`` characters, ``backspace_rate`` (share of events), ``backspace_on_empty``, ``n_events`` and the
  mean reaction before a correction's first backspace (``bs_reaction_log``, 0 without corrections).

Sequences (:func:`sequences`): per event a character id (:func:`char_id`; padding 0) and four numbers: the
standardised log gap since the previous event, whether it is a backspace, the cursor position / 37 and
whether it starts a correction. At most :data:`MAX_LEN` events (the rest is cut; 400-event attempts are
quarantined long before).

:data:`FEATURE_VERSION` changes whenever these definitions do: a model records it, and scoring refuses a model
trained on another one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from pipelines.keystrokes import schema
from pipelines.keystrokes.replay import replay

L = len(schema.PHRASE)
MAX_LEN = 96
N_SEQ_FEATURES = 4
#: Character ids: 0 padding, 1 unknown, 2 backspace, 3.. printable ASCII (space = 3).
PAD, UNKNOWN, BACKSPACE_ID, FIRST_ASCII = 0, 1, 2, 3
VOCAB = FIRST_ASCII + (127 - 32)
#: Standardisation of log gaps in the sequences (log ms): roughly a typist's median and spread.
LOG_GAP_CENTER, LOG_GAP_SCALE = 5.2, 0.7

FEATURE_NAMES: tuple[str, ...] = (
    *(f"lat_{i:02d}" for i in range(1, L)),
    *(f"word_{w + 1}" for w in range(len(schema.WORDS))),
    "total_log_ms", "chars_per_s", "lat_mean", "lat_std", "lat_median", "pause_count", "pause_share",
    "max_gap_log", "backspaces", "corrections", "deleted", "backspace_rate", "backspace_on_empty", "n_events",
    "bs_reaction_log",
)
FEATURE_VERSION = hashlib.sha256(("v2|" + ",".join(FEATURE_NAMES) + f"|{MAX_LEN}|{N_SEQ_FEATURES}").encode()
                                 ).hexdigest()[:12]


def char_id(char: str) -> int:
    if char == schema.BACKSPACE:
        return BACKSPACE_ID
    code = ord(char) if len(char) == 1 else -1
    return FIRST_ASCII + code - 32 if 32 <= code < 127 else UNKNOWN


def _log_ms(value: float) -> float:
    return float(np.log(max(value, 1.0)))


def attempt_features(chars: Sequence[str], times_us: Sequence[int]) -> np.ndarray:
    """The feature vector of one valid attempt (``len(FEATURE_NAMES)`` numbers)."""
    played = replay(chars)
    if played.text != schema.PHRASE:
        raise ValueError(f"not a valid attempt: replays to {played.text[:40]!r}")
    t = np.asarray(times_us, dtype=np.float64) / 1000.0
    kept = t[list(played.kept)]
    source = np.asarray(played.kept[1:])
    lat = np.log(np.maximum(t[source] - t[source - 1], 1.0))
    words = [_log_ms(kept[b] - kept[a]) for a, b in schema.WORDS]
    gaps = np.diff(t)
    total = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    median_gap = float(np.median(gaps)) if len(gaps) else 0.0
    pauses = int((gaps > 3 * max(median_gap, 1.0)).sum()) if len(gaps) else 0
    reactions = []
    for j in range(1, len(chars)):
        if chars[j] == schema.BACKSPACE and chars[j - 1] != schema.BACKSPACE:
            reactions.append(_log_ms(t[j] - t[j - 1]))
    n = played.n_events
    return np.array([
        *lat, *words,
        _log_ms(total), L / max(total / 1000.0, 1e-3), float(lat.mean()), float(lat.std()), float(np.median(lat)),
        pauses, pauses / max(len(gaps), 1), _log_ms(float(gaps.max()) if len(gaps) else 0.0),
        played.backspaces, played.corrections, played.deleted, played.backspaces / max(n, 1),
        played.backspace_on_empty, n, float(np.mean(reactions)) if reactions else 0.0,
    ], dtype=np.float64)


def feature_matrix(chars: Sequence[Sequence[str]], times_us: Sequence[Sequence[int]]) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) features of n attempts."""
    out = np.empty((len(chars), len(FEATURE_NAMES)), dtype=np.float64)
    for i, (c, t) in enumerate(zip(chars, times_us, strict=True)):
        out[i] = attempt_features(c, t)
    return out


def sequence(chars: Sequence[str], times_us: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One attempt as (ids (T,), numbers (T, 4)), T ≤ MAX_LEN."""
    n = min(len(chars), MAX_LEN)
    ids = np.fromiter((char_id(c) for c in chars[:n]), dtype=np.int64, count=n)
    t = np.asarray(times_us[:n], dtype=np.float64) / 1000.0
    gaps = np.concatenate([[0.0], np.diff(t)])
    num = np.zeros((n, N_SEQ_FEATURES), dtype=np.float32)
    num[1:, 0] = (np.log(np.maximum(gaps[1:], 1.0)) - LOG_GAP_CENTER) / LOG_GAP_SCALE
    is_bs = ids == BACKSPACE_ID
    num[:, 1] = is_bs
    cursor = np.concatenate([[0], np.cumsum(np.where(is_bs, -1, 1))[:-1]])
    num[:, 2] = np.maximum(cursor, 0) / L
    num[1:, 3] = is_bs[1:] & ~is_bs[:-1]
    num[0, 3] = is_bs[0]
    return ids, num


def sequences(chars: Sequence[Sequence[str]], times_us: Sequence[Sequence[int]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded (ids (n, T), numbers (n, T, 4), lengths (n,)) of n attempts, T = the longest (≤ MAX_LEN)."""
    parts = [sequence(c, t) for c, t in zip(chars, times_us, strict=True)]
    lengths = np.array([len(p[0]) for p in parts], dtype=np.int64)
    width = max(1, int(lengths.max(initial=1)))
    ids = np.zeros((len(parts), width), dtype=np.int64)
    num = np.zeros((len(parts), width, N_SEQ_FEATURES), dtype=np.float32)
    for i, (a, b) in enumerate(parts):
        ids[i, : len(a)] = a
        num[i, : len(a)] = b
    return ids, num, lengths


class Samples:
    """Valid attempts with their labels, features computed on demand and cached."""

    def __init__(self, sample_ids: Sequence[str], chars: Sequence[Sequence[str]], times_us: Sequence[Sequence[int]],
                 labels: Sequence[str] | None = None) -> None:
        self.sample_ids = np.asarray(sample_ids, dtype=object)
        self.chars = list(chars)
        self.times_us = list(times_us)
        self.labels = None if labels is None else np.asarray(labels, dtype=object)
        self._table: np.ndarray | None = None
        self._seq: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def table(self) -> np.ndarray:
        if self._table is None:
            self._table = feature_matrix(self.chars, self.times_us)
        return self._table

    @property
    def seq(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._seq is None:
            self._seq = sequences(self.chars, self.times_us)
        return self._seq

    def subset(self, idx: np.ndarray) -> Samples:
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        out = Samples(self.sample_ids[idx], [self.chars[i] for i in idx], [self.times_us[i] for i in idx],
                      None if self.labels is None else self.labels[idx])
        if self._table is not None:
            out._table = self._table[idx]
        return out

    @classmethod
    def from_frame(cls, frame) -> Samples:
        """From a staged ``samples.parquet`` / valid rows of ``attempts.parquet`` as a DataFrame."""
        labels = frame["user_label"].tolist() if "user_label" in frame else None
        return cls(frame["sample_id"].tolist(), [list(c) for c in frame["chars"]],
                   [list(t) for t in frame["times_us"]], labels)

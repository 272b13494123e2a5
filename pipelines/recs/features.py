"""User vectors for user-user similarity: weighted plays and profile features in one sparse matrix.

Each user is ``[sqrt(1 - w) * plays_u / |plays_u|, sqrt(w) * profile_u / |profile_u|]``, so the cosine of two
users is ``(1 - w) * cos(plays) + w * cos(profile)``: ``w`` (``profile_weight``) is exactly the share the profile
has in the similarity. Plays are weighted first (BM25 by default) so a user's hundred-thousand-play favourite
does not drown the rest, and artists everyone plays count for less than shared niche taste.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

Weighting = Literal["bm25", "log", "tfidf", "none"]
PROFILE_FIELDS = ("gender", "age_band", "country")
NEIGHBOUR_SEARCHES = ("approx", "exact", "svd_hnsw")


@dataclass(frozen=True)
class ModelParams:
    """Everything that shapes a recommendation version (the DAG's Params map onto these)."""

    k_neighbours: int = 200
    n_recs: int = 10
    weighting: Weighting = "bm25"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    profile_weight: float = 0.1
    min_history: int = 3  # users with fewer artists get the cold-start list
    #: approx: pruned inverted index + exact re-scoring (neighbours.py); exact: every posting (O(users²));
    #: svd_hnsw: the earlier truncated SVD + HNSW graph, kept for comparison.
    neighbours: Literal["approx", "exact", "svd_hnsw"] = "approx"
    index_postings: int = 300  # approx: listeners kept per artist in the index (its heaviest weights)
    rerank: int = 2  # approx and svd_hnsw: rerank × k candidates re-scored exactly, the k best kept (0/1 = k)
    svd_dim: int = 64  # svd_hnsw only, like the three below
    hnsw_m: int = 16
    hnsw_ef_construction: int = 100
    hnsw_ef: int = 100
    min_group_users: int = 30  # a country / age-band group needs this many users for its own popular list
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "k_neighbours": 1 <= self.k_neighbours <= 1000,
            "n_recs": 1 <= self.n_recs <= 100,
            "weighting": self.weighting in ("bm25", "log", "tfidf", "none"),
            "profile_weight": 0.0 <= self.profile_weight < 1.0,
            "min_history": self.min_history >= 1,
            "neighbours": self.neighbours in NEIGHBOUR_SEARCHES,
            "index_postings": 1 <= self.index_postings <= 10_000_000,
            "svd_dim": 2 <= self.svd_dim <= 1024,
            "hnsw_m": 2 <= self.hnsw_m <= 128,
            "hnsw_ef": self.hnsw_ef >= 1,
            "rerank": 0 <= self.rerank <= 20,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid model parameters {bad}: {self}")

    @property
    def pool(self) -> int:
        """Candidates an approximate search re-scores exactly per user."""
        return max(1, self.rerank) * self.k_neighbours

    @classmethod
    def from_mapping(cls, values: dict | None) -> ModelParams:
        """Build from a DAG's Params or CLI options, ignoring keys that are not model parameters."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known and v is not None})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Snapshot:
    """A staged day: the user × artist play matrix and its two dimension tables."""

    plays: sp.csr_matrix  # users × artists, raw play counts (float32)
    users: pd.DataFrame  # indexed by user_idx
    artists: pd.DataFrame  # indexed by artist_idx

    @property
    def n_users(self) -> int:
        return self.plays.shape[0]

    @property
    def n_artists(self) -> int:
        return self.plays.shape[1]


def load_snapshot(staged_dir: Path) -> Snapshot:
    """Read the staged Parquet files of one day into a CSR matrix (about 12 bytes per play row)."""
    users = pq.read_table(staged_dir / "users.parquet").to_pandas().set_index("user_idx").sort_index()
    artists = pq.read_table(staged_dir / "artists.parquet").to_pandas().set_index("artist_idx").sort_index()
    table = pq.read_table(staged_dir / "interactions.parquet", columns=["user_idx", "artist_idx", "plays"])
    rows = table.column("user_idx").to_numpy()
    cols = table.column("artist_idx").to_numpy()
    vals = table.column("plays").to_numpy().astype(np.float32)
    del table
    plays = sp.csr_matrix((vals, (rows, cols)), shape=(len(users), len(artists)), dtype=np.float32)
    plays.sum_duplicates()
    return Snapshot(plays=plays, users=users, artists=artists)


def weight_plays(plays: sp.csr_matrix, params: ModelParams) -> sp.csr_matrix:
    """Per-user weighting of play counts (rows are users, columns artists)."""
    if params.weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        weighted = bm25_weight(plays, K1=params.bm25_k1, B=params.bm25_b).tocsr()
    elif params.weighting == "tfidf":
        weighted = plays.copy()
        df = np.bincount(plays.indices, minlength=plays.shape[1])
        idf = np.log(plays.shape[0] / (1.0 + df)).astype(np.float32)
        weighted.data = np.log1p(weighted.data) * idf[weighted.indices]
    elif params.weighting == "log":
        weighted = plays.copy()
        weighted.data = np.log1p(weighted.data)
    else:
        weighted = plays.copy()
    weighted.data = np.maximum(weighted.data, 0).astype(np.float32)  # a negative idf would invert similarity
    weighted.eliminate_zeros()
    return weighted.astype(np.float32)


def l2_normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.diags((1.0 / norms).astype(np.float32)) @ matrix


def profile_codes(users: pd.DataFrame) -> np.ndarray:
    """Integer codes (users × 3: gender, age band, country), -1 where unknown."""
    codes = np.full((len(users), len(PROFILE_FIELDS)), -1, dtype=np.int32)
    for j, name in enumerate(PROFILE_FIELDS):
        values = users[name].astype("string").fillna("")
        values = values.where(values != "", None)
        codes[:, j] = pd.Categorical(values).codes
    return codes


def profile_matrix(codes: np.ndarray) -> sp.csr_matrix:
    """One-hot profile with unit rows: cosine = shared fields / sqrt(fields_u * fields_v)."""
    n = codes.shape[0]
    offsets = np.concatenate([[0], np.cumsum(codes.max(axis=0) + 1)])
    rows, cols = np.nonzero(codes >= 0)
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, codes[rows, cols] + offsets[cols])), shape=(n, int(offsets[-1])))
    return l2_normalise_rows(matrix)


def user_vectors(snapshot: Snapshot, params: ModelParams) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(``content``, ``vectors``): the normalised weighted plays, and the blended vectors for similarity."""
    content = l2_normalise_rows(weight_plays(snapshot.plays, params)).tocsr()
    w = params.profile_weight
    if w == 0:
        return content, content
    profile = profile_matrix(profile_codes(snapshot.users))
    vectors = sp.hstack([content * np.float32(np.sqrt(1 - w)), profile * np.float32(np.sqrt(w))], format="csr")
    return content, vectors.astype(np.float32)


def history_sizes(plays: sp.csr_matrix) -> np.ndarray:
    return np.diff(plays.indptr)


def staged_path(root, day) -> Path:
    """Local folder of the day's accepted snapshot (downloaded first for an S3 data root)."""
    from pipelines.recs.ingest import staged_dir

    return staged_dir(root, day)

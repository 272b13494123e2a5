"""The user-user recommender as one object: fitted once per version, then asked for any block of users.

``fit`` does the work every shard shares (weighting, the blended vectors, the fallback lists, and the neighbour
index: the pruned or full inverted index, or for ``svd_hnsw`` the SVD and the HNSW graph); ``save``/``load``
move it through the data root, so each mapped shard task loads it and recommends only its own users.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.recs.features import ModelParams, Snapshot, history_sizes, profile_codes, user_vectors
from pipelines.recs.neighbours import (
    AnnIndex,
    Neighbours,
    PostingIndex,
    pair_similarity,
    search,
    svd_embedding,
    top_k_dense,
)
from pipelines.recs.recommend import FallbackLists, cf_top_n, complete

log = logging.getLogger(__name__)

#: Cold users need ``n_recs`` artists they have not played: keep this many more in each fallback list.
FALLBACK_MARGIN = 20


@dataclass
class UserUserModel:
    params: ModelParams
    plays: sp.csr_matrix
    content: sp.csr_matrix
    codes: np.ndarray
    users: pd.DataFrame
    fallback: FallbackLists
    emb: np.ndarray | None = None
    index: AnnIndex | None = None
    postings: dict[str, PostingIndex] = field(default_factory=dict)  # "approx" / "exact" → its index
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def candidates(self) -> np.ndarray:
        return history_sizes(self.plays) >= self.params.min_history

    @classmethod
    def fit(cls, snapshot: Snapshot, params: ModelParams) -> UserUserModel:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        content, vectors = user_vectors(snapshot, params)
        codes = profile_codes(snapshot.users)
        timings["vectors_s"] = time.perf_counter() - t
        t = time.perf_counter()
        fallback = FallbackLists.build(snapshot.plays, snapshot.users, params.n_recs + FALLBACK_MARGIN,
                                       params.min_group_users)
        timings["fallback_s"] = time.perf_counter() - t
        model = cls(params, snapshot.plays, content, codes, snapshot.users, fallback, timings=timings)
        if params.neighbours == "svd_hnsw":
            t = time.perf_counter()
            model.emb = svd_embedding(vectors, params.svd_dim, params.seed)
            timings["svd_s"] = time.perf_counter() - t
            t = time.perf_counter()
            model.index = AnnIndex.build(model.emb, model.candidates, m=params.hnsw_m,
                                         ef_construction=params.hnsw_ef_construction, seed=params.seed)
        else:
            t = time.perf_counter()
            model.posting_index(params.neighbours)
        timings["index_s"] = time.perf_counter() - t
        log.info("fitted user-user model on %d users × %d artists: %s", *snapshot.plays.shape, timings)
        return model

    def posting_index(self, kind: str) -> PostingIndex:
        """The inverted index of the ``approx`` (pruned) or ``exact`` (full) search, built on first use."""
        if kind not in self.postings:
            keep = self.params.index_postings if kind == "approx" else None
            self.postings[kind] = PostingIndex.build(self.content, self.codes, self.candidates, keep)
        return self.postings[kind]

    def neighbours(self, rows: np.ndarray, kind: str | None = None) -> Neighbours:
        """Top ``k_neighbours`` users for ``rows`` by the chosen search (default: the model's own)."""
        kind = kind or self.params.neighbours
        k = self.params.k_neighbours
        rows = np.asarray(rows, dtype=np.int64)
        if kind == "svd_hnsw":
            return self._svd_hnsw(rows, k)
        if kind not in ("approx", "exact"):
            raise ValueError(f"unknown neighbour search {kind!r}")
        return search(self.content, self.codes, self.params.profile_weight, self.posting_index(kind), rows, k,
                      pool=self.params.pool if kind == "approx" else k)

    def _svd_hnsw(self, rows: np.ndarray, k: int) -> Neighbours:
        if self.index is None or self.emb is None:
            raise ValueError("this model was not fitted with svd_hnsw neighbours")
        if self.params.rerank <= 1:
            return self.index.query(self.emb, rows, k, self.params.hnsw_ef)
        wide_k = self.params.pool
        wide = self.index.query(self.emb, rows, wide_k, max(self.params.hnsw_ef, wide_k))
        sims = pair_similarity(self.content, self.codes, self.params.profile_weight, rows, wide.indices)
        sims[wide.indices < 0] = -np.inf
        order, best = top_k_dense(sims, k)
        idx = np.where(order >= 0, np.take_along_axis(wide.indices, np.maximum(order, 0), axis=1), -1)
        return Neighbours(idx.astype(np.int32), np.where(order >= 0, best, 0).astype(np.float32))

    def recommend(self, rows: np.ndarray, *, block: int = 8192, kind: str | None = None,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Top-``n_recs`` artist rows, scores and source for each user row, in blocks of ``block`` users."""
        from tqdm import tqdm

        n = self.params.n_recs
        out_idx = np.full((len(rows), n), -1, np.int32)
        out_val = np.zeros((len(rows), n), np.float32)
        sources: list[str] = []
        candidates = self.candidates
        for start in tqdm(range(0, len(rows), block), desc="recommend", unit="block", disable=not progress):
            part = np.asarray(rows[start:start + block])
            seen = self.plays[part]
            warm = part[candidates[part]]
            idx = np.full((len(part), n), -1, np.int32)
            val = np.zeros((len(part), n), np.float32)
            if len(warm):
                pos = np.nonzero(candidates[part])[0]
                idx[pos], val[pos] = cf_top_n(self.neighbours(warm, kind), self.content, self.plays, warm, n)
            idx, val, src = complete(idx, val, part, self.users, seen, self.fallback, self.params.min_history)
            out_idx[start:start + len(part)], out_val[start:start + len(part)] = idx, val
            sources.extend(src)
        return out_idx, out_val, sources

    # -- persistence: one folder per version ---------------------------------------------------------

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        sp.save_npz(folder / "plays.npz", self.plays, compressed=False)
        sp.save_npz(folder / "content.npz", self.content, compressed=False)
        np.save(folder / "codes.npy", self.codes)
        (folder / "fallback.json").write_text(json.dumps(
            [{"country": c, "band": b, "artists": i.tolist(), "listeners": v.tolist()}
             for (c, b), (i, v) in self.fallback.lists.items()]))
        self.users.to_parquet(folder / "users.parquet")
        meta = {"params": self.params.as_dict(), "timings": self.timings,
                "emb_dim": None if self.emb is None else int(self.emb.shape[1])}
        if self.emb is not None and self.index is not None:
            np.save(folder / "emb.npy", self.emb)
            self.index.save(folder / "hnsw.bin")
        if self.params.neighbours in self.postings:
            self.postings[self.params.neighbours].save(folder)
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        return sorted(p for p in folder.iterdir() if p.is_file())

    @classmethod
    def load(cls, folder: Path) -> UserUserModel:
        meta = json.loads((folder / "model.json").read_text())
        params = ModelParams(**meta["params"])
        fallback = FallbackLists({
            (g["country"], g["band"]): (np.asarray(g["artists"], np.int32), np.asarray(g["listeners"], np.float32))
            for g in json.loads((folder / "fallback.json").read_text())})
        model = cls(params, sp.load_npz(folder / "plays.npz").tocsr(), sp.load_npz(folder / "content.npz").tocsr(),
                    np.load(folder / "codes.npy"), pd.read_parquet(folder / "users.parquet"), fallback,
                    timings=meta.get("timings", {}))
        if meta.get("emb_dim"):
            model.emb = np.load(folder / "emb.npy")
            model.index = AnnIndex.load(folder / "hnsw.bin", meta["emb_dim"])
        if (folder / "postings.npz").exists():
            model.postings[params.neighbours] = PostingIndex.load(folder, model.codes, model.candidates)
        return model

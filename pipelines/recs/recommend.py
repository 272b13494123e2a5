"""From neighbours to ranked unseen artists, and the cold-start lists.

A user's candidate artists are scored ``Σ_v sim(u, v) · w(v, a)`` over its neighbours ``v`` (``w`` = the
neighbour's normalised, weighted plays), artists the user already played are removed, and the best ``n`` are
kept. Users with too little history (fewer than ``min_history`` artists), and users whose neighbours offer
fewer than ``n`` new artists, are completed from the most listened artists of their country and age band,
then of their country, then globally: the same lists the API serves to users it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.recs import schema
from pipelines.recs.neighbours import Neighbours

SOURCE_CF = "user_user_cf"


def top_n_sparse(scores: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a sparse score matrix, the ``n`` best columns (-1 padded), best first; ties → lower column.

    Rows are laid into a padded dense block as wide as the longest row, so one vectorised partition handles
    every row (blocks of a few thousand users keep that small)."""
    scores = scores.tocsr()
    n_rows = scores.shape[0]
    lengths = np.diff(scores.indptr)
    width = max(int(lengths.max()) if n_rows else 0, 1)
    vals = np.full((n_rows, width), -np.inf, dtype=np.float32)
    cols = np.full((n_rows, width), -1, dtype=np.int32)
    row_of = np.repeat(np.arange(n_rows), lengths)
    pos = np.arange(scores.nnz) - np.repeat(scores.indptr[:-1], lengths)
    vals[row_of, pos] = scores.data
    cols[row_of, pos] = scores.indices
    k = min(n, width)
    part = np.argpartition(-vals, k - 1, axis=1)[:, :k] if k < width else np.tile(np.arange(width), (n_rows, 1))
    pv = np.take_along_axis(vals, part, axis=1)
    pc = np.take_along_axis(cols, part, axis=1)
    order = np.lexsort((np.where(pc < 0, np.iinfo(np.int32).max, pc), -pv), axis=1)
    pv, pc = np.take_along_axis(pv, order, axis=1), np.take_along_axis(pc, order, axis=1)
    pc[~np.isfinite(pv)] = -1
    pv[~np.isfinite(pv)] = 0
    if k < n:
        pc = np.pad(pc, ((0, 0), (0, n - k)), constant_values=-1)
        pv = np.pad(pv, ((0, 0), (0, n - k)), constant_values=0)
    return pc, pv


def cf_top_n(neighbours: Neighbours, content: sp.csr_matrix, plays: sp.csr_matrix, rows: np.ndarray,
             n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``n`` best unseen artists by ``Σ_v sim(u, v) · w(v, a)`` (artist rows -1 padded, scores),
    best first, ties to the lower artist row: what :func:`cf_scores` + :func:`top_n_sparse` give, in one
    compiled pass per user (a dense artist accumulator per thread instead of a users × artists product)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.full((0, n), -1, np.int32), np.zeros((0, n), np.float32)
    chunks = int(min(len(rows), max(1, numba.get_num_threads()) * 4))
    return _cf_top_n_kernel(np.ascontiguousarray(neighbours.indices, dtype=np.int32),
                            np.ascontiguousarray(neighbours.sims, dtype=np.float32),
                            content.indptr.astype(np.int64), content.indices.astype(np.int32, copy=False),
                            content.data.astype(np.float32, copy=False), plays.indptr.astype(np.int64),
                            plays.indices.astype(np.int32, copy=False), rows, int(n), int(content.shape[1]), chunks)


@numba.njit(parallel=True, cache=True)
def _cf_top_n_kernel(nb_idx, nb_sim, c_ptr, c_idx, c_val, s_ptr, s_idx, rows, n, n_artists,
                     chunks):  # pragma: no cover - compiled
    n_query = len(rows)
    out_idx = np.full((n_query, n), -1, np.int32)
    out_val = np.zeros((n_query, n), np.float32)
    for chunk in numba.prange(chunks):
        acc = np.zeros(n_artists, np.float32)
        flag = np.zeros(n_artists, np.bool_)
        touched = np.empty(n_artists, np.int32)
        for r in range(chunk * n_query // chunks, (chunk + 1) * n_query // chunks):
            n_touched = 0
            for h in range(nb_idx.shape[1]):
                v = nb_idx[r, h]
                s = nb_sim[r, h]
                if v < 0 or not s > 0:
                    continue
                for j in range(c_ptr[v], c_ptr[v + 1]):
                    a = c_idx[j]
                    if not flag[a]:
                        flag[a] = True
                        touched[n_touched] = a
                        n_touched += 1
                    acc[a] += s * c_val[j]
            u = rows[r]
            for j in range(s_ptr[u], s_ptr[u + 1]):  # played: never recommended
                acc[s_idx[j]] = -1.0
            filled = 0
            for t in range(n_touched):  # the n best, kept sorted (n is small): higher score, then lower artist
                a = touched[t]
                s = acc[a]
                if s < 0:
                    continue
                if filled == n and not (s > out_val[r, n - 1] or (s == out_val[r, n - 1] and a < out_idx[r, n - 1])):
                    continue
                pos = filled if filled < n else n - 1
                while pos > 0 and (s > out_val[r, pos - 1] or (s == out_val[r, pos - 1] and a < out_idx[r, pos - 1])):
                    if pos < n:
                        out_val[r, pos], out_idx[r, pos] = out_val[r, pos - 1], out_idx[r, pos - 1]
                    pos -= 1
                out_val[r, pos], out_idx[r, pos] = s, a
                if filled < n:
                    filled += 1
            for t in range(n_touched):
                acc[touched[t]] = 0.0
                flag[touched[t]] = False
            for j in range(s_ptr[u], s_ptr[u + 1]):
                acc[s_idx[j]] = 0.0
    return out_idx, out_val



def cf_scores(neighbours: Neighbours, content: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    """Neighbour-weighted artist scores for a block of users, their own artists removed (the plain sparse
    formulation of :func:`cf_top_n`, kept as its reference)."""
    sims = neighbours.as_matrix(content.shape[0])
    scores = (sims @ content).tocsr()
    scores.data = np.maximum(scores.data, 1e-12)  # a zero score must still count as "seen" below, not vanish
    mask = seen.copy().tocsr()
    mask.data = np.ones_like(mask.data)
    scores = scores - scores.multiply(mask)
    scores.eliminate_zeros()
    return scores.tocsr()


@dataclass
class FallbackLists:
    """Most listened artists per (country, age band), per country and overall (artist rows and listener
    counts), for groups with at least ``min_group_users`` users."""

    lists: dict[tuple[str | None, str | None], tuple[np.ndarray, np.ndarray]]

    @classmethod
    def build(cls, plays: sp.csr_matrix, users: pd.DataFrame, length: int, min_group_users: int) -> FallbackLists:
        listened = plays.copy().tocsr()
        listened.data = np.ones_like(listened.data)
        lists: dict[tuple[str | None, str | None], tuple[np.ndarray, np.ndarray]] = {}
        overall = np.asarray(listened.sum(axis=0)).ravel()
        idx, val = top_n_sparse(sp.csr_matrix(overall.astype(np.float32)[None, :]), length)
        lists[(None, None)] = (idx[0], val[0])
        country = users["country"].astype("string").fillna("")
        band = users["age_band"].astype("string").fillna("")
        for keys in (country, country + "\x00" + band):
            known = (country != "") & (keys.str.split("\x00").str[-1] != "")
            codes, names = pd.factorize(keys.where(known.to_numpy(), None))
            sizes = np.bincount(codes[codes >= 0], minlength=len(names))
            big = np.nonzero(sizes >= min_group_users)[0]
            if not len(big):
                continue
            remap = np.full(len(names), -1)
            remap[big] = np.arange(len(big))
            member = remap[np.where(codes >= 0, codes, 0)]
            member[codes < 0] = -1
            rows = np.nonzero(member >= 0)[0]
            groups = sp.csr_matrix((np.ones(len(rows), np.float32), (member[rows], rows)),
                                   shape=(len(big), plays.shape[0]))
            gidx, gval = top_n_sparse(groups @ listened, length)
            for g, name in enumerate(names[big]):
                parts = str(name).split("\x00")
                lists[(parts[0], parts[1] if len(parts) > 1 else None)] = (gidx[g], gval[g])
        return cls(lists)

    def chain(self, country: str | None, band: str | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """The lists a user falls back on, most specific first, with the source name of each."""
        out = []
        if country and band and (country, band) in self.lists:
            out.append(("fallback:country_age", *self.lists[(country, band)]))
        if country and (country, None) in self.lists:
            out.append(("fallback:country", *self.lists[(country, None)]))
        out.append(("fallback:global", *self.lists[(None, None)]))
        return out


def complete(cf_idx: np.ndarray, cf_val: np.ndarray, rows: np.ndarray, users: pd.DataFrame, seen: sp.csr_matrix,
             fallback: FallbackLists, min_history: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Final lists for a block: CF where the user is warm, fallback for cold users and to fill short lists.

    Fallback scores are listener shares scaled below the user's lowest CF score, so the ranking stays one list.
    Returns artist rows (-1 = nothing left), scores, and each user's source (``user_user_cf`` or the first
    fallback list used)."""
    n = cf_idx.shape[1]
    out_idx, out_val = cf_idx.copy(), cf_val.copy()
    history = np.diff(seen.indptr)
    cold = history < min_history
    out_idx[cold], out_val[cold] = -1, 0
    sources = [SOURCE_CF] * len(rows)
    countries = users["country"].astype("string").fillna("").to_numpy()
    bands = users["age_band"].astype("string").fillna("").to_numpy()
    for r in np.nonzero((out_idx < 0).any(axis=1))[0]:
        user = rows[r]
        filled = int((out_idx[r] >= 0).sum())
        taken = set(seen.indices[seen.indptr[r]:seen.indptr[r + 1]].tolist()) | set(out_idx[r, :filled].tolist())
        floor = float(out_val[r, filled - 1]) if filled else 1.0
        source = SOURCE_CF if filled else None
        for name, idx, val in fallback.chain(countries[user] or None, bands[user] or None):
            top = val[0] if len(val) and val[0] > 0 else 1.0
            for a, v in zip(idx, val, strict=True):
                if filled == n:
                    break
                if a < 0 or a in taken:
                    continue
                taken.add(int(a))
                out_idx[r, filled], out_val[r, filled] = a, floor * 0.5 * v / top
                filled += 1
            source = source or name
            if filled == n:
                break
        sources[r] = source or "fallback:global"
    return out_idx, out_val, sources


def fallback_records(fallback: FallbackLists, artists: pd.DataFrame, version: str, generated_on: str,
                     n: int) -> list[schema.RecRecord]:
    """The cold-start lists as stored records (keys from :func:`schema.fallback_key`)."""
    records = []
    for (country, band), (idx, val) in sorted(fallback.lists.items(), key=lambda kv: str(kv[0])):
        source = "fallback:global" if country is None else "fallback:country" if band is None else \
            "fallback:country_age"
        top = val[0] if len(val) and val[0] > 0 else 1.0
        items = [schema.RecItem(artist=str(artists.at[int(a), "artist_name"]), score=round(float(v / top), 6),
                                mbid=_mbid(artists.at[int(a), "mbid"]))
                 for a, v in zip(idx[:n], val[:n], strict=True) if a >= 0]
        records.append(schema.RecRecord(user_id=schema.fallback_key(country, band), version=version,
                                        generated_on=generated_on, source=source, items=items))
    return records


def _mbid(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" else str(value)

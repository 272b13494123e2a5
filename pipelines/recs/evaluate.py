"""Honest offline evaluation: every model trained on the same per-user split, scored on the same held-out users.

A share (``holdout_share``) of each evaluable user's artists (users with at least ``min_items``) is hidden;
the models see the rest. Models: the user-user CF as deployed (its configured neighbour search) and with exact
neighbours, an item-item CF peer (implicit's BM25 item-item), popularity, popularity by country, and — for
generated data — the oracle, which ranks the unseen artists by the planted true preference: the ceiling.
The deployed search's neighbours are judged against exact search on the same users (similarity ratio, and
recall with its near-tie caveat), and optionally the deployed model is scored at several neighbour counts
(``k_curve``) to show what more neighbours buy and cost.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.recs.features import ModelParams, Snapshot
from pipelines.recs.metrics import ranking_metrics
from pipelines.recs.model import UserUserModel
from pipelines.recs.neighbours import neighbour_recall, pair_similarity, similarity_ratio, top_k_dense

log = logging.getLogger(__name__)

K = 10
#: Oracle: (user ids, artist keys) → true preference matrix (users × artists), higher = more preferred.
Oracle = Callable[[list[str], list[str]], np.ndarray]


@dataclass(frozen=True)
class EvalConfig:
    holdout_share: float = 0.2
    min_items: int = 5
    eval_users: int = 5000  # a sample keeps exact search and the oracle cheap at full scale
    recall_sample: int = 1000  # users for the approximate-vs-exact neighbour recall
    item_item_k: int = 100
    seed: int = 42
    k_curve: tuple[int, ...] = ()  # neighbour counts at which the deployed model is also scored


@dataclass
class EvalResult:
    metrics: dict[str, dict[str, float]]  # model → metric → value
    neighbour_recall: float | None
    neighbour_similarity_ratio: float | None
    n_train_users: int
    n_eval_users: int
    seconds: dict[str, float] = field(default_factory=dict)
    #: k → the deployed model's metrics with k neighbours, plus ``seconds_per_1000_users`` (recommending)
    k_curve: dict[int, dict[str, float]] = field(default_factory=dict)
    neighbour_search: str = ""

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics).T.sort_values(f"ndcg_at_{K}", ascending=False)


def holdout_split(plays: sp.csr_matrix, share: float, min_items: int, seed: int
                  ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, holdout): for users with ``min_items`` or more artists, hide ``round(share × n)`` (≥ 1) of them."""
    plays = plays.tocsr()
    sizes = np.diff(plays.indptr)
    n_hold = np.where(sizes >= min_items, np.maximum(1, np.round(share * sizes)), 0).astype(np.int64)
    rows = np.repeat(np.arange(plays.shape[0]), sizes)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(plays.nnz), rows))
    rank = np.empty(plays.nnz, np.int64)
    rank[order] = np.arange(plays.nnz) - plays.indptr[rows[order]]
    held = rank < n_hold[rows]
    coo = plays.tocoo()
    train = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=plays.shape)
    holdout = sp.csr_matrix((coo.data[held], (coo.row[held], coo.col[held])), shape=plays.shape)
    return train, holdout


def _popularity(train: sp.csr_matrix, rows: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Most listened unseen artists overall, or within each user's group first (then overall order).

    Only the ``K + longest history`` most listened artists of each list can be needed, so each user's list
    is picked from that short candidate list instead of ranking the whole catalogue."""
    listened = train.copy()
    listened.data = np.ones_like(listened.data)
    margin = K + int(np.diff(listened.indptr)[rows].max(initial=0))
    overall = np.asarray(listened.sum(axis=0)).ravel()
    global_top = np.argsort(-overall, kind="stable")[:margin]
    out = np.full((len(rows), K), -1, np.int32)
    codes = np.full(train.shape[0], -1)
    if groups is not None:
        codes, _ = pd.factorize(pd.Series(groups).astype("string"))  # unknown group → -1
    for code in np.unique(codes[rows]):
        members = rows[codes[rows] == code]
        if code >= 0:
            in_group = np.nonzero(codes == code)[0]
            counts = np.asarray(listened[in_group].sum(axis=0)).ravel()
            ranked = np.lexsort((np.arange(len(counts)), -overall, -counts))[:margin]
            ranked = ranked[counts[ranked] > 0]
            candidates = np.concatenate([ranked, global_top[~np.isin(global_top, ranked)]])[:margin]
        else:
            candidates = global_top
        seen = (listened[members][:, candidates] > 0).toarray()
        order = np.argsort(seen, axis=1, kind="stable")[:, :K]  # unseen first, in list order
        picked = candidates[order]
        picked[np.take_along_axis(seen, order, axis=1)] = -1
        out[np.searchsorted(rows, members), :picked.shape[1]] = picked  # a catalogue under K: padded with -1
    return out


def _item_item(train: sp.csr_matrix, rows: np.ndarray, k: int) -> np.ndarray:
    from implicit.nearest_neighbours import BM25Recommender

    model = BM25Recommender(K=k)
    with warnings.catch_warnings():  # implicit converts its own BM25-weighted COO matrix and warns about it
        warnings.simplefilter("ignore")
        model.fit(train.astype(np.float32), show_progress=False)
        ids, _ = model.recommend(rows, train[rows], N=K, filter_already_liked_items=True)
    return np.asarray(ids, dtype=np.int32)


def _oracle(oracle: Oracle, snapshot: Snapshot, train: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    keys = snapshot.artists["artist_key"].tolist()
    user_ids = snapshot.users["user_id"].to_numpy()
    out = np.full((len(rows), K), -1, np.int32)
    for start in range(0, len(rows), 256):
        part = rows[start:start + 256]
        pref = np.asarray(oracle(user_ids[part].tolist(), keys), dtype=np.float32)
        pref[train[part].nonzero()] = -np.inf
        pref[pref <= 0] = -np.inf
        out[start:start + len(part)] = top_k_dense(pref, K)[0]
    return out


def evaluate(snapshot: Snapshot, params: ModelParams, config: EvalConfig | None = None,
             oracle: Oracle | None = None, progress: bool = False) -> EvalResult:
    """Train every model on the same split and score each on the same held-out users."""
    config = config or EvalConfig()
    seconds: dict[str, float] = {}
    train, holdout = holdout_split(snapshot.plays, config.holdout_share, config.min_items, config.seed)
    evaluable = np.nonzero(np.diff(holdout.indptr) > 0)[0]
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(evaluable, size=min(config.eval_users, len(evaluable)), replace=False))
    truth = holdout[rows]
    train_snapshot = Snapshot(train, snapshot.users, snapshot.artists)

    results: dict[str, dict[str, float]] = {}

    def run(name: str, fn: Callable[[], np.ndarray]) -> None:
        t = time.perf_counter()
        recs = fn()
        seconds[name] = round(time.perf_counter() - t, 3)
        results[name] = ranking_metrics(recs, truth, K, n_items=snapshot.n_artists)
        log.info("%s: %s (%.1f s)", name, results[name], seconds[name])

    t = time.perf_counter()
    model = UserUserModel.fit(train_snapshot, params)
    seconds["fit_user_user"] = round(time.perf_counter() - t, 3)
    deployed = params.neighbours
    run("user_user_cf", lambda: model.recommend(rows, progress=progress)[0])
    if deployed == "exact":
        results["user_user_cf_exact"], seconds["user_user_cf_exact"] = results["user_user_cf"], \
            seconds["user_user_cf"]
    else:
        run("user_user_cf_exact", lambda: model.recommend(rows, kind="exact", progress=progress)[0])
    run("item_item_cf", lambda: _item_item(train, rows, config.item_item_k))
    run("popularity", lambda: _popularity(train, rows, None))
    run("popularity_by_country", lambda: _popularity(train, rows, snapshot.users["country"].to_numpy()))
    if oracle is not None:
        run("oracle", lambda: _oracle(oracle, snapshot, train, rows))

    sample = rows[model.candidates[rows]][: config.recall_sample]
    recall = ratio = None
    if len(sample) and deployed != "exact":
        t = time.perf_counter()
        found, exact = model.neighbours(sample), model.neighbours(sample, "exact")
        recall = neighbour_recall(found, exact)
        ratio = similarity_ratio(pair_similarity(model.content, model.codes, params.profile_weight, sample,
                                                 found.indices), exact)
        seconds["neighbour_quality"] = round(time.perf_counter() - t, 3)
    elif len(sample):
        recall = ratio = 1.0
    curve = {}
    for k in config.k_curve:
        variant = dataclasses.replace(model, params=dataclasses.replace(params, k_neighbours=int(k)))
        t = time.perf_counter()
        recs = variant.recommend(rows)[0]
        elapsed = time.perf_counter() - t
        curve[int(k)] = {**ranking_metrics(recs, truth, K, n_items=snapshot.n_artists),
                         "seconds_per_1000_users": round(1000 * elapsed / max(1, len(rows)), 4)}
        log.info("k_neighbours = %d: %s", k, curve[int(k)])
    return EvalResult(results, recall, ratio, int(train.shape[0]), len(rows), seconds, curve, deployed)


def plot_report(result: EvalResult, path: Path) -> Path:
    """Bar chart of every model's NDCG@10 / Precision@10 / Recall@10, the oracle drawn as the ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table()
    names = [m for m in table.index if m != "oracle"]
    metrics = [f"ndcg_at_{K}", f"precision_at_{K}", f"recall_at_{K}", f"map_at_{K}"]
    panels = len(metrics) + (1 if result.k_curve else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4), sharey=False)
    for ax, metric in zip(axes, metrics, strict=False):
        values = [table.at[n, metric] for n in names]
        ax.barh(names, values, color=["#4c72b0" if n.startswith("user_user") else "#999999" for n in names])
        if "oracle" in table.index:
            ax.axvline(table.at["oracle", metric], color="#c44e52", linestyle="--", label="oracle (ceiling)")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(metric.replace("_at_", "@"))
        ax.invert_yaxis()
    if result.k_curve:
        ax = axes[-1]
        ks = sorted(result.k_curve)
        ax.plot(ks, [result.k_curve[k][f"ndcg_at_{K}"] for k in ks], marker="o", color="#4c72b0",
                label=f"user-user ({result.neighbour_search})")
        for name, colour in (("item_item_cf", "#999999"), ("oracle", "#c44e52")):
            if name in table.index:
                ax.axhline(table.at[name, f"ndcg_at_{K}"], color=colour, linestyle="--", label=name)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("neighbours (k)")
        ax.set_title(f"NDCG@{K} by neighbours")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Held-out evaluation, {result.n_eval_users} users")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

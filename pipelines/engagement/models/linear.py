"""The streamed linear model: SGD over Parquet batches, memory bounded whatever the data size.

Features per post (sparse, ``2**bits`` hashed columns plus a few fixed ones): the title's word unigrams and
bigrams (hashed, weight ``1/sqrt(words)``), the author's target encoding (centred) and ``log1p`` of the
author's training posts, the UTC hour and weekday (one-hot), ``over_18``, the title's length and the years
since 2005 (so the fit can follow the drift). Target: ``log1p(up_votes)`` minus the training mean.

Training reads the training months in time order, ``batch_rows`` at a time; the author encoding of a
training row uses the author's *earlier* training rows only (ordered statistics, no row sees its own
target); rows are shuffled within a buffer of ``shuffle_batches`` batches (seeded) and fed to
``SGDRegressor.partial_fit`` (averaged SGD), for ``epochs`` passes. What is held at any time: the weights
(``2**bits`` floats, twice for averaging), the author table and one buffer, never the data. Validation and
scoring encode authors with the full training statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.engagement import features as F
from pipelines.engagement.models.base import (
    Curve,
    TrainContext,
    check_predictions,
    read_model_json,
    rmse,
    write_model_json,
)

DEFAULTS: dict = {"bits": 20, "alpha": 1e-6, "eta0": 0.01, "power_t": 0.25, "epochs": 2, "batch_rows": 8192,
                  "shuffle_batches": 8, "prior_weight": 20.0, "curve_points": 24}
#: Fixed columns after the hashed ones: encoding, log count, over_18, title length, years, hour (24), weekday (7).
N_FIXED = 5 + 24 + 7


def design(table, bits: int, te: np.ndarray, log_n: np.ndarray, prior_mean: float):
    """The sparse design matrix of a batch (CSR, ``2**bits + N_FIXED`` columns), built row by row in place
    (a repeated word is a repeated column index, which sums; no sorting needed)."""
    import scipy.sparse as sp

    n = table.num_rows
    tokens = F.title_tokens(table["title"])
    width = 1 << bits
    counts = np.diff(tokens.offsets)
    t = F.time_features(table["time_created"].to_numpy())
    over = np.asarray(table["over_18"].to_numpy(zero_copy_only=False), dtype=np.float64)
    fixed_vals = np.column_stack([te - prior_mean, log_n / 5.0, over, np.log1p(tokens.n_words) / 3.0,
                                  (t["years"] - 12.0) / 5.0, np.ones(n), np.ones(n)])
    fixed_cols = np.column_stack([np.tile(np.arange(5), (n, 1)) + width, width + 5 + t["hour"],
                                  width + 29 + t["weekday"]])
    k = fixed_vals.shape[1]
    indptr = np.concatenate([[0], np.cumsum(counts + k)])
    indices = np.empty(indptr[-1], dtype=np.int64)
    data = np.empty(indptr[-1], dtype=np.float64)
    row = np.repeat(np.arange(n), counts)
    at = indptr[row] + (np.arange(len(row)) - tokens.offsets[row])
    indices[at] = tokens.buckets(width)
    data[at] = np.repeat(1.0 / np.sqrt(np.maximum(tokens.n_words, 1)), counts)
    fixed_at = (indptr[:-1] + counts)[:, None] + np.arange(k)[None, :]
    indices[fixed_at] = fixed_cols
    data[fixed_at] = fixed_vals
    return sp.csr_matrix((data, indices, indptr), shape=(n, width + N_FIXED))


class StreamingLinear:
    name = "linear"

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown linear param(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        self.model_ = None  # the SGDRegressor while training
        self.weights_: tuple[np.ndarray, np.ndarray] | None = None  # (coef, intercept) once loaded
        self.stats_: F.AuthorStats | None = None
        self.mean_: float = 0.0

    def _regressor(self, seed: int):
        from sklearn.linear_model import SGDRegressor

        p = self.params
        return SGDRegressor(loss="squared_error", penalty="l2", alpha=p["alpha"], learning_rate="invscaling",
                            eta0=p["eta0"], power_t=p["power_t"], average=True, random_state=seed)

    def _stats(self, ctx: TrainContext) -> F.AuthorStats:
        s = ctx.stats
        return F.AuthorStats(s.authors, s.n, s.s, s.prior_mean, float(self.params["prior_weight"]))

    def matrix(self, table):
        """Design matrix of rows outside training (validation, test, scoring): full training statistics."""
        te, log_n = self.stats_.encode(table["author"])
        return design(table, self.params["bits"], te, log_n, self.stats_.prior_mean)

    def fit(self, ctx: TrainContext) -> dict:
        import scipy.sparse as sp

        p = self.params
        self.stats_ = self._stats(ctx)
        self.mean_ = float(ctx.target["mean"])
        self.model_ = self._regressor(ctx.seed)
        encoder = F.OrderedEncoder(self.stats_)
        rng = np.random.default_rng(ctx.seed)
        valid_x = self.matrix(ctx.valid)
        valid_y = F.target(ctx.valid["up_votes"].to_numpy())
        curve = Curve(int(ctx.target["rows"]) * p["epochs"], p["curve_points"])
        seen = batches = 0

        def flush(buffer: list) -> None:
            nonlocal seen
            x = sp.vstack([b[0] for b in buffer], format="csr")
            y = np.concatenate([b[1] for b in buffer])
            order = rng.permutation(len(y))
            # one call per buffer: each partial_fit call costs a copy of every weight (measured 75 ms at 2**20)
            self.model_.partial_fit(x[order], y[order] - self.mean_)
            seen += len(y)
            if curve.due(seen):
                curve.add(seen, rmse(valid_y, self._predict_matrix(valid_x)))

        for _ in range(p["epochs"]):
            encoder.reset()
            buffer: list = []
            for batch in ctx.train_batches(p["batch_rows"]):
                y = F.target(batch["up_votes"].to_numpy())
                te, log_n = encoder.encode_and_update(batch["author"], y)
                buffer.append((design(batch, p["bits"], te, log_n, self.stats_.prior_mean), y))
                batches += 1
                if len(buffer) >= p["shuffle_batches"]:
                    flush(buffer)
                    buffer = []
            if buffer:
                flush(buffer)
        if not curve.points or curve.points[-1][0] != seen:
            curve.add(seen, rmse(valid_y, self._predict_matrix(valid_x)))
        return {"rows_seen": seen, "batches": batches, "epochs": p["epochs"], "curve": curve.points,
                "nonzero_weights": int(np.count_nonzero(self.model_.coef_))}

    def _predict_matrix(self, x) -> np.ndarray:
        coef, intercept = self.weights_ if self.model_ is None else (self.model_.coef_, self.model_.intercept_)
        return np.asarray(x @ coef).reshape(-1) + float(np.asarray(intercept).reshape(-1)[0]) + self.mean_

    def predict(self, table) -> np.ndarray:
        if self.model_ is None and self.weights_ is None:
            raise RuntimeError("the linear model is not fitted")
        return check_predictions(self.name, self._predict_matrix(self.matrix(table)), table.num_rows)

    def save(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        folder = Path(folder)
        write_model_json(folder, self.name, self.params, mean_log1p=self.mean_, prior_mean=self.stats_.prior_mean)
        coef, intercept = self.weights_ if self.model_ is None else (self.model_.coef_, self.model_.intercept_)
        np.savez_compressed(folder / "weights.npz", coef=coef, intercept=intercept)
        pq.write_table(self.stats_.to_table(), folder / "authors.parquet")

    @classmethod
    def load(cls, folder: Path) -> StreamingLinear:
        import pyarrow.parquet as pq

        folder = Path(folder)
        meta = read_model_json(folder)
        model = cls(**meta["params"])
        weights = np.load(folder / "weights.npz")
        model.weights_ = (weights["coef"], weights["intercept"])
        model.mean_ = float(meta["mean_log1p"])
        model.stats_ = F.AuthorStats.from_table(pq.read_table(folder / "authors.parquet"), meta["prior_mean"],
                                                float(model.params["prior_weight"]))
        return model

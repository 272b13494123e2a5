"""The baselines every model is judged against: the training months' mean, and each author's mean.

``mean`` predicts the training mean of ``log1p(up_votes)`` for every post (its ranking is arbitrary, so its
top-decile precision is the base rate). ``author_mean`` predicts the author's smoothed training mean
``(sum + m·ḡ) / (n + m)``, and the global mean for an author never seen in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from pipelines.engagement.features import AuthorStats
from pipelines.engagement.models.base import TrainContext, check_predictions, read_model_json, write_model_json


class GlobalMean:
    name = "mean"

    def __init__(self, **params) -> None:
        if params:
            raise ValueError(f"the mean baseline takes no params, got {sorted(params)}")
        self.params: dict = {}
        self.mean_: float | None = None

    def fit(self, ctx: TrainContext) -> dict:
        self.mean_ = float(ctx.target["mean"])
        return {"mean_log1p": self.mean_, "rows": ctx.target["rows"]}

    def predict(self, table) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("the mean baseline is not fitted")
        return check_predictions(self.name, np.full(table.num_rows, self.mean_), table.num_rows)

    def save(self, folder: Path) -> None:
        write_model_json(Path(folder), self.name, self.params, mean_log1p=self.mean_)

    @classmethod
    def load(cls, folder: Path) -> GlobalMean:
        model = cls()
        model.mean_ = float(read_model_json(folder)["mean_log1p"])
        return model


class AuthorMean:
    name = "author_mean"
    DEFAULTS: ClassVar[dict] = {"prior_weight": 5.0}

    def __init__(self, **params) -> None:
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"unknown author_mean param(s) {sorted(unknown)}; known: {sorted(self.DEFAULTS)}")
        self.params = {**self.DEFAULTS, **params}
        self.stats_: AuthorStats | None = None

    def fit(self, ctx: TrainContext) -> dict:
        s = ctx.stats
        self.stats_ = AuthorStats(s.authors, s.n, s.s, s.prior_mean, float(self.params["prior_weight"]))
        return {"authors": len(s.authors), "rows": ctx.target["rows"]}

    def predict(self, table) -> np.ndarray:
        if self.stats_ is None:
            raise RuntimeError("the author_mean baseline is not fitted")
        pred, _ = self.stats_.encode(table["author"])
        return check_predictions(self.name, pred, table.num_rows)

    def save(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        folder = Path(folder)
        write_model_json(folder, self.name, self.params, prior_mean=self.stats_.prior_mean)
        pq.write_table(self.stats_.to_table(), folder / "authors.parquet")

    @classmethod
    def load(cls, folder: Path) -> AuthorMean:
        import pyarrow.parquet as pq

        meta = read_model_json(folder)
        model = cls(**meta["params"])
        model.stats_ = AuthorStats.from_table(pq.read_table(Path(folder) / "authors.parquet"), meta["prior_mean"],
                                              float(model.params["prior_weight"]))
        return model

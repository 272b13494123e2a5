"""CatBoost on a bounded sample: the title as a text feature, the author, hour and weekday as categories.

It trains on ``sample_rows`` posts of the training months (a uniform hash sample, :func:`~pipelines.
engagement.dataset.sample`), so its cost does not grow with the data. Beside CatBoost's own ordered statistics
of the author category, it gets the author's encoding from the *whole* training months, computed without the
sample's rows (so no sample row sees its own target), and the author's number of training posts. Early
stopping on the validation sample keeps the best iteration. Loss: RMSE on ``log1p(up_votes)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.engagement import features as F
from pipelines.engagement.models.base import TrainContext, check_predictions, read_model_json, write_model_json

DEFAULTS: dict = {"iterations": 800, "learning_rate": 0.08, "depth": 6, "l2_leaf_reg": 3.0, "od_wait": 60,
                  "sample_rows": 200_000, "thread_count": 2, "random_seed": 42}
CAT = ["author", "hour", "weekday"]
TEXT = ["title"]


def frame(table, te: np.ndarray, log_n: np.ndarray):
    """The model's input frame of a table of posts."""
    import pandas as pd

    t = F.time_features(table["time_created"].to_numpy())
    titles = table["title"].to_pylist()
    tokens = F.title_tokens(table["title"], bigrams=False)
    return pd.DataFrame({
        "title": [s if s else "_" for s in titles], "author": table["author"].to_pylist(),
        "hour": t["hour"].astype(str), "weekday": t["weekday"].astype(str),
        "over_18": np.asarray(table["over_18"].to_numpy(zero_copy_only=False), dtype=np.float64),
        "years": t["years"], "author_te": te, "author_log_n": log_n, "words": tokens.n_words.astype(np.float64)})


class CatBoostEngagement:
    name = "catboost"

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown catboost param(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        self.model_ = None
        self.stats_: F.AuthorStats | None = None

    def _pool(self, df, label=None):
        from catboost import Pool

        return Pool(df, label=label, cat_features=CAT, text_features=TEXT)

    def fit(self, ctx: TrainContext) -> dict:
        from catboost import CatBoostRegressor

        p = self.params
        self.stats_ = ctx.stats
        train = ctx.train_sample(int(p["sample_rows"]))
        te, log_n = ctx.sample_encoding(train)
        valid_te, valid_n = self.stats_.encode(ctx.valid["author"])
        self.model_ = CatBoostRegressor(
            loss_function="RMSE", iterations=p["iterations"], learning_rate=p["learning_rate"], depth=p["depth"],
            l2_leaf_reg=p["l2_leaf_reg"], od_type="Iter", od_wait=p["od_wait"], use_best_model=True,
            thread_count=p["thread_count"], random_seed=p["random_seed"], verbose=False, allow_writing_files=False)
        self.model_.fit(self._pool(frame(train, te, log_n), F.target(train["up_votes"].to_numpy())),
                        eval_set=self._pool(frame(ctx.valid, valid_te, valid_n),
                                            F.target(ctx.valid["up_votes"].to_numpy())))
        history = self.model_.get_evals_result().get("validation", {}).get("RMSE", [])
        return {"sample_rows": train.num_rows, "best_iteration": int(self.model_.get_best_iteration()),
                "valid_rmse": float(self.model_.get_best_score()["validation"]["RMSE"]),
                "iterations_curve": [(i + 1, float(v)) for i, v in enumerate(history)][:: max(1, len(history) // 50)]}

    def predict(self, table) -> np.ndarray:
        if self.model_ is None:
            raise RuntimeError("the catboost model is not fitted")
        te, log_n = self.stats_.encode(table["author"])
        return check_predictions(self.name, self.model_.predict(self._pool(frame(table, te, log_n))), table.num_rows)

    def save(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        folder = Path(folder)
        write_model_json(folder, self.name, self.params, prior_mean=self.stats_.prior_mean,
                         prior_weight=self.stats_.prior_weight)
        self.model_.save_model(str(folder / "model.cbm"))
        pq.write_table(self.stats_.to_table(), folder / "authors.parquet")

    @classmethod
    def load(cls, folder: Path) -> CatBoostEngagement:
        import pyarrow.parquet as pq
        from catboost import CatBoostRegressor

        folder = Path(folder)
        meta = read_model_json(folder)
        model = cls(**meta["params"])
        model.model_ = CatBoostRegressor()
        model.model_.load_model(str(folder / "model.cbm"))
        model.stats_ = F.AuthorStats.from_table(pq.read_table(folder / "authors.parquet"), meta["prior_mean"],
                                                meta["prior_weight"])
        return model

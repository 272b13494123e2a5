"""What every engagement model sees when it trains, what it returns, and how a saved model is found again.

A model is a plain class: ``fit(ctx) -> info``, ``predict(table) -> log1p(up_votes)``, ``save(folder)`` and
``load(folder)``. :class:`TrainContext` gives it the training months as a stream (or as row groups for a
loader), bounded samples, the author statistics and the target's mean, all from the **training months
only**; the validation sample is for early stopping and learning curves, never for fitting. Each saved model
writes ``model.json`` naming its class and the feature definition it was trained on
(:data:`~pipelines.engagement.features.FEATURE_VERSION`), so scoring can dispatch and refuse a mismatch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pipelines.engagement import dataset
from pipelines.engagement.features import FEATURE_VERSION, AuthorStats
from pipelines.errors import ModelFitError

log = logging.getLogger(__name__)
MODEL_FILE = "model.json"


@dataclass
class TrainContext:
    """The training run's inputs, all derived from the training months (validation only for monitoring)."""

    prepared: dataset.Prepared
    stats: AuthorStats
    target: dict  # rows, mean, sd of log1p(up_votes) over the training months
    valid: object  # pyarrow Table: the bounded validation sample
    seed: int = 42
    workdir: Path = Path(".")
    threads: int = 1
    _samples: dict = field(default_factory=dict)

    @property
    def split(self) -> dataset.TimeSplit:
        return self.prepared.split

    @property
    def train_paths(self) -> list[Path]:
        return self.prepared.of(self.split.train)

    def train_batches(self, batch_rows: int) -> Iterator:
        """The training months' rows, in time order, one record batch at a time."""
        return dataset.iter_batches(self.train_paths, self.split.end, batch_rows)

    def train_sample(self, k: int):
        """A bounded uniform sample of the training months (cached per size)."""
        if k not in self._samples:
            self._samples[k] = dataset.sample(self.train_paths, self.split.end, k, self.seed, "train",
                                              workdir=self.workdir)
        return self._samples[k]

    def sample_encoding(self, table) -> tuple[np.ndarray, np.ndarray]:
        """Author encoding of a training sample without the sample's own rows (no row sees its own target,
        nor those of the sample's other rows by the same author)."""
        import pandas as pd

        from pipelines.engagement.features import target

        y = target(table["up_votes"].to_numpy())
        authors = pd.Series(table["author"].to_pylist())
        own_n = authors.map(authors.value_counts()).to_numpy(dtype=np.float64)
        own_s = authors.map(pd.Series(y).groupby(authors).sum()).to_numpy(dtype=np.float64)
        return self.stats.encode(authors.to_numpy(dtype=object), own_n, own_s)


@runtime_checkable
class EngagementModel(Protocol):
    name: str
    params: dict

    def fit(self, ctx: TrainContext) -> dict: ...

    def predict(self, table) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> EngagementModel: ...


def write_model_json(folder: Path, name: str, params: dict, **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_text(json.dumps({"name": name, "feature_version": FEATURE_VERSION,
                                                 "params": params, **extra}, indent=2, default=float))


def read_model_json(folder: Path) -> dict:
    return json.loads((Path(folder) / MODEL_FILE).read_text())


def load_model(folder: Path) -> EngagementModel:
    """The model saved in ``folder``; refused when it was trained on another feature definition."""
    from pipelines.engagement.models.registry import MODELS

    meta = read_model_json(Path(folder))
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ValueError(f"{folder}: trained on features {meta.get('feature_version')!r}, this code computes "
                         f"{FEATURE_VERSION!r}; retrain before scoring with it")
    if meta["name"] not in MODELS:
        raise ValueError(f"{folder}: unknown model {meta['name']!r} (known: {sorted(MODELS)})")
    return MODELS[meta["name"]].load(Path(folder))


def check_predictions(name: str, pred: np.ndarray, n: int) -> np.ndarray:
    """Predictions must be finite, one per row: a model that produces NaN failed to fit."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    if len(pred) != n:
        raise ModelFitError(f"{name}: {len(pred)} predictions for {n} rows")
    if not np.isfinite(pred).all():
        raise ModelFitError(f"{name}: non-finite predictions ({int((~np.isfinite(pred)).sum())} of {n})")
    return pred


class Curve:
    """Error on the validation sample against rows seen, at about ``points`` evenly spaced checkpoints."""

    def __init__(self, total_rows: int, points: int) -> None:
        self.every = max(1, total_rows // max(points, 1))
        self.next = self.every
        self.points: list[tuple[int, float]] = []

    def due(self, rows_seen: int) -> bool:
        return rows_seen >= self.next

    def add(self, rows_seen: int, rmse: float) -> None:
        self.points.append((int(rows_seen), float(rmse)))
        while self.next <= rows_seen:
            self.next += self.every


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(pred)) ** 2)))


class Timer:
    """Wall-clock safety cap: reported when it bites, never a budget (budgets are epochs and steps)."""

    def __init__(self, budget_s: float | None) -> None:
        self.budget = budget_s
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def over(self) -> bool:
        return self.budget is not None and self.seconds > self.budget

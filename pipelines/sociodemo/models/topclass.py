"""TopClass: the majority-class baseline every model must beat.

It predicts the training class frequencies for everyone, so its ranking is constant (sex ROC-AUC exactly 0.5)
and its labels are the majority sex and age class.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipelines.sociodemo.models.base import (
    N_AGE_CLASSES,
    Dataset,
    Predictions,
    clean_probabilities,
    read_model_json,
    write_model_json,
)


class TopClass:
    name = "topclass"

    def __init__(self, **params) -> None:
        self.params = params
        self.p_male: float | None = None
        self.p_age: np.ndarray | None = None

    def fit(self, train: Dataset, valid: Dataset) -> dict:
        """Class frequencies of ``train`` (Laplace-smoothed, so no class gets probability 0)."""
        started = time.perf_counter()
        if train.sex is None or train.age_class is None:
            raise ValueError("TopClass.fit needs targets")
        n = len(train.sex)
        self.p_male = float((train.sex.sum() + 1) / (n + 2))
        counts = np.bincount(train.age_class, minlength=N_AGE_CLASSES)[:N_AGE_CLASSES] + 1
        self.p_age = counts / counts.sum()
        return {"iterations": 1, "seconds": round(time.perf_counter() - started, 3), "p_male": self.p_male,
                "p_age": self.p_age.tolist()}

    def predict(self, data: Dataset) -> Predictions:
        if self.p_male is None or self.p_age is None:
            raise RuntimeError("TopClass is not fitted")
        n = len(data.uids)
        p_male, p_age = clean_probabilities(np.full(n, self.p_male), np.tile(self.p_age, (n, 1)))
        return Predictions(uids=data.uids, p_male=p_male, p_age=p_age)

    def save(self, folder: Path) -> None:
        write_model_json(Path(folder), self.name, p_male=self.p_male, p_age=list(map(float, self.p_age)))

    @classmethod
    def load(cls, folder: Path) -> TopClass:
        meta = read_model_json(Path(folder))
        model = cls()
        model.p_male, model.p_age = float(meta["p_male"]), np.asarray(meta["p_age"], dtype=np.float64)
        return model

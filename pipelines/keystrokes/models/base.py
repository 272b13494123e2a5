"""What every keystroke model shares: the interface, label encoding, saving and loading by name.

A model is constructed with its hyper-parameters only (``__init__`` stores them); ``fit(train, classes)``
learns ``classes_`` (the user labels, in a fixed order) and returns what the run registry should know (epochs,
iterations, whether a safety cap bit); ``predict_proba(samples)`` gives an (n, len(classes_)) matrix whose rows
sum to 1; ``top_k`` the k best users and their probabilities. ``save`` writes a folder with ``model.json``
(its type, params, classes, the feature definition it was trained on) so :func:`load_model` can dispatch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipelines.keystrokes.features import FEATURE_VERSION, Samples

MODEL_FILE = "model.json"


class ModelFitError(RuntimeError):
    """Training produced an unusable model (non-finite output)."""


class KeystrokeModel:
    """Base class: parameter handling, label encoding, top-k and the ``model.json`` round trip."""

    name: ClassVar[str] = "base"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown {self.name} param(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        self.classes_: list[str] = []

    # ------------------------------------------------------------------ labels
    def encode(self, labels) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes_)}
        return np.array([index[lab] for lab in labels], dtype=np.int64)

    # ------------------------------------------------------------------ API
    def fit(self, train: Samples, classes: list[str]) -> dict:
        """Learn from ``train`` (its labels among ``classes``); returns facts for the registry."""
        if train.labels is None:
            raise ValueError(f"{self.name}.fit needs labelled samples")
        self.classes_ = list(classes)
        started = time.perf_counter()
        with one_blas_thread():
            info = self._fit(train, self.encode(train.labels)) or {}
        info["seconds"] = round(time.perf_counter() - started, 3)
        return info

    def _fit(self, train: Samples, y: np.ndarray) -> dict | None:
        raise NotImplementedError

    def predict_proba(self, samples: Samples) -> np.ndarray:
        if not self.classes_:
            raise RuntimeError(f"{self.name} is not fitted")
        if len(samples) == 0:
            return np.zeros((0, len(self.classes_)))
        with one_blas_thread():
            proba = np.asarray(self._proba(samples), dtype=np.float64)
        if proba.shape != (len(samples), len(self.classes_)) or not np.isfinite(proba).all():
            raise ModelFitError(f"{self.name} returned probabilities of shape {proba.shape} (or non-finite ones)")
        # in place: at 3,000 users the matrix is 0.5 GB per copy
        proba = np.require(proba, dtype=np.float64, requirements=["W"])  # a copy only if read-only
        np.clip(proba, 0.0, None, out=proba)
        total = proba.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        proba /= np.where(empty[:, None], 1.0, total)
        proba[empty] = 1.0 / len(self.classes_)
        return proba

    def _proba(self, samples: Samples) -> np.ndarray:
        raise NotImplementedError

    def top_k(self, samples: Samples, k: int = 3) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` most likely users of each sample and their probabilities, best first."""
        proba = self.predict_proba(samples)
        k = min(k, proba.shape[1])
        idx = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return [[self.classes_[j] for j in row] for row in idx], np.take_along_axis(proba, idx, axis=1)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save(folder)
        (folder / MODEL_FILE).write_text(json.dumps({
            "type": self.name, "params": self.params, "classes": self.classes_,
            "feature_version": FEATURE_VERSION, **self._meta()}, indent=2))

    def _save(self, folder: Path) -> None:
        import joblib

        joblib.dump(self._state(), folder / "model.joblib", compress=3)

    def _state(self) -> Any:
        raise NotImplementedError

    def _meta(self) -> dict:
        return {}

    @classmethod
    def load(cls, folder: Path) -> KeystrokeModel:
        meta = read_model_json(folder)
        model = cls(**meta["params"])
        model.classes_ = list(meta["classes"])
        model._restore(Path(folder), meta)
        return model

    def _restore(self, folder: Path, meta: dict) -> None:
        import joblib

        self._set_state(joblib.load(folder / "model.joblib"))

    def _set_state(self, state: Any) -> None:
        raise NotImplementedError


def one_blas_thread():
    """BLAS limited to one thread: the matrices here are small, and on a shared 2-core machine two OpenBLAS
    threads made a logistic regression fit 50x slower under load (measured: 2.0 s vs 0.04 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def read_model_json(folder: Path) -> dict:
    return json.loads((Path(folder) / MODEL_FILE).read_text())


def softmax(scores: np.ndarray, scale: float = 1.0) -> np.ndarray:
    z = scores * scale
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


#: Cells of one row chunk in :func:`fit_temperature` (8 MB of float64 per temporary).
TEMPERATURE_CHUNK_CELLS = 1_000_000


def fit_temperature(scores: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = (1e-2, 1e3)) -> float:
    """The scale ``s`` minimising the log loss of ``softmax(s * scores)`` (temperature scaling, on held-out
    scores): turns margins or similarities into probabilities without changing the ranking. Computed in row
    chunks (log-sum-exp): the whole softmax of 78,000 attempts × 2,941 users held five 1.8 GB copies at once."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    if len(y) == 0:
        return 1.0

    rows = max(1, TEMPERATURE_CHUNK_CELLS // max(1, scores.shape[1]))

    def nll(log_s: float) -> float:
        s, total = float(np.exp(log_s)), 0.0
        for lo in range(0, len(y), rows):  # row chunks: a few (rows, classes) temporaries, not (n, classes)
            z = scores[lo: lo + rows].astype(np.float64) * s
            total += float((logsumexp(z, axis=1) - z[np.arange(len(z)), y[lo: lo + rows]]).sum())
        return total / len(y)

    found = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                            options={"xatol": 1e-3})
    return float(np.exp(found.x))


def inner_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, calibrate): one attempt of every user with at least 3 kept aside for calibration."""
    rng = np.random.default_rng(seed)
    calibrate = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        if len(members) >= 3:
            calibrate.append(int(rng.choice(members)))
    mask = np.zeros(len(y), dtype=bool)
    mask[calibrate] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def load_model(folder: Path) -> KeystrokeModel:
    """The model saved in ``folder``, of whichever type its ``model.json`` names."""
    from pipelines.keystrokes.models.registry import MODEL_TYPES

    kind = read_model_json(folder)["type"]
    if kind not in MODEL_TYPES:
        raise ValueError(f"{folder}: unknown model type {kind!r} (known: {sorted(MODEL_TYPES)})")
    return MODEL_TYPES[kind].load(Path(folder))

"""The one interface every tag model has: per-tag probabilities, the decision rule, save and load.

A :class:`TagModel` wraps a fitted scikit-learn-style estimator (a pipeline, CatBoost, the majority baseline)
with what serving needs to trust it: the tags in column order, the feature view, the feature definition it was
trained on (:func:`pipelines.tagging.segment.feature_version`) and the library versions. It is saved as
``model.joblib`` plus a readable ``meta.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1
#: A tag is assigned when its probability reaches this; the most probable tag is always assigned.
DEFAULT_THRESHOLD = 0.5


def probabilities(estimator: Any, X, n_tags: int) -> np.ndarray:
    """``(n_articles, n_tags)`` probabilities from any estimator: one-vs-rest and ours return that already; a
    multi-output forest returns one ``(n, classes)`` array per tag (one column when a tag never occurred)."""
    raw = estimator.predict_proba(X)
    if isinstance(raw, list):
        columns = []
        for proba, classes in zip(raw, _classes(estimator), strict=True):
            classes = list(classes)
            columns.append(proba[:, classes.index(1)] if 1 in classes else np.zeros(proba.shape[0]))
        raw = np.column_stack(columns) if columns else np.zeros((0, n_tags))
    proba = np.asarray(raw, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != n_tags:
        raise ValueError(f"expected probabilities of shape (n, {n_tags}), got {proba.shape}")
    return np.clip(proba, 0.0, 1.0)


def _classes(estimator: Any) -> list:
    last = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return list(last.classes_)


def decide(proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Assigned tags as a 0/1 matrix: every tag at or above ``threshold``, and always the most probable one."""
    proba = np.asarray(proba)
    out = (proba >= threshold).astype(np.int8)
    if len(proba):
        out[np.arange(len(proba)), proba.argmax(axis=1)] = 1
    return out


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("scikit-learn", "catboost", "numpy", "pycantonese"):
        try:
            out[name] = version(name)
        except Exception:  # not installed
            continue
    return out


@dataclass
class TagModel:
    """A fitted tagger and what serving needs to trust it."""

    name: str                 # e.g. "tfidf_lr_words": family + view, the registry's model name
    family: str
    view: str
    tags: list[str]
    estimator: Any
    feature_version: str
    params: dict = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    fit_info: dict = field(default_factory=dict)

    def predict_proba(self, X) -> np.ndarray:
        return probabilities(self.estimator, X, len(self.tags))

    def predict_tags(self, X) -> list[list[tuple[str, float]]]:
        """Per article, its assigned tags with their probabilities, most probable first."""
        proba = self.predict_proba(X)
        chosen = decide(proba, self.threshold)
        out = []
        for row, picks in zip(proba, chosen, strict=True):
            idx = sorted(np.flatnonzero(picks), key=lambda j: -row[j])
            out.append([(self.tags[j], float(row[j])) for j in idx])
        return out

    def meta(self) -> dict:
        return {"format": FORMAT, "name": self.name, "family": self.family, "view": self.view, "tags": self.tags,
                "feature_version": self.feature_version, "params": self.params, "threshold": self.threshold,
                "fit_info": self.fit_info, "libraries": library_versions()}

    def save(self, folder: Path) -> Path:
        import joblib

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.estimator, folder / "model.joblib", compress=3)
        (folder / "meta.json").write_text(json.dumps(self.meta(), indent=2, default=str, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: Path) -> TagModel:
        import joblib

        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: model format {meta.get('format')} is not {FORMAT}; retrain")
        saved, now = meta.get("libraries", {}), library_versions()
        drift = {k: (saved[k], now.get(k)) for k in saved if saved[k] != now.get(k)}
        if drift:
            log.warning("%s was saved with other library versions (saved, now): %s", folder, drift)
        return cls(name=meta["name"], family=meta["family"], view=meta["view"], tags=list(meta["tags"]),
                   estimator=joblib.load(folder / "model.joblib"), feature_version=meta["feature_version"],
                   params=meta.get("params", {}), threshold=meta.get("threshold", DEFAULT_THRESHOLD),
                   fit_info=meta.get("fit_info", {}))

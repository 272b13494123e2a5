"""The table models: logistic regression and a linear SVM (the baselines seed 000 wished for), AdaBoost (seed
001's), a random forest and CatBoost, all on :data:`~pipelines.keystrokes.features.FEATURE_NAMES`.

Linear models see standardised features. The linear SVM has no probabilities: its margins are turned into
them by temperature scaling fitted on one held-aside attempt per user (then the SVM is refitted on all of the
training attempts with that temperature), which keeps its ranking and gives an honest top-3 probability.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pipelines.keystrokes.features import Samples
from pipelines.keystrokes.models.base import KeystrokeModel, fit_temperature, inner_split, softmax


class _SklearnModel(KeystrokeModel):
    """A scikit-learn estimator on the feature table; ``_estimator()`` builds it from ``params``."""

    def _estimator(self):
        raise NotImplementedError

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        self.estimator_ = self._estimator()
        self.estimator_.fit(train.table, y)
        return self._fit_info()

    def _fit_info(self) -> dict:
        return {}

    def _full_proba(self, raw: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Columns for every class (a class absent from training gets probability 0)."""
        out = np.zeros((raw.shape[0], len(self.classes_)))
        out[:, seen] = raw
        return out

    def _proba(self, samples: Samples) -> np.ndarray:
        est = self.estimator_
        return self._full_proba(est.predict_proba(samples.table), est.classes_.astype(np.int64))

    def _state(self) -> Any:
        return self.estimator_

    def _set_state(self, state: Any) -> None:
        self.estimator_ = state


class LogisticRegressionModel(_SklearnModel):
    name: ClassVar[str] = "logreg"
    defaults: ClassVar[dict[str, Any]] = {"C": 1.0, "max_iter": 300, "seed": 42}

    def _estimator(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.params["C"], max_iter=self.params["max_iter"],
                                                                  random_state=self.params["seed"]))

    def _fit_info(self) -> dict:
        n_iter = int(np.max(self.estimator_[-1].n_iter_))
        return {"iterations": n_iter, "converged": n_iter < self.params["max_iter"]}


class LinearSVMModel(_SklearnModel):
    name: ClassVar[str] = "linear_svm"
    defaults: ClassVar[dict[str, Any]] = {"C": 0.1, "max_iter": 5000, "seed": 42}

    def _estimator(self):
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        return make_pipeline(StandardScaler(), LinearSVC(C=self.params["C"], max_iter=self.params["max_iter"],
                                                         random_state=self.params["seed"]))

    def _scores(self, est, table: np.ndarray) -> np.ndarray:
        raw = est.decision_function(table)
        if raw.ndim == 1:  # two classes: one margin
            raw = np.stack([-raw, raw], axis=1)
        full = np.full((table.shape[0], len(self.classes_)), -1e3)
        full[:, est.classes_.astype(np.int64)] = raw
        return full

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        fit_idx, cal_idx = inner_split(y, self.params["seed"])
        self.scale_ = 1.0
        if len(cal_idx) and len(np.unique(y[fit_idx])) > 1:
            probe = self._estimator().fit(train.table[fit_idx], y[fit_idx])
            self.scale_ = fit_temperature(self._scores(probe, train.table[cal_idx]), y[cal_idx])
        self.estimator_ = self._estimator().fit(train.table, y)
        return {"temperature_scale": self.scale_, "calibration_attempts": len(cal_idx),
                "iterations": int(self.estimator_[-1].n_iter_)}

    def _proba(self, samples: Samples) -> np.ndarray:
        return softmax(self._scores(self.estimator_, samples.table), self.scale_)

    def _state(self) -> Any:
        return {"estimator": self.estimator_, "scale": self.scale_}

    def _set_state(self, state: Any) -> None:
        self.estimator_, self.scale_ = state["estimator"], state["scale"]


class AdaBoostModel(_SklearnModel):
    name: ClassVar[str] = "adaboost"
    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.5, "seed": 42}

    def _estimator(self):
        from sklearn.ensemble import AdaBoostClassifier
        from sklearn.tree import DecisionTreeClassifier

        p = self.params
        return AdaBoostClassifier(estimator=DecisionTreeClassifier(max_depth=p["max_depth"], random_state=p["seed"]),
                                  n_estimators=p["n_estimators"], learning_rate=p["learning_rate"],
                                  random_state=p["seed"])

    def _fit_info(self) -> dict:
        return {"estimators": len(self.estimator_.estimators_)}


class RandomForestModel(_SklearnModel):
    name: ClassVar[str] = "random_forest"
    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": 1,
                                          "seed": 42, "threads": 2}

    def _estimator(self):
        from sklearn.ensemble import RandomForestClassifier

        p = self.params
        return RandomForestClassifier(n_estimators=p["n_estimators"], max_features=p["max_features"],
                                      min_samples_leaf=p["min_samples_leaf"], random_state=p["seed"],
                                      n_jobs=p["threads"])


class CatBoostModel(KeystrokeModel):
    name: ClassVar[str] = "catboost"
    defaults: ClassVar[dict[str, Any]] = {"iterations": 300, "depth": 4, "learning_rate": 0.1, "l2_leaf_reg": 3.0,
                                          "seed": 42, "threads": 2}

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        from catboost import CatBoostClassifier

        p = self.params
        self.model_ = CatBoostClassifier(loss_function="MultiClass", iterations=p["iterations"], depth=p["depth"],
                                         learning_rate=p["learning_rate"], l2_leaf_reg=p["l2_leaf_reg"],
                                         random_seed=p["seed"], thread_count=p["threads"], verbose=False,
                                         allow_writing_files=False)
        self.model_.fit(train.table, y)
        return {"iterations": int(self.model_.tree_count_)}

    def _proba(self, samples: Samples) -> np.ndarray:
        out = np.zeros((len(samples), len(self.classes_)))
        out[:, np.asarray(self.model_.classes_, dtype=np.int64)] = self.model_.predict_proba(samples.table)
        return out

    def _save(self, folder) -> None:
        self.model_.save_model(str(folder / "model.cbm"))

    def _restore(self, folder, meta: dict) -> None:
        from catboost import CatBoostClassifier

        self.model_ = CatBoostClassifier()
        self.model_.load_model(str(folder / "model.cbm"))

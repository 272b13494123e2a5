"""Small estimators the families need: the majority baseline and a linear SVM with calibrated probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class MajorityTagger(BaseEstimator):
    """The baseline: every article gets each tag's share of the training articles as its probability, so the
    most frequent tag is always assigned (and another only if more than half the articles carry it)."""

    def fit(self, X, Y):
        Y = np.asarray(Y)
        self.prior_ = Y.mean(axis=0) if len(Y) else np.zeros(Y.shape[1])
        return self

    def predict_proba(self, X) -> np.ndarray:
        return np.tile(self.prior_, (len(X), 1))

    def predict(self, X) -> np.ndarray:
        from pipelines.tagging.models.base import decide

        return decide(self.predict_proba(X))


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """A binary linear SVM whose decision values are mapped to probabilities by a sigmoid (Platt) fitted on
    out-of-fold decision values (in-sample ones when a class has fewer than two members)."""

    def __init__(self, C: float = 1.0, random_state: int = 0) -> None:
        self.C = C
        self.random_state = random_state

    def _svc(self):
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, class_weight="balanced", random_state=self.random_state, dual="auto",
                         max_iter=5000)

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        y = np.asarray(y).astype(np.int64)
        self.classes_ = np.array([0, 1])
        k = min(3, int(np.bincount(y, minlength=2).min()))
        if k >= 2:
            folds = StratifiedKFold(k, shuffle=True, random_state=self.random_state)
            scores = cross_val_predict(self._svc(), X, y, cv=folds, method="decision_function")
        else:
            scores = None
        self.svc_ = self._svc().fit(X, y)
        if scores is None:
            scores = self.svc_.decision_function(X)
        self.sigmoid_ = LogisticRegression(C=1e4).fit(scores.reshape(-1, 1), y)
        return self

    def decision_function(self, X) -> np.ndarray:
        return self.svc_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        return self.sigmoid_.predict_proba(self.decision_function(X).reshape(-1, 1))

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

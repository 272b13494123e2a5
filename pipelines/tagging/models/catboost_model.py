"""CatBoost with text features: the article's words (or characters) as CatBoost text columns, bag-of-words
features built by CatBoost itself, one multi-label model (``MultiLogloss``) or one model per tag."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

STRATEGIES = ("multilogloss", "one_vs_rest")


def _spaced_chars(text: str) -> str:
    """``"今日 天氣"`` → ``"今 日 | 天 氣"``: CatBoost's space tokenizer then sees characters, and its bigram
    dictionary character pairs that never span a clause break."""
    return " | ".join(" ".join(clause) for clause in text.split(" "))


class CatBoostTagger(BaseEstimator):
    """CatBoost on text columns. ``view``: words, chars (character uni- and bigrams), both, char1."""

    def __init__(self, view: str = "words", iterations: int = 300, depth: int = 6, learning_rate: float = 0.1,
                 strategy: str = "one_vs_rest", calcers: tuple[str, ...] = ("NaiveBayes", "BM25"),
                 bow_size: int = 0, occurrence_lower_bound: int = 2, random_seed: int = 0,
                 thread_count: int = 1) -> None:
        self.view = view
        self.calcers = calcers
        self.bow_size = bow_size
        self.iterations = iterations
        self.depth = depth
        self.learning_rate = learning_rate
        self.strategy = strategy
        self.occurrence_lower_bound = occurrence_lower_bound
        self.random_seed = random_seed
        self.thread_count = thread_count

    def _frame(self, X):
        import pandas as pd

        out = {}
        if self.view in ("words", "both"):
            out["words"] = [t if t else "_" for t in X["words"]]
        if self.view in ("chars", "both", "char1"):
            out["chars"] = [_spaced_chars(t) if t else "_" for t in X["chars"]]
        return pd.DataFrame(out)

    def _text_processing(self, columns: list[str]) -> dict:
        bound = str(self.occurrence_lower_bound)
        dictionaries = [{"dictionary_id": "Uni", "gram_order": "1", "occurrence_lower_bound": bound,
                         "max_dictionary_size": "50000"}]
        char_dicts = ["Uni"]
        if self.view in ("chars", "both"):
            dictionaries.append({"dictionary_id": "Bi", "gram_order": "2", "occurrence_lower_bound": bound,
                                 "max_dictionary_size": "50000"})
            char_dicts = ["Uni", "Bi"]
        if self.bow_size:  # BoW makes one feature per dictionary entry: slow, so a small dictionary of its own
            dictionaries.append({"dictionary_id": "Top", "gram_order": "1", "occurrence_lower_bound": bound,
                                 "max_dictionary_size": str(self.bow_size)})
        processing = {}  # keyed by the text feature's position among the columns
        for i, column in enumerate(columns):
            names = char_dicts if column == "chars" else ["Uni"]
            steps = [{"tokenizers_names": ["Space"], "dictionaries_names": names,
                      "feature_calcers": list(self.calcers)}]
            if self.bow_size:
                steps.append({"tokenizers_names": ["Space"], "dictionaries_names": ["Top"],
                              "feature_calcers": ["BoW"]})
            processing[str(i)] = steps
        return {"tokenizers": [{"tokenizer_id": "Space", "separator_type": "ByDelimiter", "delimiter": " "}],
                "dictionaries": dictionaries, "feature_processing": processing}

    def _model(self, loss: str, columns: list[str]):
        from catboost import CatBoostClassifier

        return CatBoostClassifier(loss_function=loss, iterations=self.iterations, depth=self.depth,
                                  learning_rate=self.learning_rate, random_seed=self.random_seed,
                                  thread_count=self.thread_count, text_features=columns,
                                  text_processing=self._text_processing(columns), verbose=False,
                                  allow_writing_files=False)

    def fit(self, X, Y):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; known: {STRATEGIES}")
        frame = self._frame(X)
        Y = np.asarray(Y).astype(np.int64)
        self.n_tags_ = Y.shape[1]
        columns = list(frame.columns)
        if self.strategy == "multilogloss":
            self.models_ = [self._model("MultiLogloss", columns).fit(frame, Y)]
            return self
        self.models_ = []
        for j in range(self.n_tags_):
            if Y[:, j].min() == Y[:, j].max():  # a tag always or never present: a constant
                self.models_.append(float(Y[0, j]) if len(Y) else 0.0)
            else:
                self.models_.append(self._model("Logloss", columns).fit(frame, Y[:, j]))
        return self

    def predict_proba(self, X) -> np.ndarray:
        frame = self._frame(X)
        if self.strategy == "multilogloss":
            return np.asarray(self.models_[0].predict_proba(frame), dtype=np.float64)
        columns = [np.full(len(frame), m) if isinstance(m, float) else m.predict_proba(frame)[:, 1]
                   for m in self.models_]
        return np.column_stack(columns)

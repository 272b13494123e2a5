"""CatBoost with text features: the article's words (or characters) as CatBoost text columns, bag-of-words
features built by CatBoost itself, one multi-label model (``MultiLogloss``) or one model per tag.

A fitted tagger pickles (joblib, and the return trip from a training worker) as CatBoost's own model bytes,
written once from the freshly trained models, never as pickled ``CatBoostClassifier`` objects: serialising a
CatBoost text model that was itself deserialised reads a null flatbuffer (catboost/catboost#2826, open for
1.2.7-1.2.10; a segfault there, and the likely cause of the spin seen when the tag job loaded a tagger in the
process that trained it, which had received the fitted model from a joblib worker and pickled it again).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

STRATEGIES = ("multilogloss", "one_vs_rest")


def _spaced_chars(text: str) -> str:
    """``"今日 天氣"`` → ``"今 日 | 天 氣"``: CatBoost's space tokenizer then sees characters, and its bigram
    dictionary character pairs that never span a clause break."""
    return " | ".join(" ".join(clause) for clause in text.split(" "))


def _to_bytes(model) -> bytes:
    """CatBoost's own format (``.cbm``) of a model, through a temporary file (``save_model`` needs a path)."""
    with tempfile.TemporaryDirectory(prefix="cbm-") as folder:
        path = Path(folder) / "model.cbm"
        model.save_model(str(path), format="cbm")
        return path.read_bytes()


def _from_bytes(blob: bytes):
    from catboost import CatBoostClassifier

    return CatBoostClassifier().load_model(blob=blob, format="cbm")


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
            self._keep_bytes()
            return self
        self.models_ = []
        for j in range(self.n_tags_):
            if Y[:, j].min() == Y[:, j].max():  # a tag always or never present: a constant
                self.models_.append(float(Y[0, j]) if len(Y) else 0.0)
            else:
                self.models_.append(self._model("Logloss", columns).fit(frame, Y[:, j]))
        self._keep_bytes()
        return self

    # ------------------------------------------------------------------ persistence (see the module docstring)
    def _keep_bytes(self) -> None:
        self.blobs_ = [m if isinstance(m, float) else _to_bytes(m) for m in self.models_]

    def _live(self) -> list:
        """The fitted models: those of this process's fit, or rebuilt once from the bytes after unpickling."""
        if getattr(self, "models_", None) is None:
            self.models_ = [b if isinstance(b, float) else _from_bytes(b) for b in self.blobs_]
        return self.models_

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ can hand back the live __dict__
        if "blobs_" in state:
            state.pop("models_", None)  # the bytes stand for them: no CatBoost object is ever pickled again
        return state

    def predict_proba(self, X) -> np.ndarray:
        frame = self._frame(X)
        if self.strategy == "multilogloss":
            return np.asarray(self._live()[0].predict_proba(frame), dtype=np.float64)
        columns = [np.full(len(frame), m) if isinstance(m, float) else m.predict_proba(frame)[:, 1]
                   for m in self._live()]
        return np.column_stack(columns)

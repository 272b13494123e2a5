"""Article features: the word view (pycantonese words) and the character view (character n-grams), as one
scikit-learn transformer whose parameters a grid search can tune.

An article reaches the models as two text columns (:func:`feature_frame`): ``words``, its words joined by single
spaces, and ``chars``, its clauses joined by single spaces. :class:`TextFeatures` turns them into one sparse
matrix for a *view*:

* ``words``: word unigrams (and n-grams up to ``word_ngram_max``), the seed's features;
* ``chars``: character n-grams of 1 to ``char_ngram_max`` characters within clauses;
* ``both``: the two side by side;
* ``char1``: single characters only, which ignore order entirely: the features the seed's argument ("the same
  characters in another order mean something else") is really about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from pipelines.tagging.schema import DEFAULT_VIEWS, VIEWS
from pipelines.tagging.text import article_text, char_text

__all__ = ["DEFAULT_VIEWS", "VIEWS", "TextFeatures", "feature_frame"]
WEIGHTINGS = ("count", "binary", "tfidf")


def feature_frame(titles: Sequence[str], bodies: Sequence[str], hashes: Sequence[str],
                  words: Mapping[str, Sequence[str]]):
    """The models' input: one row per article, columns ``words`` and ``chars``."""
    import pandas as pd

    return pd.DataFrame({
        "words": [" ".join(words[h]) for h in hashes],
        "chars": [char_text(article_text(t, b)) for t, b in zip(titles, bodies, strict=True)],
    })


class TextFeatures(TransformerMixin, BaseEstimator):
    """Vectorise the ``words`` and/or ``chars`` columns of a view (``count``, ``binary`` or ``tfidf`` weights)."""

    def __init__(self, view: str = "words", weighting: str = "tfidf", min_df: int | float = 2,
                 max_df: float = 1.0, max_features: int | None = None, word_ngram_max: int = 1,
                 char_ngram_max: int = 3) -> None:
        self.view = view
        self.weighting = weighting
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.word_ngram_max = word_ngram_max
        self.char_ngram_max = char_ngram_max

    def _vectorizers(self) -> dict[str, CountVectorizer]:
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r}; known: {VIEWS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; known: {WEIGHTINGS}")
        common = {"min_df": self.min_df, "max_df": self.max_df, "max_features": self.max_features,
                  "lowercase": False, "dtype": np.float64}
        if self.weighting == "tfidf":
            make = lambda **kw: TfidfVectorizer(sublinear_tf=True, **common, **kw)  # noqa: E731
        else:
            make = lambda **kw: CountVectorizer(binary=self.weighting == "binary", **common, **kw)  # noqa: E731
        out = {}
        if self.view in ("words", "both"):
            out["words"] = make(analyzer="word", token_pattern=r"\S+", ngram_range=(1, self.word_ngram_max))
        if self.view in ("chars", "both"):
            out["chars"] = make(analyzer="char_wb", ngram_range=(1, self.char_ngram_max))
        if self.view == "char1":
            out["chars"] = make(analyzer="char", ngram_range=(1, 1))
        return out

    def fit(self, X, y=None):
        self.vectorizers_ = {}
        for column, vectorizer in self._vectorizers().items():
            self.vectorizers_[column] = vectorizer.fit(X[column])
        return self

    def transform(self, X):
        parts = [v.transform(X[column]) for column, v in self.vectorizers_.items()]
        return sp.hstack(parts, format="csr") if len(parts) > 1 else parts[0].tocsr()

    def get_feature_names_out(self, input_features=None):
        return np.array([f"{column}:{name}" for column, v in self.vectorizers_.items()
                         for name in v.get_feature_names_out()], dtype=object)

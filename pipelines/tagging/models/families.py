"""The model families, each a scikit-learn estimator over the feature views, and their default grids.

=================  ==========================================================================================
family             what it is
=================  ==========================================================================================
``majority``       the baseline: each tag's training share as its probability (the majority tag, always)
``seed_rf``        the seed's model: CountVectorizer counts + RandomForest, tuned by GridSearchCV over
                   vectorizer and forest parameters
``tfidf_lr``       TF-IDF (sublinear) + one-vs-rest logistic regression
``tfidf_svm``      TF-IDF (sublinear) + one-vs-rest linear SVM with Platt-calibrated probabilities
``catboost``       CatBoost with text features (its own bag-of-words), one multi-label model
=================  ==========================================================================================

A trained model is named ``<family>_<view>`` (``tfidf_lr_chars``), the baseline just ``majority``: those are
the registry's model names, the ``promote`` choices and the rows of the comparison.
"""

from __future__ import annotations

from typing import Any

from pipelines.tagging.schema import BASELINE, FAMILIES, VIEWS, model_name, model_names

__all__ = ["BASELINE", "DEFAULT_GRID", "FAMILIES", "SEED_MODEL", "build", "check_params", "model_name",
           "model_names", "parse_model_name"]

SEED_MODEL = "seed_rf_words"

#: Grids searched by default (``GridSearchCV`` over the CV folds); a family without a grid keeps its defaults.
#: Keys are the estimator's parameters: ``vectorizer__*`` for :class:`~pipelines.tagging.features.TextFeatures`,
#: ``forest__*`` for the random forest, ``clf__estimator__*`` for the one-vs-rest linear models, CatBoost's own.
DEFAULT_GRID: dict[str, dict[str, list]] = {
    "seed_rf": {"vectorizer__min_df": [1, 2], "forest__n_estimators": [100, 300],
                "forest__max_features": ["sqrt", 0.05]},
    "tfidf_lr": {"clf__estimator__C": [1.0, 10.0, 100.0]},
    "tfidf_svm": {"clf__estimator__C": [0.1, 1.0]},
}


def parse_model_name(name: str) -> tuple[str, str | None]:
    """``"tfidf_lr_chars"`` → ``("tfidf_lr", "chars")``."""
    if name == BASELINE:
        return BASELINE, None
    for view in VIEWS:
        family = name.removesuffix(f"_{view}")
        if family != name and family in FAMILIES:
            return family, view
    raise ValueError(f"{name!r} is not a tagging model name (<family>_<view>, families {FAMILIES}, views {VIEWS})")


def build(family: str, view: str | None, seed: int = 42, n_jobs: int = 1, params: dict[str, Any] | None = None):
    """An unfitted estimator of ``family`` on ``view``, with ``params`` (``set_params`` keys) applied."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline

    from pipelines.tagging.features import TextFeatures
    from pipelines.tagging.models.catboost_model import CatBoostTagger
    from pipelines.tagging.models.simple import CalibratedSVC, MajorityTagger

    if family == BASELINE:
        estimator = MajorityTagger()
    elif family == "seed_rf":
        estimator = Pipeline([("vectorizer", TextFeatures(view, "count")),
                              ("forest", RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=n_jobs))])
    elif family == "tfidf_lr":
        # Not class-balanced: balanced weights push rare tags' probabilities past the 0.5 threshold (more second
        # tags, fewer exact tag sets). Words, C=10, 20K generated articles: held-out accuracy 0.783 balanced,
        # 0.815 unweighted (macro F1 0.841 vs 0.864); 0.722 balanced at 100K (bench/tagging_bench.py).
        lr = LogisticRegression(C=10.0, solver="liblinear", max_iter=2000, random_state=seed)
        estimator = Pipeline([("vectorizer", TextFeatures(view, "tfidf")), ("clf", OneVsRestClassifier(lr))])
    elif family == "tfidf_svm":
        estimator = Pipeline([("vectorizer", TextFeatures(view, "tfidf")),
                              ("clf", OneVsRestClassifier(CalibratedSVC(C=1.0, random_state=seed)))])
    elif family == "catboost":
        estimator = CatBoostTagger(view=view, random_seed=seed, thread_count=n_jobs)
    else:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    if params:
        check_params(estimator, params, family)
        estimator.set_params(**params)
    return estimator


def check_params(estimator, params: dict[str, Any], family: str) -> None:
    """Refuse parameter names the estimator does not have (a typo would silently search nothing)."""
    from pipelines.errors import UsageError

    valid = set(estimator.get_params(deep=True))
    unknown = sorted(set(params) - valid)
    if unknown:
        hint = sorted(k for k in valid if "__" in k and not k.endswith("estimator")) or sorted(valid)
        raise UsageError(f"{family}: unknown parameter(s) {unknown}; valid: {hint[:40]}")

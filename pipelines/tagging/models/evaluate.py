"""Honest scores of a tagger: held-out metrics, per-tag precision and recall, the confusion of primary tags,
the misclassified articles, and paired comparisons of two models on the same articles.

Every metric takes the true tags as a 0/1 matrix ``Y`` (articles × tags) and the model's probabilities, and
applies the serving decision (:func:`~pipelines.tagging.models.base.decide`: every tag at or above the
threshold, and always the most probable one), so what is scored is what would be written to Postgres.

* ``accuracy``: the predicted tag set equals the true set exactly (the seed's accuracy when every article has
  one tag);
* ``top1_accuracy``: the most probable tag is one of the true tags;
* ``macro_f1`` / ``macro_precision`` / ``macro_recall``: per-tag scores averaged over the tags that occur in the
  evaluated articles (every tag counts the same, however rare); ``micro_f1`` pools all tag decisions;
* ``hamming_loss``: the share of wrong (article, tag) decisions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from pipelines.tagging.models.base import DEFAULT_THRESHOLD, decide

ORACLE = "oracle"
METRICS = ("accuracy", "top1_accuracy", "macro_f1", "macro_precision", "macro_recall", "micro_f1", "hamming_loss")


def indicator(tag_lists, tags: list[str]) -> np.ndarray:
    """Tag lists as a 0/1 matrix in the order of ``tags`` (tags outside it are ignored)."""
    index = {t: j for j, t in enumerate(tags)}
    Y = np.zeros((len(tag_lists), len(tags)), dtype=np.int8)
    for i, row in enumerate(tag_lists):
        for tag in row:
            if tag in index:
                Y[i, index[tag]] = 1
    return Y


def correct(Y: np.ndarray, proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per article: is the predicted tag set exactly right?"""
    return (decide(proba, threshold) == np.asarray(Y)).all(axis=1)


def metrics(Y: np.ndarray, proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """The module's metrics for one model on one set of articles."""
    Y = np.asarray(Y)
    pred = decide(proba, threshold)
    n = len(Y)
    if n == 0:
        return {"n": 0, **{m: float("nan") for m in METRICS}}
    support = Y.sum(axis=0) > 0
    p, r, f, _ = precision_recall_fscore_support(Y, pred, average=None, zero_division=0)
    micro = precision_recall_fscore_support(Y, pred, average="micro", zero_division=0)
    top = np.asarray(proba).argmax(axis=1)
    return {
        "n": n,
        "accuracy": float((pred == Y).all(axis=1).mean()),
        "top1_accuracy": float(Y[np.arange(n), top].mean()),
        "macro_f1": float(f[support].mean()) if support.any() else float("nan"),
        "macro_precision": float(p[support].mean()) if support.any() else float("nan"),
        "macro_recall": float(r[support].mean()) if support.any() else float("nan"),
        "micro_f1": float(micro[2]),
        "hamming_loss": float((pred != Y).mean()),
    }


def per_tag(Y: np.ndarray, proba: np.ndarray, tags: list[str], threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Precision, recall, F1, support (true articles) and predicted articles per tag."""
    pred = decide(proba, threshold)
    p, r, f, s = precision_recall_fscore_support(Y, pred, average=None, zero_division=0, labels=range(len(tags)))
    return pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s, "predicted": pred.sum(axis=0)},
                        index=pd.Index(tags, name="tag"))


def confusion(primary: np.ndarray, proba: np.ndarray, n_tags: int) -> np.ndarray:
    """Rows: the article's primary (first listed) tag; columns: the model's most probable tag."""
    matrix = np.zeros((n_tags, n_tags), dtype=np.int64)
    for true, top in zip(primary, np.asarray(proba).argmax(axis=1), strict=True):
        matrix[true, top] += 1
    return matrix


def misclassified(frame: pd.DataFrame, Y: np.ndarray, proba: np.ndarray, tags: list[str],
                  threshold: float = DEFAULT_THRESHOLD, clean: list[list[str]] | None = None) -> pd.DataFrame:
    """The articles whose predicted tag set is wrong: id, title, true and predicted tags with probabilities,
    and, on generated data, the clean tags and whether the given label was planted noise (then the model may
    well be right and the label wrong)."""
    pred = decide(proba, threshold)
    wrong = np.flatnonzero(~(pred == np.asarray(Y)).all(axis=1))
    rows = []
    for i in wrong:
        chosen = sorted(np.flatnonzero(pred[i]), key=lambda j: -proba[i, j])
        row = {"id": frame["id"].iloc[i], "title": frame["title"].iloc[i],
               "tags": "|".join(t for j, t in enumerate(tags) if Y[i, j]),
               "predicted": "|".join(f"{tags[j]} ({proba[i, j]:.2f})" for j in chosen)}
        if clean is not None:
            row["clean_tags"] = "|".join(clean[i])
            row["label_is_noise"] = sorted(clean[i]) != sorted(t for j, t in enumerate(tags) if Y[i, j])
        rows.append(row)
    columns = ["id", "title", "tags", "predicted"] + (["clean_tags", "label_is_noise"] if clean is not None else [])
    return pd.DataFrame(rows, columns=columns)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Accuracy of A minus accuracy of B on the same articles, with a 95% percentile bootstrap interval
    (articles resampled together for both models)."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if len(a) == 0:
        return {"difference": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(resamples, len(a)))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    return {"difference": float(a.mean() - b.mean()), "low": float(np.percentile(diffs, 2.5)),
            "high": float(np.percentile(diffs, 97.5))}

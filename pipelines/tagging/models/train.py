"""Train every model on every view, all on the same splits, and compare them honestly.

For each model (a family on a view, plus the majority baseline):

1. if its family has a grid with more than one value, ``GridSearchCV`` picks the parameters on the CV folds
   (the seed's procedure); the chosen parameters are recorded;
2. stratified, seeded, near-duplicate-aware k-fold CV on the training articles gives out-of-fold
   probabilities for every training article: the CV metrics (mean and spread over the folds) and the seed's
   "articles misclassified during CV". For a grid-searched model these CV figures are optimistic (the folds
   also chose its parameters);
3. the model is refitted on all training articles and scored once on the **held-out** articles, which no step
   above has seen: the figures to compare and to promote on.

The oracle (the generator's clean tags, when the corpus is generated) is scored on the same held-out
articles: the ceiling the planted label noise allows. No database here; :mod:`pipelines.tagging.jobs`
records the result in the run registry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.tagging.features import DEFAULT_VIEWS, VIEWS
from pipelines.tagging.models import evaluate
from pipelines.tagging.models.base import DEFAULT_THRESHOLD, TagModel, decide, probabilities
from pipelines.tagging.models.families import (
    BASELINE,
    DEFAULT_GRID,
    FAMILIES,
    build,
    check_params,
    model_name,
    parse_model_name,
)
from pipelines.tagging.models.split import cv_folds, holdout_split, near_duplicate_groups

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training's result (its hash is part of the model version)."""

    families: tuple[str, ...] = FAMILIES
    views: tuple[str, ...] = DEFAULT_VIEWS
    grid: dict[str, dict[str, list]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_GRID.items()})
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # fixed parameters per family
    cv_folds: int = 5
    holdout_share: float = 0.2
    seed: int = 42
    threshold: float = DEFAULT_THRESHOLD
    n_jobs: int = 1  # folds fitted in parallel processes; does not change any result (not part of the version)

    def check(self) -> None:
        from pipelines.errors import UsageError

        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise UsageError(f"unknown model famil(ies) {unknown}; known: {FAMILIES}")
        bad_views = [v for v in self.views if v not in VIEWS]
        if bad_views or not self.views:
            raise UsageError(f"views {list(self.views)}: choose one or more of {VIEWS}")
        for family in {*self.grid, *self.params}:
            if family not in FAMILIES:
                raise UsageError(f"grid/params for unknown family {family!r}; known: {FAMILIES}")
        for family, grid in self.grid.items():
            if not isinstance(grid, dict):
                raise UsageError(f"grid {family} must map parameter names to lists of values, got {grid!r}")
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise UsageError(f"grid {family}.{key} must be a non-empty list of values, got {values!r}")
        for family, values in [*self.grid.items(), *self.params.items()]:
            check_params(build(family, self.views[0], self.seed), dict(values), family)
        if not 2 <= self.cv_folds <= 20:
            raise UsageError(f"cv_folds {self.cv_folds} must be between 2 and 20")
        if not 0 < self.holdout_share < 1:
            raise UsageError(f"holdout_share {self.holdout_share} must be strictly between 0 and 1")
        if not 0 < self.threshold < 1:
            raise UsageError(f"threshold {self.threshold} must be strictly between 0 and 1")

    def model_names(self) -> list[str]:
        return [model_name(f, v) for f in self.families for v in ((None,) if f == BASELINE else self.views)]

    def as_dict(self) -> dict:
        """What decides the result (``n_jobs`` only decides the speed)."""
        out = asdict(self)
        out.pop("n_jobs")
        return out


def _scorer(threshold: float, n_tags: int):
    """GridSearchCV's score: held-out-fold macro F1 under the serving decision."""

    def score(estimator, X, Y) -> float:
        return evaluate.metrics(Y, probabilities(estimator, X, n_tags), threshold)["macro_f1"]

    return score


def _search(estimator, grid: dict[str, list], X, Y, folds, threshold: float, n_tags: int,
            n_jobs: int = 1) -> tuple[dict, dict]:
    """The best grid cell (mean CV macro F1) and a summary of the search."""
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(estimator, grid, scoring=_scorer(threshold, n_tags), cv=folds, refit=False, n_jobs=n_jobs,
                          error_score="raise")
    search.fit(X, Y)
    results = search.cv_results_
    cells = [{"params": {k: _plain(v) for k, v in p.items()}, "mean": float(m), "std": float(s)}
             for p, m, s in zip(results["params"], results["mean_test_score"], results["std_test_score"], strict=True)]
    best = {k: _plain(v) for k, v in search.best_params_.items()}
    return best, {"cells": cells, "best": best, "best_cv_macro_f1": float(search.best_score_)}


def _fit_predict(estimator, X_fit, Y_fit, X_predict, n_tags: int) -> tuple[object, np.ndarray, float, float]:
    """Fit a fresh copy, predict: ``(model, probabilities, fit seconds, predict seconds)`` (one parallel job)."""
    from sklearn.base import clone

    started = time.perf_counter()
    model = clone(estimator).fit(X_fit, Y_fit)
    fitted = time.perf_counter()
    proba = probabilities(model, X_predict, n_tags)
    return model, proba, fitted - started, time.perf_counter() - fitted


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _fixed(grid: dict[str, list] | None) -> tuple[dict, dict]:
    """A grid split into searched keys (several values) and fixed ones (a single value)."""
    grid = grid or {}
    searched = {k: list(v) for k, v in grid.items() if len(v) > 1}
    fixed = {k: v[0] for k, v in grid.items() if len(v) == 1}
    return searched, fixed


def train_and_evaluate(data: pd.DataFrame, out_dir: Path, config: TrainConfig, tags: list[str],
                       feature_version: str, clean: dict[str, list[str]] | None = None,
                       progress: bool = False) -> dict:
    """Fit, cross-validate and hold out every model of ``config`` on ``data`` (columns ``id, title, body, tags,
    words, chars``); save each model under ``out_dir/models/<name>/``. ``clean``: the generator's clean tags by
    article id (the oracle). Returns everything the report and the registry need."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    config.check()
    data = data.reset_index(drop=True)
    Y = evaluate.indicator(data["tags"], tags)
    keep = Y.sum(axis=1) > 0
    if not keep.all():
        log.warning("%d articles have none of the tags %s and are left out", int((~keep).sum()), tags)
        data, Y = data[keep].reset_index(drop=True), Y[keep]
    primary = np.array([tags.index(next(t for t in row if t in tags)) for row in data["tags"]])
    groups = near_duplicate_groups(list(data["body"]))
    train_idx, test_idx = holdout_split(primary, groups, config.holdout_share, config.seed)
    folds = cv_folds(primary[train_idx], groups[train_idx], config.cv_folds, config.seed)
    X = data[["words", "chars"]]
    X_train, Y_train, X_test, Y_test = X.iloc[train_idx], Y[train_idx], X.iloc[test_idx], Y[test_idx]
    test_frame = data.iloc[test_idx].reset_index(drop=True)
    train_frame = data.iloc[train_idx].reset_index(drop=True)
    n_tags = len(tags)
    names = config.model_names()
    table: dict[str, dict] = {}
    holdout_proba: dict[str, np.ndarray] = {}
    oof_proba: dict[str, np.ndarray] = {}
    fold_metrics: dict[str, list[dict]] = {}
    folders: dict[str, str] = {}
    searches: dict[str, dict] = {}
    bar = tqdm(names, desc="training", unit="model", disable=not progress or None)
    for name in bar:
        family, view = parse_model_name(name)
        bar.set_postfix_str(name)
        searched, fixed = _fixed(config.grid.get(family))
        fixed = {**fixed, **config.params.get(family, {})}
        estimator = build(family, view, config.seed, 1, fixed)
        started = time.perf_counter()
        chosen = dict(fixed)
        if searched:
            check_params(estimator, searched, family)
            best, searches[name] = _search(estimator, searched, X_train, Y_train, folds, config.threshold, n_tags,
                                           config.n_jobs)
            estimator.set_params(**best)
            chosen.update(best)
        search_seconds = time.perf_counter() - started
        # The k folds and the final fit on every training article are independent: one parallel batch.
        started = time.perf_counter()
        jobs = [(X_train.iloc[tr], Y_train[tr], X_train.iloc[va]) for tr, va in folds] + [(X_train, Y_train, X_test)]
        done = Parallel(n_jobs=min(config.n_jobs, len(jobs)))(
            delayed(_fit_predict)(estimator, fit_x, fit_y, pred_x, n_tags) for fit_x, fit_y, pred_x in jobs)
        cv_seconds = time.perf_counter() - started
        oof = np.zeros((len(train_idx), n_tags))
        fold_metrics[name] = []
        for (_, va), (_, fold_proba, _, _) in zip(folds, done[:-1], strict=True):
            oof[va] = fold_proba
            fold_metrics[name].append(evaluate.metrics(Y_train[va], fold_proba, config.threshold))
        final, proba, fit_seconds, predict_seconds = done[-1]
        holdout_proba[name], oof_proba[name] = proba, oof
        row = evaluate.metrics(Y_test, proba, config.threshold)
        for metric in ("accuracy", "macro_f1", "top1_accuracy"):
            values = [m[metric] for m in fold_metrics[name]]
            row[f"cv_{metric}_mean"] = float(np.mean(values))
            row[f"cv_{metric}_std"] = float(np.std(values))
        row["cv_misclassified"] = int((~evaluate.correct(Y_train, oof, config.threshold)).sum())
        row.update({"fit_seconds": fit_seconds, "cv_seconds": cv_seconds, "search_seconds": search_seconds,
                    "predict_articles_per_second": len(test_idx) / predict_seconds if predict_seconds else None})
        table[name] = row
        tag_model = TagModel(name=name, family=family, view=view or "-", tags=list(tags), estimator=final,
                             feature_version=feature_version, params=chosen, threshold=config.threshold,
                             fit_info={"fit_seconds": fit_seconds, "n_train": len(train_idx),
                                       "search": searches.get(name)})
        folders[name] = str(tag_model.save(Path(out_dir) / "models" / name))
        log.info("%s: held-out accuracy %.3f, macro F1 %.3f (CV %.3f ± %.3f)", name, row["accuracy"],
                 row["macro_f1"], row["cv_macro_f1_mean"], row["cv_macro_f1_std"])
    bar.close()

    oracle = cv_oracle = None
    clean_test = clean_train = None
    if clean is not None and all(i in clean for i in data["id"]):
        clean_test = [clean[i] for i in test_frame["id"]]
        clean_train = [clean[i] for i in train_frame["id"]]
        oracle_proba = evaluate.indicator(clean_test, tags).astype(np.float64)
        oracle = evaluate.metrics(Y_test, oracle_proba, config.threshold)
        holdout_proba[evaluate.ORACLE] = oracle_proba
        cv_oracle = evaluate.metrics(Y_train, evaluate.indicator(clean_train, tags).astype(np.float64),
                                     config.threshold)
    elif clean is not None:
        log.warning("the generator's truth does not cover every article: no oracle")

    trained = [n for n in names if n != BASELINE]
    best = max(trained or names, key=lambda n: (table[n]["macro_f1"], table[n]["accuracy"]))
    comparisons = _view_comparisons(config, names, Y_test, holdout_proba, fold_metrics)
    return {
        "tags": list(tags), "config": config.as_dict(), "feature_version": feature_version,
        "n_articles": len(data), "n_train": len(train_idx), "n_holdout": len(test_idx),
        "n_groups": len(np.unique(groups)), "grouped_articles": int(len(data) - len(np.unique(groups))),
        "two_tag_articles": int((Y.sum(axis=1) > 1).sum()),
        "table": table, "oracle": oracle, "cv_oracle": cv_oracle, "best": best, "folders": folders,
        "searches": searches, "comparisons": comparisons,
        "fold_metrics": fold_metrics,
        # for the report (not JSON): frames and arrays
        "_test_frame": test_frame, "_train_frame": train_frame, "_Y_test": Y_test, "_Y_train": Y_train,
        "_holdout_proba": holdout_proba, "_oof_proba": oof_proba, "_primary_test": primary[test_idx],
        "_clean_test": clean_test, "_clean_train": clean_train,
        "noisy_holdout_labels": None if clean_test is None else int(sum(
            sorted(c) != sorted(t) for c, t in zip(clean_test, test_frame["tags"], strict=True))),
    }


def _view_comparisons(config: TrainConfig, names: list[str], Y_test: np.ndarray, proba: dict[str, np.ndarray],
                      folds: dict[str, list[dict]]) -> list[dict]:
    """Per family: the word view against each other view, on the same held-out articles (paired bootstrap of
    the accuracy difference) and the same CV folds (mean and spread of the per-fold macro-F1 difference)."""
    out = []
    for family in config.families:
        if family == BASELINE:
            continue
        words = model_name(family, "words")
        if words not in names:
            continue
        for view in config.views:
            other = model_name(family, view)
            if view == "words" or other not in names:
                continue
            boot = evaluate.paired_bootstrap(evaluate.correct(Y_test, proba[words], config.threshold),
                                             evaluate.correct(Y_test, proba[other], config.threshold),
                                             seed=config.seed)
            diffs = [a["macro_f1"] - b["macro_f1"] for a, b in zip(folds[words], folds[other], strict=True)]
            out.append({"family": family, "words": words, "other": other,
                        "holdout_accuracy_difference": boot["difference"], "low": boot["low"], "high": boot["high"],
                        "cv_macro_f1_difference_mean": float(np.mean(diffs)),
                        "cv_macro_f1_difference_std": float(np.std(diffs)),
                        "cv_folds_words_better": int(sum(d > 0 for d in diffs))})
    return out


def predicted_sets(proba: np.ndarray, tags: list[str], threshold: float) -> list[list[str]]:
    return [[tags[j] for j in np.flatnonzero(row)] for row in decide(proba, threshold)]

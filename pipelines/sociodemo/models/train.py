"""Fit every model on the same split of users and evaluate them on the same held-out users.

No registry or database here: the jobs layer records what :func:`train_and_evaluate` returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.sociodemo.models.base import Predictions, load_dataset
from pipelines.sociodemo.models.evaluate import ORACLE, compare, write_report
from pipelines.sociodemo.models.registry import MODELS
from pipelines.sociodemo.models.split import split_users

log = logging.getLogger(__name__)


def train_and_evaluate(features_path, sets_path, targets: pd.DataFrame, out_dir: Path, *,
                       models: Sequence[str] = ("topclass", "catboost", "deepsets"), params: dict | None = None,
                       oracle_fn: Callable[[np.ndarray], Predictions] | None = None, seed: int = 42) -> dict:
    """Split the labelled users (by uid hash), fit each model on train with early stopping on valid, compare all
    on test (with the oracle if ``oracle_fn`` is given), save each model under ``out_dir/<name>/`` and the report
    under ``out_dir/report/``.

    ``params``: per model name, keyword arguments of its constructor (e.g. ``{"deepsets": {"max_epochs": 5}}``).
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    params = params or {}
    out_dir = Path(out_dir)
    data = load_dataset(features_path, sets_path, targets=targets)
    train_mask, valid_mask, test_mask = split_users(data.uids, seed=seed)
    if not (train_mask.any() and valid_mask.any() and test_mask.any()):
        raise ValueError(f"too few labelled users to split ({len(data.uids)})")
    train, valid, test = data.subset(train_mask), data.subset(valid_mask), data.subset(test_mask)
    preds: dict[str, Predictions] = {}
    fitted: dict[str, dict] = {}
    importances = None
    for name in models:
        model = MODELS[name](**params.get(name, {}))
        info = model.fit(train, valid)
        preds[name] = model.predict(test)
        folder = out_dir / name
        model.save(folder)
        fitted[name] = {"folder": str(folder), "fit": info}
        if hasattr(model, "feature_importances"):
            importances = model.feature_importances()
        log.info("%s fitted in %.1fs", name, info.get("seconds", float("nan")))
    oracle = oracle_fn(test.uids) if oracle_fn is not None else None
    table = compare(preds, test.sex, test.age_class, oracle)
    charts = {**preds, **({ORACLE: oracle} if oracle is not None else {})}
    report = write_report(out_dir / "report", table, charts, test.sex, test.age_class, importances)
    table.to_csv(out_dir / "report" / "metrics.csv")
    log.info("held-out comparison:\n%s", table.to_string())
    # Through JSON so the registry gets plain floats (NaN as None), not numpy scalars.
    return {"table": json.loads(table.to_json(orient="index")), "models": fitted, "report": [str(p) for p in report],
            "n_train": int(train_mask.sum()), "n_valid": int(valid_mask.sum()), "n_test": int(test_mask.sum())}

"""Fit every requested model on the same training attempts and compare them on the same held-out attempts.

No registry or database here (the jobs layer records what :func:`train_and_evaluate` returns). Each model is
saved under ``out_dir/<type>/`` with the ids of the attempts it trained on (``train_samples.txt``: later
comparisons never score a model on an attempt it has seen); the report goes to ``out_dir/report/``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.keystrokes.features import FEATURE_VERSION, Samples
from pipelines.keystrokes.models.baselines import ChanceModel, MajorityModel, OracleModel
from pipelines.keystrokes.models.evaluate import ORACLE, compare, user_level_perf, user_stats, write_report
from pipelines.keystrokes.models.registry import MODEL_TYPES
from pipelines.keystrokes.models.split import holdout_mask

log = logging.getLogger(__name__)


def train_and_evaluate(samples: Samples, out_dir: Path, *, models: Sequence[str], params: dict | None = None,
                       holdout_share: float = 0.2, seed: int = 42, oracle_profiles: list[dict] | None = None,
                       context: dict | None = None, progress: bool = True) -> dict:
    """Split, fit, compare and report (see the module docstring). ``params``: per model type, constructor
    arguments (``{"gru": {"epochs": 5}}``); ``seed`` is every model's seed unless its params name another."""
    from tqdm import tqdm

    unknown = [m for m in models if m not in MODEL_TYPES]
    if unknown:
        raise ValueError(f"unknown model type(s) {unknown}; known: {sorted(MODEL_TYPES)}")
    if samples.labels is None or len(samples) == 0:
        raise ValueError("no labelled attempts to train on")
    params = params or {}
    out_dir = Path(out_dir)
    classes = sorted(set(samples.labels.tolist()))
    if len(classes) < 2:
        raise ValueError(f"identification needs at least two users, the data has {len(classes)}")
    held = holdout_mask(samples.sample_ids, samples.labels, holdout_share, seed)
    if not held.any():
        raise ValueError("no held-out attempts: every user has a single attempt")
    _ = samples.table  # features once, shared by both subsets
    train, test = samples.subset(~held), samples.subset(held)
    index = {c: i for i, c in enumerate(classes)}
    y_test = np.array([index[c] for c in test.labels], dtype=np.int64)
    train_counts = Counter(train.labels.tolist())

    probas: dict[str, np.ndarray] = {}
    fitted: dict[str, dict] = {}
    baselines = [ChanceModel(seed=seed), MajorityModel()]
    if oracle_profiles is not None:
        baselines.append(OracleModel(oracle_profiles))
    for model in baselines:
        model.fit(train, classes)
        probas[model.name] = model.predict_proba(test)
    for name in tqdm(list(models), desc="keystrokes models", unit="model", file=sys.stderr, disable=not progress):
        model_params = {"seed": seed, **params.get(name, {})} if "seed" in MODEL_TYPES[name].defaults \
            else dict(params.get(name, {}))
        model = MODEL_TYPES[name](**model_params)
        info = model.fit(train, classes)
        started = time.perf_counter()
        probas[name] = model.predict_proba(test)
        predict_s = time.perf_counter() - started
        folder = out_dir / name
        model.save(folder)
        (folder / "train_samples.txt").write_text("\n".join(train.sample_ids.tolist()) + "\n")
        fitted[name] = {"folder": str(folder), "fit": info, "params": model.params,
                        "train_samples_per_s": len(train) / max(info["seconds"], 1e-9),
                        "predict_samples_per_s": len(test) / max(predict_s, 1e-9)}
        log.info("%s: accuracy %.3f (fit %.1f s)", name, float((probas[name].argmax(1) == y_test).mean()),
                 info["seconds"])
    table = compare(y_test, probas)
    trained = [m for m in models if m in table.index]
    best = max(trained, key=lambda m: (table.loc[m, "accuracy"], -table.loc[m, "eer"]))
    stats = user_stats(samples.labels, samples.table)
    perfs = {name: user_level_perf(classes, y_test, p, train_counts, stats) for name, p in probas.items()
             if name in trained or name == ORACLE}
    context = {**(context or {}), "users": len(classes), "n_train": len(train), "n_test": len(test),
               "holdout_share": holdout_share, "seed": seed, "feature_version": FEATURE_VERSION}
    report = write_report(out_dir / "report", table, perfs, best, context)
    as_json = json.loads(table.to_json(orient="index"))
    return {"table": as_json, "models": fitted, "best": best, "report": [str(p) for p in report],
            "n_train": len(train), "n_test": len(test), "users": len(classes), "classes": classes,
            "test_sample_ids": test.sample_ids.tolist()}

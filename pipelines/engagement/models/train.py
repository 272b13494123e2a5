"""One training run: split by time, fit every model on the training months, compare all on the same test rows.

No registry or database here (the jobs layer records what :func:`train_and_evaluate` returns). The baselines
(``mean``, ``author_mean``) are always trained, whatever ``models`` names: a model is only ever reported
beside them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np

from pipelines.engagement import dataset
from pipelines.engagement.features import FEATURE_VERSION
from pipelines.engagement.models.base import TrainContext
from pipelines.engagement.models.evaluate import ORACLE, compare, write_report
from pipelines.engagement.models.registry import BASELINES, MODELS

log = logging.getLogger(__name__)


def train_and_evaluate(files: list[dataset.MonthFile], as_of: date, out_dir: Path, *,
                       models: Sequence[str] = ("linear", "catboost", "minilm", "neural"),
                       params: dict | None = None, seed: int = 42, valid_months: int = 1, test_months: int = 1,
                       train_months: int | None = None, eval_rows: int = 20_000, valid_rows: int = 20_000,
                       truth_paths: list[Path] | None = None, workdir: Path | None = None) -> dict:
    """Fit ``models`` (and the baselines) on the training months before ``as_of``'s split, evaluate all on the
    same bounded sample of the test months (with the oracle when ``truth_paths`` hold the generator's truth),
    save each model under ``out_dir/<name>/`` and the report under ``out_dir/report/``.

    ``params``: per model name, keyword arguments of its constructor (``{"linear": {"epochs": 3}}``).
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    names = [*BASELINES, *[m for m in models if m not in BASELINES]]
    params = params or {}
    out_dir, workdir = Path(out_dir), Path(workdir or out_dir / "_work")
    split = dataset.time_split({f.month for f in files}, as_of, valid_months, test_months, train_months)
    prepared = dataset.prepare(files, split, workdir / "prepared")
    stats, target = dataset.author_stats(prepared.of(split.train), split.end)
    valid = dataset.sample(prepared.of(split.valid), split.end, valid_rows, seed, "valid", workdir=workdir)
    test = dataset.sample(prepared.of(split.test), split.end, eval_rows, seed, "test", workdir=workdir)
    log.info("split %s: %d training rows, samples valid %d / test %d", split.as_dict(), target["rows"],
             valid.num_rows, test.num_rows)
    ctx = TrainContext(prepared=prepared, stats=stats, target=target, valid=valid, seed=seed, workdir=workdir)
    preds: dict[str, np.ndarray] = {}
    fitted: dict[str, dict] = {}
    valid_scores: dict[str, float] = {}
    curves: dict[str, list] = {}
    for name in names:
        started = time.perf_counter()
        model = MODELS[name](**params.get(name, {}))
        info = model.fit(ctx)
        preds[name] = model.predict(test)
        folder = out_dir / name
        model.save(folder)
        info["seconds"] = round(time.perf_counter() - started, 2)
        if info.get("curve"):
            curves[name] = info["curve"]
        elif info.get("valid_rmse") is not None:  # measured while fitting (early stopping, penalty choice)
            valid_scores[name] = float(info["valid_rmse"])
        else:
            from pipelines.engagement.models.base import rmse

            valid_scores[name] = rmse(np.log1p(valid["up_votes"].to_numpy()), model.predict(valid))
        fitted[name] = {"folder": str(folder), "params": model.params, "fit": info}
        log.info("%s fitted in %.1fs", name, info["seconds"])
    votes = test["up_votes"].to_numpy()
    oracle, oracle_valid, notes = _oracle(test, valid, truth_paths)
    table = compare(preds, votes, oracle)
    if oracle_valid is not None:
        valid_scores[ORACLE] = oracle_valid
    monthly = dataset.monthly_means(prepared.files, split.end)
    notes = [f"Training months: {len(split.train)} ({target['rows']:,} posts); validation sample "
             f"{valid.num_rows:,}, test sample {test.num_rows:,} posts; seed {seed}; features {FEATURE_VERSION}.",
             *notes]
    report = write_report(out_dir / "report", table, {**preds, **({ORACLE: oracle} if oracle is not None else {})},
                          votes, curves=curves, flat_lines=valid_scores, monthly=monthly, split=split.as_dict(),
                          notes=notes)
    table.to_csv(out_dir / "report" / "metrics.csv")
    (out_dir / "report" / "curves.json").write_text(json.dumps({"curves": curves, "valid_rmse": valid_scores}))
    log.info("held-out comparison:\n%s", table.to_string())
    return {"table": json.loads(table.to_json(orient="index")), "models": fitted, "split": split.as_dict(),
            "rows": {"train": target["rows"], "valid_sample": valid.num_rows, "test_sample": test.num_rows,
                     "valid_months": prepared.rows(split.valid), "test_months": prepared.rows(split.test)},
            "report": [str(p) for p in report], "monthly": monthly, "curves": curves,
            "valid_rmse": {**valid_scores, **{name: points[-1][1] for name, points in curves.items()}}}


def _oracle(test, valid, truth_paths: list[Path] | None):
    """The generator's expected log1p(up_votes) of the test sample (and its RMSE on the validation sample)."""
    if not truth_paths:
        return None, None, ["No generator truth: the data is real, so there is no oracle row."]
    from pipelines.engagement.models.base import rmse

    ids = np.concatenate([test["post_id"].to_numpy(), valid["post_id"].to_numpy()])
    truth = dataset.truth_for(ids, truth_paths)
    test_ids, valid_ids = test["post_id"].to_numpy(), valid["post_id"].to_numpy()
    missing = sum(1 for i in test_ids if int(i) not in truth)
    if missing:
        return None, None, [f"The generator's truth misses {missing} test post(s): no oracle row."]
    oracle = np.array([truth[int(i)] for i in test_ids])
    have = [i for i, pid in enumerate(valid_ids) if int(pid) in truth]
    oracle_valid = rmse(np.log1p(valid["up_votes"].to_numpy()[have]),
                        np.array([truth[int(valid_ids[i])] for i in have]))
    return oracle, oracle_valid, ["The oracle is the generator's expected log1p(up_votes) of each post: the "
                                  "ceiling no model can beat beyond noise."]

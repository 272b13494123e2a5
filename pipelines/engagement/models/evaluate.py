"""Held-out metrics on both scales, one comparison table with the baselines and the oracle, and a report.

Metrics of a prediction ``p`` of ``log1p(up_votes)`` against the votes ``v`` of the test sample:

* ``rmse_log1p``, ``mae_log1p``, ``r2_log1p``: on the scale the models learn (the heavy tail tamed);
* ``mae_votes``: mean absolute error in votes, predicting ``expm1(p)`` (the median-like back-transform);
* ``spearman``: rank correlation of ``p`` with the votes (NaN for a constant prediction: no ranking);
* ``precision_top_decile``: of the 10% of posts ranked highest by ``p`` (ties broken by the sample's order),
  the share that really took off, i.e. reached the test sample's 90th percentile of votes;
  ``top_decile_base_rate`` is that share over all posts (what a random ranking scores).

On generated data the oracle (the generator's E[log1p(up_votes) | post]) is scored on the same rows: it is the
best possible RMSE, so ``share_of_oracle_gain`` = (mean's RMSE − model's) / (mean's − oracle's) says how much of
the achievable improvement over the mean baseline a model captures (1 = all of it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ORACLE = "oracle"
BASELINE = "mean"
METRICS = ("rmse_log1p", "mae_log1p", "r2_log1p", "mae_votes", "spearman", "precision_top_decile")


def metrics(votes, pred_log1p) -> dict:
    """Every metric of one prediction (see the module docstring)."""
    from scipy.stats import spearmanr

    votes = np.asarray(votes, dtype=np.float64)
    pred = np.asarray(pred_log1p, dtype=np.float64)
    y = np.log1p(votes)
    n = len(y)
    err = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2)) if n else 0.0
    k = max(1, int(np.ceil(n / 10)))
    threshold = np.quantile(votes, 0.9, method="higher") if n else 0.0
    took_off = votes >= threshold
    top = np.argsort(-pred, kind="stable")[:k]
    constant = n < 2 or np.all(pred == pred[0])
    return {
        "n": n,
        "rmse_log1p": float(np.sqrt(np.mean(err**2))) if n else float("nan"),
        "mae_log1p": float(np.mean(np.abs(err))) if n else float("nan"),
        "r2_log1p": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot else float("nan"),
        "mae_votes": float(np.mean(np.abs(np.expm1(np.maximum(pred, 0.0)) - votes))) if n else float("nan"),
        "spearman": float("nan") if constant else float(spearmanr(pred, votes).statistic),
        "precision_top_decile": float(took_off[top].mean()) if n else float("nan"),
        "top_decile_base_rate": float(took_off.mean()) if n else float("nan"),
    }


def compare(preds: dict[str, np.ndarray], votes, oracle: np.ndarray | None = None) -> pd.DataFrame:
    """One row per model (and the oracle) of :func:`metrics`, with each model's share of the oracle's gain."""
    rows = {name: metrics(votes, pred) for name, pred in preds.items()}
    if oracle is not None:
        rows[ORACLE] = metrics(votes, oracle)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    if oracle is not None and BASELINE in table.index:
        base, best = table.loc[BASELINE, "rmse_log1p"], table.loc[ORACLE, "rmse_log1p"]
        table["share_of_oracle_gain"] = (base - table["rmse_log1p"]) / (base - best) if base > best else np.nan
    return table


def _markdown(table: pd.DataFrame) -> str:
    columns = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, row in table.iterrows():
        cells = []
        for column, v in zip(table.columns, row.tolist(), strict=True):
            if column == "n":
                cells.append(f"{int(v):,}")
            elif isinstance(v, float):
                cells.append("—" if np.isnan(v) else f"{v:.4f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines)


def write_report(folder: Path, table: pd.DataFrame, preds: dict[str, np.ndarray], votes, *, curves: dict,
                 flat_lines: dict[str, float], monthly: dict[str, dict], split: dict, notes: list[str]) -> list[Path]:
    """``report.md`` and its PNG charts: the learning curves (validation error against rows seen, with the
    sample-based models, the baselines and the oracle as lines), the comparison, calibration by decile, and the
    monthly mean target across the split (the drift)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, Path]] = []
    y = np.log1p(np.asarray(votes, dtype=np.float64))

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=f"{name} (streamed)")
    styles = {ORACLE: ("black", "--"), BASELINE: ("grey", ":"), "author_mean": ("tab:brown", ":")}
    for i, (name, value) in enumerate(flat_lines.items()):
        color, style = styles.get(name, (f"C{(i + 3) % 10}", "-."))
        ax.axhline(value, color=color, linestyle=style, linewidth=1, label=name)
    ax.set(xlabel="training rows seen", ylabel="RMSE of log1p(up_votes), validation sample",
           title="Learning curves (validation months)")
    ax.legend(fontsize=8)
    path = folder / "learning_curve.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    images.append(("Learning curves", path))

    shown = table.sort_values("rmse_log1p")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = ["black" if n == ORACLE else "grey" if n in (BASELINE, "author_mean") else "tab:blue" for n in shown.index]
    axes[0].barh(shown.index.astype(str), shown["rmse_log1p"], color=colors)
    axes[0].set(xlabel="RMSE of log1p(up_votes) (lower is better)", title="Test months")
    axes[0].invert_yaxis()
    axes[1].barh(shown.index.astype(str), shown["precision_top_decile"], color=colors)
    if "top_decile_base_rate" in shown:
        axes[1].axvline(float(shown["top_decile_base_rate"].iloc[0]), color="red", linestyle=":", label="random")
        axes[1].legend(fontsize=8)
    axes[1].set(xlabel="precision in the predicted top decile", title="Finding the posts that take off")
    axes[1].invert_yaxis()
    path = folder / "comparison.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    images.append(("Every model beside the baselines and the oracle", path))

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, pred in preds.items():
        if len(pred) < 10 or np.all(pred == pred[0]):
            continue
        deciles = pd.qcut(pd.Series(pred).rank(method="first"), 10, labels=False)
        frame = pd.DataFrame({"d": deciles, "p": pred, "y": y}).groupby("d").mean()
        ax.plot(frame["p"], frame["y"], marker="o", linestyle="--" if name == ORACLE else "-", label=name)
    lo, hi = float(np.min(y)) if len(y) else 0.0, float(np.max(y)) if len(y) else 1.0
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set(xlabel="mean predicted log1p(up_votes), by predicted decile", ylabel="mean actual log1p(up_votes)",
           title="Calibration (test months)")
    ax.legend(fontsize=8)
    path = folder / "calibration.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    images.append(("Calibration by predicted decile", path))

    if monthly:
        months = sorted(monthly)
        means = [monthly[m]["mean_log1p"] for m in months]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(range(len(months)), means, marker="o", markersize=3, color="tab:blue")
        for side, color in (("valid", "tab:orange"), ("test", "tab:red")):
            idx = [i for i, m in enumerate(months) if m in split.get(side, [])]
            if idx:
                ax.axvspan(min(idx) - 0.5, max(idx) + 0.5, color=color, alpha=0.15, label=side)
        step = max(1, len(months) // 12)
        ax.set_xticks(range(0, len(months), step), months[::step], rotation=45, fontsize=7)
        ax.set(ylabel="mean log1p(up_votes)", title="Drift: the monthly mean target (train | valid | test)")
        ax.legend(fontsize=8)
        path = folder / "drift.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        images.append(("Drift across the split", path))

    n = len(y)
    text = ["# Engagement regression: held-out evaluation", "",
            f"Test sample: {n:,} posts from the test months {', '.join(split.get('test', []))} (trained on "
            f"{', '.join(split.get('train', [])[:1])} .. {', '.join(split.get('train', [])[-1:])}, validated on "
            f"{', '.join(split.get('valid', []))}). Target log1p(up_votes); the split is by time.", "",
            _markdown(table), "", *[f"* {note}" for note in notes], ""]
    for title, path in images:
        text += [f"## {title}", "", f"![{title}]({path.name})", ""]
    report = folder / "report.md"
    report.write_text("\n".join(text))
    return [report, *(p for _, p in images)]

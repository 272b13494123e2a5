"""Held-out metrics, per-user performance and the report with its charts.

Identification (closed set, among the training users): ``accuracy`` (top-1), ``top3_accuracy``, ``macro_f1``
(over the users in the holdout) and ``log_loss``. Verification, the field's standard measure: for each user,
their held-out attempts' scores for themselves are *genuine* and every other held-out attempt's score for them
is an *impostor*; the equal-error rate is where the false-accept and false-reject rates meet. ``eer`` is the
mean of the per-user EERs (a threshold per user, as a deployed verifier would set), ``eer_global`` the EER of
all genuine against all impostor scores pooled (one threshold for everyone). Ranges: accuracies and F1 in
[0, 1] (higher is better), EERs in [0, 0.5] for a useful score (0.5 = chance; lower is better).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.keystrokes.features import FEATURE_NAMES

BASELINE_NAMES = ("chance", "majority")
ORACLE = "oracle"
_CPS = FEATURE_NAMES.index("chars_per_s")
_BS_RATE = FEATURE_NAMES.index("backspace_rate")
_TOTAL = FEATURE_NAMES.index("total_log_ms")


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal-error rate of accept-if-score≥threshold, interpolated where FAR and FRR cross (NaN without both).

    The ROC curve's points are the distinct scores (as ``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``, plus its (0, 0) start); FRR - FAR only falls as the threshold falls, so the
    crossing is found by bisection over the two sorted score arrays instead of building the curve: the pooled
    EER of 20,000 attempts × 3,000 users (57M impostor scores) took 4 GB that way, now one sorted copy."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    m = np.sort(np.asarray(impostor, dtype=np.float64))
    if len(g) == 0 or len(m) == 0:
        return float("nan")

    def rates(t: float) -> tuple[float, float]:  # (FAR, TAR) of accept-if-score≥t
        return (len(m) - np.searchsorted(m, t, "left")) / len(m), (len(g) - np.searchsorted(g, t, "left")) / len(g)

    def crossed(t: float) -> bool:
        far, tar = rates(t)
        return (1.0 - tar) - far <= 0

    def highest_crossed(values: np.ndarray) -> float | None:  # the largest value whose threshold has crossed
        lo, hi = 0, len(values)  # crossed(values[j]) holds for j < some k: find k
        while lo < hi:
            mid = (lo + hi) // 2
            if crossed(values[mid]):
                lo = mid + 1
            else:
                hi = mid
        return float(values[lo - 1]) if lo else None

    t = max(v for v in (highest_crossed(g), highest_crossed(m)) if v is not None)  # the lowest score crosses
    far, tar = rates(t)
    diff = (1.0 - tar) - far
    above = [a[np.searchsorted(a, t, "right")] for a in (g, m) if np.searchsorted(a, t, "right") < len(a)]
    far_prev, tar_prev = rates(min(above)) if above else (0.0, 0.0)  # the curve's previous point, or (0, 0)
    diff_prev = (1.0 - tar_prev) - far_prev
    if diff == 0:
        return float(far)
    w = diff_prev / (diff_prev - diff)
    return float(far_prev + w * (far - far_prev))


def per_user_eer(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """EER of each column user (NaN for a user without held-out attempts)."""
    out = np.full(scores.shape[1], np.nan)
    for u in np.unique(y):
        mine = y == u
        out[u] = eer(scores[mine, u], scores[~mine, u])
    return out


def topk_hits(y: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    """Whether each attempt's user is among its ``k`` most likely, ties broken by user order (what a stable
    sort gives) from the true user's rank: users scored higher, plus equal ones before it. Linear in the
    matrix, where sorting every row took seconds and an index matrix as large as it at 3,000 users."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return np.zeros(0, dtype=bool)
    own = proba[np.arange(len(y)), y][:, None]
    rank = (proba > own).sum(axis=1)
    rank += ((proba == own) & (np.arange(proba.shape[1])[None, :] < y[:, None])).sum(axis=1)
    return rank < k


def metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every held-out metric of one model (see the module docstring)."""
    from sklearn.metrics import f1_score

    y = np.asarray(y, dtype=np.int64)
    pred = np.argmax(proba, axis=1)
    users = np.unique(y)
    genuine = proba[np.arange(len(y)), y]
    impostor_mask = np.ones_like(proba, dtype=bool)
    impostor_mask[np.arange(len(y)), y] = False
    impostor_mask[:, np.setdiff1d(np.arange(proba.shape[1]), users)] = False  # users without held-out attempts
    return {
        "n": float(len(y)),
        "users": float(len(users)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "top3_accuracy": float(topk_hits(y, proba, 3).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=users, average="macro", zero_division=0)),
        "eer": float(np.nanmean(per_user_eer(y, proba))) if len(users) > 1 else float("nan"),
        "eer_global": eer(genuine, proba[impostor_mask]),
        "log_loss": float(-np.log(np.clip(genuine, 1e-12, None)).mean()) if len(y) else float("nan"),
    }


def compare(y: np.ndarray, probas: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per model (baselines and oracle included) with every metric; shares of the oracle's accuracy and
    of its gain over chance when the oracle is there."""
    table = pd.DataFrame.from_dict({name: metrics(y, p) for name, p in probas.items()}, orient="index")
    table.index.name = "model"
    if ORACLE in table.index:
        best, floor = table.loc[ORACLE, "accuracy"], table.loc["chance", "accuracy"] if "chance" in table.index else 0
        table["share_of_oracle_accuracy"] = table["accuracy"] / best if best else np.nan
        table["share_of_oracle_gain"] = (table["accuracy"] - floor) / (best - floor) if best > floor else np.nan
    return table


def user_stats(labels: np.ndarray, table: np.ndarray) -> pd.DataFrame:
    """Per user, over all their attempts: mean and spread of the typing speed, backspace rate, typing time."""
    frame = pd.DataFrame({"user": labels, "cps": table[:, _CPS], "bs": table[:, _BS_RATE],
                          "total_s": np.exp(table[:, _TOTAL]) / 1000.0})
    return frame.groupby("user").agg(mean_chars_per_s=("cps", "mean"), chars_per_s_std=("cps", "std"),
                                     backspace_rate=("bs", "mean"), mean_total_s=("total_s", "mean"))


def user_level_perf(classes: list[str], y: np.ndarray, proba: np.ndarray, train_counts: dict[str, int],
                    stats: pd.DataFrame) -> pd.DataFrame:
    """``user_level_perf.csv``: per user, held-out samples, accuracy, top-3, EER, most-confused-with user, and
    what might explain it (training samples, speed, its variance, backspace rate)."""
    pred = np.argmax(proba, axis=1)
    eers = per_user_eer(y, proba)
    top3 = topk_hits(y, proba, 3)
    rows = []
    for u in np.unique(y):
        mine = y == u
        wrong = pred[mine][pred[mine] != u]
        confused, n_conf = ("", 0)
        if len(wrong):
            values, counts = np.unique(wrong, return_counts=True)
            confused, n_conf = classes[int(values[np.argmax(counts)])], int(counts.max())
        rows.append({"user": classes[u], "samples": int(mine.sum()),
                     "train_samples": int(train_counts.get(classes[u], 0)),
                     "accuracy": float((pred[mine] == u).mean()), "top3_accuracy": float(top3[mine].mean()),
                     "eer": float(eers[u]), "most_confused_with": confused, "confused_count": n_conf})
    out = pd.DataFrame(rows).set_index("user")
    out = out.join(stats, how="left")
    return out.reset_index().sort_values(["accuracy", "samples"], ascending=[True, False]).reset_index(drop=True)


def _markdown(table: pd.DataFrame, digits: int = 4) -> str:
    columns = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    for name, *values in table.itertuples(name=None):
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in values]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines)


def _spearman(a: pd.Series, b: pd.Series) -> float:
    ok = a.notna() & b.notna()
    if ok.sum() < 3 or a[ok].nunique() < 2 or b[ok].nunique() < 2:
        return float("nan")
    return float(a[ok].rank().corr(b[ok].rank()))


def insights(perf: pd.DataFrame) -> dict:
    """Seed 000's third question, answered with data: how per-user accuracy relates to the number of samples,
    typing speed, its variance and the backspace rate (Spearman correlations), and its distribution."""
    acc = perf["accuracy"]
    drivers = {"train_samples": "training samples", "mean_chars_per_s": "typing speed (chars/s)",
               "chars_per_s_std": "speed variability (std of chars/s)", "backspace_rate": "backspace rate"}
    bins = pd.cut(perf["train_samples"], [0, 5, 10, 20, 50, np.inf], right=True,
                  labels=["1-5", "6-10", "11-20", "21-50", ">50"])
    by_bin = perf.groupby(bins, observed=True)["accuracy"].agg(["count", "mean"]).rename(
        columns={"count": "users", "mean": "mean_accuracy"})
    return {
        "users": len(perf), "median_accuracy": float(acc.median()), "mean_accuracy": float(acc.mean()),
        "share_below_50pct": float((acc < 0.5).mean()), "share_perfect": float((acc == 1.0).mean()),
        "spearman": {k: _spearman(perf[k], acc) for k in drivers if k in perf},
        "labels": drivers, "by_training_samples": by_bin,
    }


def write_report(folder: Path, table: pd.DataFrame, perfs: dict[str, pd.DataFrame], best: str,
                 context: dict) -> list[Path]:
    """``report.md``, ``metrics.csv``, ``user_level_perf.csv`` (the best model's; ``user_level_perf_<model>.csv``
    for every model) and the PNGs: the comparison, per-user accuracy histograms, the per-user insights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    table.to_csv(folder / "metrics.csv")
    written.append(folder / "metrics.csv")
    for name, perf in perfs.items():
        perf.to_csv(folder / f"user_level_perf_{name}.csv", index=False)
        written.append(folder / f"user_level_perf_{name}.csv")
    perfs[best].to_csv(folder / "user_level_perf.csv", index=False)
    written.append(folder / "user_level_perf.csv")
    images: list[tuple[str, str]] = []

    order = table.sort_values("accuracy").index.tolist()
    colours = ["#999999" if m in BASELINE_NAMES else "#d62728" if m == ORACLE else "#1f77b4" for m in order]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(order) + 2))
    axes[0].barh(order, table.loc[order, "top3_accuracy"], color=colours, alpha=0.35, label="top-3")
    axes[0].barh(order, table.loc[order, "accuracy"], color=colours, label="top-1")
    axes[0].set(xlim=(0, 1), xlabel="held-out identification accuracy", title="Accuracy (solid top-1, light top-3)")
    axes[1].barh(order, table.loc[order, "eer"], color=colours)
    axes[1].set(xlim=(0, 0.55), xlabel="mean per-user equal-error rate (lower is better)", title="Verification EER")
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "comparison.png", dpi=100)
    plt.close(fig)
    images.append(("Every model beside chance, the majority user and the oracle", "comparison.png"))

    names = list(perfs)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        ax.hist(perfs[name]["accuracy"], bins=np.linspace(0, 1, 11), color="#1f77b4" if name != ORACLE else "#d62728")
        ax.set(title=f"{name}: median {perfs[name]['accuracy'].median():.2f}", xlabel="per-user accuracy",
               ylabel="users")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(folder / "user_accuracy_hist.png", dpi=100)
    plt.close(fig)
    images.append(("Distribution of per-user accuracy, per model", "user_accuracy_hist.png"))

    found = insights(perfs[best])
    perf = perfs[best]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (column, label) in zip(axes, found["labels"].items(), strict=True):
        ax.scatter(perf[column], perf["accuracy"], s=12, alpha=0.6)
        if column == "train_samples":
            ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="per-user accuracy", ylim=(-0.05, 1.05),
               title=f"Spearman ρ = {found['spearman'].get(column, float('nan')):.2f}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"What per-user accuracy goes with ({best})")
    fig.tight_layout()
    fig.savefig(folder / "user_insights.png", dpi=100)
    plt.close(fig)
    images.append((f"Per-user accuracy against samples, speed, its variability and backspaces ({best})",
                   "user_insights.png"))

    text = [
        "# Keystroke user identification: held-out comparison", "",
        f"Data: {context.get('url', '?')} ({context.get('partition', '?')}); {context.get('users', '?')} users, "
        f"{context.get('n_train', '?')} training and {context.get('n_test', '?')} held-out attempts "
        f"(holdout share {context.get('holdout_share', '?')}, stratified by user, seed {context.get('seed', '?')}). "
        f"Feature definition {context.get('feature_version', '?')}.", "",
        "Accuracy and top-3 are closed-set identification among the training users; EER is verification "
        "(genuine vs impostor scores per user, mean over users; `eer_global`: one threshold for all). "
        + ("The oracle is the generator's own likelihood of each attempt: the ceiling." if ORACLE in table.index
           else "No oracle: the data is not generated (no planted truth)."), "",
        _markdown(table.drop(columns=[c for c in ("n", "users") if c in table.columns])), "",
        f"## Per-user performance ({best}, the most accurate model)", "",
        f"{found['users']} users: median per-user accuracy {found['median_accuracy']:.2f}, mean "
        f"{found['mean_accuracy']:.2f}; {found['share_below_50pct']:.0%} of users are identified less than half of "
        f"the time and {found['share_perfect']:.0%} always. Spearman correlation of per-user accuracy with:", "",
        *[f"* {found['labels'][k]}: {v:+.2f}" for k, v in found["spearman"].items()], "",
        "Mean per-user accuracy by number of training samples:", "",
        _markdown(found["by_training_samples"].assign(users=lambda f: f["users"].astype(int)), digits=3), "",
        "`user_level_perf.csv` lists every user (held-out samples, accuracy, top-3, EER, the user they are most "
        "often mistaken for, training samples, speed and its spread, backspace rate); "
        "`user_level_perf_<model>.csv` the same for each model.", "",
    ]
    for title, name in images:
        text += [f"## {title}", "", f"![{title}]({name})", ""]
    (folder / "report.md").write_text("\n".join(text))
    written += [folder / "report.md", *(folder / name for _, name in images)]
    return written

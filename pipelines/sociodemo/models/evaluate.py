"""Honest evaluation: metrics on held-out users, one comparison table with the oracle, and a report.

The contest's official score is ``2 × F1_weighted(age class) + Gini(sex)`` with ``Gini = 2 × ROC-AUC − 1``; its
maximum is 3. The generator's oracle (the exact posterior of its own generative model) is the ceiling: no model
can beat it beyond noise, so each model is also reported as a share of the oracle's score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score, roc_curve

from pipelines.sociodemo.models.base import N_AGE_CLASSES, Predictions

ORACLE = "oracle"
BASELINE = "topclass"


def contest_score(age_f1_weighted: float, sex_gini: float) -> float:
    """The seed contest's score: 2 × weighted F1 of age class + Gini of sex (max 3)."""
    return 2 * age_f1_weighted + sex_gini


def metrics(y_sex, y_age, pred: Predictions) -> dict:
    """Sex ROC-AUC, Gini, F1 (threshold 0.5) and log loss; age weighted F1, accuracy and log loss; contest score."""
    y_sex, y_age = np.asarray(y_sex).astype(np.int64), np.asarray(y_age).astype(np.int64)
    p_male = np.clip(pred.p_male, 1e-12, 1 - 1e-12)
    p_age = np.clip(pred.p_age, 1e-12, None)
    p_age = p_age / p_age.sum(axis=1, keepdims=True)
    auc = float(roc_auc_score(y_sex, p_male)) if len(np.unique(y_sex)) == 2 else float("nan")
    age_label = p_age.argmax(axis=1)
    out = {
        "n": len(y_sex),
        "sex_roc_auc": auc,
        "sex_gini": 2 * auc - 1,
        "sex_f1": float(f1_score(y_sex, (p_male >= 0.5).astype(np.int64), zero_division=0)),
        "sex_log_loss": float(log_loss(y_sex, p_male, labels=[0, 1])),
        "age_f1_weighted": float(f1_score(y_age, age_label, average="weighted", zero_division=0)),
        "age_accuracy": float(accuracy_score(y_age, age_label)),
        "age_log_loss": float(log_loss(y_age, p_age, labels=list(range(N_AGE_CLASSES)))),
    }
    out["contest_score"] = contest_score(out["age_f1_weighted"], out["sex_gini"])
    return out


def compare(models_preds: dict[str, Predictions], y_sex, y_age, oracle: Predictions | None = None) -> pd.DataFrame:
    """One row per model (and ``oracle``) of :func:`metrics`, with each contest score as a share of the oracle's
    and, when TopClass is there, the share of the oracle's gain over TopClass that the model achieves."""
    rows = {name: metrics(y_sex, y_age, pred) for name, pred in models_preds.items()}
    if oracle is not None:
        rows[ORACLE] = metrics(y_sex, y_age, oracle)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    if oracle is not None:
        best = table.loc[ORACLE, "contest_score"]
        table["share_of_oracle_contest_score"] = table["contest_score"] / best
        if BASELINE in table.index:
            base = table.loc[BASELINE, "contest_score"]
            table["share_of_oracle_gain_over_topclass"] = (table["contest_score"] - base) / (best - base)
    else:
        table["share_of_oracle_contest_score"] = np.nan
    return table


# --------------------------------------------------------------------------- report
def _markdown(table: pd.DataFrame) -> str:
    columns = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, row in table.iterrows():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines)


def write_report(folder: Path, table: pd.DataFrame, preds: dict[str, Predictions], y_sex, y_age,
                 importances: pd.Series | None = None) -> list[Path]:
    """``report.md`` (the table and the charts) and PNGs: sex ROC curves of every model in ``preds`` (include the
    oracle under ``"oracle"`` to draw it), an age-class confusion matrix per model, CatBoost's top-20 features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y_sex, y_age = np.asarray(y_sex).astype(np.int64), np.asarray(y_age).astype(np.int64)
    images: list[tuple[str, Path]] = []

    fig, ax = plt.subplots(figsize=(6, 6))
    for name, pred in preds.items():
        if len(np.unique(y_sex)) < 2:
            break
        fpr, tpr, _ = roc_curve(y_sex, pred.p_male)
        auc = roc_auc_score(y_sex, pred.p_male)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", linestyle="--" if name == ORACLE else "-")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Sex (male) ROC on held-out users")
    ax.legend(loc="lower right")
    path = folder / "roc_sex.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    images.append(("Sex ROC curves", path))

    for name, pred in preds.items():
        matrix = confusion_matrix(y_age, pred.p_age.argmax(axis=1), labels=list(range(N_AGE_CLASSES)))
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", color="black")
        ax.set(xticks=range(N_AGE_CLASSES), yticks=range(N_AGE_CLASSES), xlabel="predicted age class",
               ylabel="true age class", title=f"{name}: age class")
        path = folder / f"confusion_age_{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        images.append((f"Age-class confusion matrix: {name}", path))

    if importances is not None and len(importances):
        top = importances.sort_values(ascending=False).head(20)[::-1]
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.barh(top.index.astype(str), top.to_numpy())
        ax.set(xlabel="importance (% of total, mean of both targets)", title="CatBoost: top-20 features")
        path = folder / "feature_importance_catboost.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        images.append(("CatBoost feature importances", path))

    text = ["# Socio-demographic models: held-out evaluation", "",
            f"{len(y_sex)} held-out users. Contest score = 2 × F1-weighted(age class) + Gini(sex) (max 3); "
            "the oracle is the generator's exact posterior, the ceiling every model is judged against.", "",
            _markdown(table), ""]
    for title, path in images:
        text += [f"## {title}", "", f"![{title}]({path.name})", ""]
    report = folder / "report.md"
    report.write_text("\n".join(text))
    return [report, *(p for _, p in images)]

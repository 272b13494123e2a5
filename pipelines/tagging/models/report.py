"""The training report: ``report.md`` with the comparison tables, and PNG charts and CSV lists beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.tagging.models import evaluate
from pipelines.tagging.models.families import BASELINE, SEED_MODEL, parse_model_name

_COLUMNS = {"accuracy": "accuracy", "top1_accuracy": "top-1", "macro_f1": "macro F1", "micro_f1": "micro F1",
            "macro_precision": "macro P", "macro_recall": "macro R"}


def comparison_frame(result: dict) -> pd.DataFrame:
    """One row per model (and the oracle): held-out metrics, CV mean ± std, CV misclassified, fit seconds."""
    rows = []
    for name, row in result["table"].items():
        family, view = parse_model_name(name)
        rows.append({"model": name, "family": family, "view": view or "-",
                     **{k: row[k] for k in _COLUMNS},
                     "cv_accuracy": f"{row['cv_accuracy_mean']:.3f} ± {row['cv_accuracy_std']:.3f}",
                     "cv_macro_f1": f"{row['cv_macro_f1_mean']:.3f} ± {row['cv_macro_f1_std']:.3f}",
                     "cv_misclassified": row["cv_misclassified"], "fit_s": row["fit_seconds"]})
    if result.get("oracle"):
        cv = result.get("cv_oracle") or {}
        rows.append({"model": evaluate.ORACLE, "family": "oracle", "view": "-",
                     **{k: result["oracle"][k] for k in _COLUMNS},
                     "cv_accuracy": f"{cv.get('accuracy', float('nan')):.3f}", "cv_macro_f1":
                     f"{cv.get('macro_f1', float('nan')):.3f}", "cv_misclassified": None, "fit_s": None})
    return pd.DataFrame(rows).set_index("model")


def views_frame(result: dict, metric: str = "accuracy") -> pd.DataFrame:
    """Family × view of one held-out metric: the word-vs-character table."""
    cells: dict[str, dict[str, float]] = {}
    for name, row in result["table"].items():
        family, view = parse_model_name(name)
        if family != BASELINE:
            cells.setdefault(family, {})[view] = row[metric]
    order = [v for v in ("words", "chars", "both", "char1") if any(v in c for c in cells.values())]
    return pd.DataFrame(cells).T.reindex(columns=order)


_INTEGER_COLUMNS = frozenset({"cv_misclassified", "support", "predicted", "cv_folds_words_better", "n"})


def _md(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table (numbers right-aligned, ``|`` in text escaped)."""
    index = frame.index.name or ""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = ["| " + " | ".join([index, *map(str, frame.columns)]) + " |",
             "|---" + "".join("|---:" if n else "|---" for n in numeric) + "|"]
    for name, row in frame.iterrows():
        cells = []
        for column, value in zip(frame.columns, row.tolist(), strict=True):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                cells.append("")
            elif isinstance(value, float) and column in _INTEGER_COLUMNS:
                cells.append(str(int(value)))
            elif isinstance(value, float):
                cells.append(f"{value:.{digits}f}")
            else:
                cells.append(str(value).replace("|", "\\|"))
        lines.append("| " + " | ".join([str(name).replace("|", "\\|"), *cells]) + " |")
    return "\n".join(lines)


def verdict(c: dict) -> str:
    """One sentence on a words-vs-other comparison, from its held-out interval and its CV folds."""
    if c["low"] > 0:
        side = f"words better on the held-out articles (+{c['holdout_accuracy_difference']:.1%} accuracy)"
    elif c["high"] < 0:
        side = f"{c['other']} better on the held-out articles ({c['holdout_accuracy_difference']:+.1%} accuracy)"
    else:
        side = "no clear difference on the held-out articles (the 95% interval includes 0)"
    return f"{c['words']} vs {c['other']}: {side}; words better in {c['cv_folds_words_better']} CV folds."


def _bar_chart(result: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    table = result["table"]
    names = sorted(table, key=lambda n: table[n]["macro_f1"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    ys = np.arange(len(names))
    ax.barh(ys - 0.2, [table[n]["accuracy"] for n in names], height=0.4, label="accuracy (exact tag set)")
    ax.barh(ys + 0.2, [table[n]["macro_f1"] for n in names], height=0.4, label="macro F1")
    if result.get("oracle"):
        ax.axvline(result["oracle"]["accuracy"], color="black", linestyle="--", linewidth=1,
                   label=f"oracle accuracy {result['oracle']['accuracy']:.3f} (ceiling)")
    ax.set_yticks(ys, names)
    ax.set(xlim=(0, 1), xlabel="held-out score", title=f"{result['n_holdout']} held-out articles")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _views_chart(result: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    frame = views_frame(result, "accuracy")
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(frame.columns))
    for k, view in enumerate(frame.columns):
        ax.bar(np.arange(len(frame)) + k * width, frame[view].to_numpy(dtype=float), width=width, label=view)
    if result.get("oracle"):
        ax.axhline(result["oracle"]["accuracy"], color="black", linestyle="--", linewidth=1, label="oracle")
    ax.set_xticks(np.arange(len(frame)) + width * (len(frame.columns) - 1) / 2, frame.index)
    ax.set(ylim=(0, 1), ylabel="held-out accuracy", title="Words, characters or both: the same models")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _confusion_chart(matrix: np.ndarray, tags: list[str], title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(tags)), tags, rotation=45, ha="right")
    ax.set_yticks(range(len(tags)), tags)
    ax.set(xlabel="most probable tag", ylabel="primary tag (first listed)", title=title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(folder: Path, result: dict, title: str, extra_sections: list[str] | None = None) -> list[Path]:
    """Write everything into ``folder``; returns the files written (report.md first)."""
    import matplotlib

    matplotlib.use("Agg")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tags, threshold = result["tags"], result["config"]["threshold"]
    test, Y_test, proba = result["_test_frame"], result["_Y_test"], result["_holdout_proba"]
    best = result["best"]
    files: list[Path] = []

    comparison = comparison_frame(result)
    comparison.to_csv(folder / "comparison.csv")
    files += [folder / "comparison.csv", _bar_chart(result, folder / "comparison.png"),
              _views_chart(result, folder / "views.png")]
    for name in [*result["table"], *([evaluate.ORACLE] if result.get("oracle") else [])]:
        matrix = evaluate.confusion(result["_primary_test"], proba[name], len(tags))
        files.append(_confusion_chart(matrix, tags, f"{name}: held-out primary tags", folder / f"confusion_{name}.png"))
    wrong = {name: evaluate.misclassified(test, Y_test, proba[name], tags, threshold, result["_clean_test"])
             for name in result["table"]}
    for name, frame in wrong.items():
        frame.to_csv(folder / f"misclassified_{name}.csv", index=False)
        files.append(folder / f"misclassified_{name}.csv")
    if SEED_MODEL in result["_oof_proba"]:
        oof = evaluate.misclassified(result["_train_frame"], result["_Y_train"], result["_oof_proba"][SEED_MODEL],
                                     tags, threshold, result["_clean_train"])
        oof.to_csv(folder / f"misclassified_cv_{SEED_MODEL}.csv", index=False)
        files.append(folder / f"misclassified_cv_{SEED_MODEL}.csv")
    per_tag = evaluate.per_tag(Y_test, proba[best], tags, threshold)
    per_tag.to_csv(folder / f"per_tag_{best}.csv")
    files.append(folder / f"per_tag_{best}.csv")

    oracle = result.get("oracle")
    lines = [f"# {title}", "",
             f"{result['n_articles']:,} labelled articles ({result['two_tag_articles']:,} with two or more tags): "
             f"{result['n_train']:,} for training and {result['config']['cv_folds']}-fold CV, {result['n_holdout']:,} "
             f"held out (seed {result['config']['seed']}, stratified on the primary tag; "
             f"{result['grouped_articles']:,} near-duplicate articles kept in their original's split). Tags: "
             f"{', '.join(tags)}. Feature definition `{result['feature_version']}`. A tag is assigned at probability "
             f"≥ {threshold}, and the most probable tag always.", ""]
    if oracle:
        lines += [f"**Ceiling**: the generator's clean tags score {oracle['accuracy']:.3f} accuracy on the held-out "
                  f"articles ({result['noisy_holdout_labels']} of their labels are planted noise): no model can do "
                  "better except by learning the noise.", ""]
    lines += ["## Every model on the held-out articles", "",
              "Accuracy = the exact tag set; top-1 = the most probable tag is a true one; CV = mean ± spread over "
              "the folds of the training articles (for grid-searched models optimistic: the folds also chose the "
              "parameters). CV misclassified = training articles whose out-of-fold tag set was wrong (the seed "
              "reported 3).", "",
              _md(comparison.drop(columns=["family", "view"])), "", "![comparison](comparison.png)", ""]
    seed_row = result["table"].get(SEED_MODEL)
    if seed_row:
        lines += [f"The seed's model (`{SEED_MODEL}`: word counts + random forest, grid-searched) reaches "
                  f"{seed_row['cv_accuracy_mean']:.2%} CV accuracy and {seed_row['accuracy']:.2%} on the held-out "
                  f"articles, misclassifying {seed_row['cv_misclassified']} of {result['n_train']} training articles "
                  f"out of fold (listed in `misclassified_cv_{SEED_MODEL}.csv`). The best model here is `{best}` "
                  f"({result['table'][best]['accuracy']:.2%})."
                  + (f" On this data the ceiling is {oracle['accuracy']:.2%}, "
                     f"{oracle['accuracy'] - result['table'][best]['accuracy']:.1%} above the best model: the rest "
                     "is articles whose text does not reveal their tags (few topic "
                     "words, words of other sections) and planted noise." if oracle else ""), ""]
    lines += ["## Words or characters? The seed's claim, tested", "",
              "The same model families on pycantonese words, on character n-grams (1-3 characters within a clause), "
              "on both, and on single characters (`char1`, which ignore order) where trained. Held-out accuracy:",
              "", _md(views_frame(result, "accuracy")), "", "Held-out macro F1:", "",
              _md(views_frame(result, "macro_f1")), "", "![views](views.png)", ""]
    if result["comparisons"]:
        comp = pd.DataFrame(result["comparisons"]).set_index("other")
        comp.index.name = "words vs"
        lines += ["Paired comparisons on the same articles: held-out accuracy difference (words minus the other) "
                  "with a 95% bootstrap interval, and the per-fold CV macro-F1 difference:", "",
                  _md(comp[["holdout_accuracy_difference", "low", "high", "cv_macro_f1_difference_mean",
                            "cv_macro_f1_difference_std", "cv_folds_words_better"]]), ""]
        lines += [f"* {verdict(c)}" for c in result["comparisons"]] + [""]
    lines += [f"## Per-tag precision and recall: `{best}`", "", _md(per_tag), "",
              f"![confusion {best}](confusion_{best}.png)", ""]
    if SEED_MODEL in result["table"] and best != SEED_MODEL:
        lines += [f"![confusion {SEED_MODEL}](confusion_{SEED_MODEL}.png)", ""]
    shown = wrong[best].head(15)
    lines += [f"## Misclassified held-out articles: `{best}` ({len(wrong[best])} of {result['n_holdout']})", "",
              "Every model's list is in `misclassified_<model>.csv`"
              + ("; `label_is_noise` marks articles whose given label was planted noise (the model may be right)."
                 if result["_clean_test"] is not None else "."), "",
              _md(shown.set_index("id")) if len(shown) else "(none)", ""]
    if result["searches"]:
        lines += ["## Grid searches (mean CV macro F1 per cell)", ""]
        for name, search in result["searches"].items():
            cells = pd.DataFrame([{**c["params"], "mean": c["mean"], "std": c["std"]} for c in search["cells"]])
            cells.index.name = "cell"
            lines += [f"`{name}`: best {search['best']}", "", _md(cells), ""]
    lines += extra_sections or []
    report = folder / "report.md"
    report.write_text("\n".join(lines))
    return [report, *files]

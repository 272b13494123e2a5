"""CatBoost: one gradient-boosted classifier per target over the user feature table.

Sex is binary (Logloss), age class multiclass (MultiClass). String columns of the feature table (top category,
top region, ...) go in as native categorical features; numeric NaN is left to CatBoost. Each classifier stops
early on the validation users (``od_type=Iter``) and keeps its best iteration.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, Pool

from pipelines.sociodemo.models.base import (
    Dataset,
    Predictions,
    clean_probabilities,
    read_model_json,
    write_model_json,
)

DEFAULTS: dict = {"iterations": 1000, "learning_rate": 0.05, "depth": 6, "l2_leaf_reg": 3.0, "od_wait": 50,
                  "thread_count": 2, "random_seed": 42}
MISSING_CATEGORY = "__missing__"
TARGETS = ("sex", "age_class")


class CatBoostModel:
    name = "catboost"

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown CatBoost param(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        self.columns: list[str] = []
        self.cat_columns: list[str] = []
        self.models: dict[str, CatBoostClassifier] = {}

    # ------------------------------------------------------------------ data
    def _frame(self, data: Dataset) -> pd.DataFrame:
        if data.features is None:
            raise ValueError("CatBoostModel needs the feature table")
        frame = data.features.drop(columns=["viewer_uid"], errors="ignore")
        if self.columns:
            frame = frame.reindex(columns=self.columns)  # a column missing at scoring time is all-missing
        frame = frame.copy()
        # Categorical: the columns recorded at fit time; while fitting (none recorded yet), the non-numeric ones.
        categorical = set(self.cat_columns) if self.columns else {
            c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}
        for column in frame.columns:
            if column in categorical:
                frame[column] = frame[column].astype(object).where(frame[column].notna(), MISSING_CATEGORY)
                frame[column] = frame[column].astype(str)
            elif not pd.api.types.is_float_dtype(frame[column]):
                frame[column] = frame[column].astype(np.float64)
        return frame

    def _pool(self, data: Dataset, label: np.ndarray | None = None) -> Pool:
        return Pool(self._frame(data), label=label, cat_features=self.cat_columns)

    # ------------------------------------------------------------------ API
    def fit(self, train: Dataset, valid: Dataset) -> dict:
        started = time.perf_counter()
        if train.sex is None or train.age_class is None or valid.sex is None or valid.age_class is None:
            raise ValueError("CatBoostModel.fit needs targets on train and valid")
        self.columns, self.cat_columns = [], []
        frame = self._frame(train)
        self.columns = list(frame.columns)
        self.cat_columns = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(
            frame[c])]
        p = self.params
        info: dict = {"features": len(self.columns), "categorical": self.cat_columns}
        for target, loss in (("sex", "Logloss"), ("age_class", "MultiClass")):
            model = CatBoostClassifier(
                loss_function=loss, iterations=p["iterations"], learning_rate=p["learning_rate"], depth=p["depth"],
                l2_leaf_reg=p["l2_leaf_reg"], od_type="Iter", od_wait=p["od_wait"], use_best_model=True,
                thread_count=p["thread_count"], random_seed=p["random_seed"], verbose=False,
                allow_writing_files=False, class_names=[0, 1] if target == "sex" else [0, 1, 2, 3])
            model.fit(self._pool(train, getattr(train, target)), eval_set=self._pool(valid, getattr(valid, target)))
            self.models[target] = model
            info[f"{target}_best_iteration"] = int(model.get_best_iteration())
            info[f"{target}_best_valid_loss"] = float(model.get_best_score()["validation"][loss])
        info["iterations"] = info["sex_best_iteration"] + info["age_class_best_iteration"] + 2
        info["seconds"] = round(time.perf_counter() - started, 3)
        return info

    def predict(self, data: Dataset) -> Predictions:
        if not self.models:
            raise RuntimeError("CatBoostModel is not fitted")
        pool = self._pool(data)
        p_male = self.models["sex"].predict_proba(pool)[:, 1]
        p_age = self.models["age_class"].predict_proba(pool)
        p_male, p_age = clean_probabilities(p_male, p_age)
        return Predictions(uids=data.uids, p_male=p_male, p_age=p_age)

    def feature_importances(self) -> pd.Series:
        """Mean over both targets of each feature's importance (PredictionValuesChange, in % of the total)."""
        parts = []
        for model in self.models.values():
            values = pd.Series(model.get_feature_importance(), index=self.columns, dtype=np.float64)
            parts.append(values / max(values.sum(), 1e-12) * 100)
        return pd.concat(parts, axis=1).mean(axis=1).sort_values(ascending=False).rename("importance")

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for target, model in self.models.items():
            model.save_model(str(folder / f"{target}.cbm"))
        write_model_json(folder, self.name, params=self.params, columns=self.columns, cat_columns=self.cat_columns,
                         targets=list(self.models))

    @classmethod
    def load(cls, folder: Path) -> CatBoostModel:
        folder = Path(folder)
        meta = read_model_json(folder)
        model = cls(**meta["params"])
        model.columns, model.cat_columns = meta["columns"], meta["cat_columns"]
        for target in meta["targets"]:
            clf = CatBoostClassifier()
            clf.load_model(str(folder / f"{target}.cbm"))
            model.models[target] = clf
        return model

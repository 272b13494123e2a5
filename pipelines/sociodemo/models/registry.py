"""The model classes by name (what ``model.json`` records and ``train_and_evaluate(models=...)`` accepts)."""

from __future__ import annotations

from pipelines.sociodemo.models.catboost_model import CatBoostModel
from pipelines.sociodemo.models.deepsets import DeepSetsModel
from pipelines.sociodemo.models.topclass import TopClass

MODELS: dict[str, type] = {"topclass": TopClass, "catboost": CatBoostModel, "deepsets": DeepSetsModel}

"""The model types by name: what ``model.json`` records, the DAG's ``models`` Param and the CLI accept."""

from __future__ import annotations

from pipelines.keystrokes.models.base import KeystrokeModel
from pipelines.keystrokes.models.baselines import ChanceModel, MajorityModel
from pipelines.keystrokes.models.classic import (
    AdaBoostModel,
    CatBoostModel,
    LinearSVMModel,
    LogisticRegressionModel,
    RandomForestModel,
)
from pipelines.keystrokes.models.embedding import EmbeddingModel
from pipelines.keystrokes.models.gru import GRUModel

#: Trainable model types, in the order reports list them.
MODEL_TYPES: dict[str, type[KeystrokeModel]] = {
    m.name: m for m in (LogisticRegressionModel, LinearSVMModel, AdaBoostModel, RandomForestModel, CatBoostModel,
                        GRUModel, EmbeddingModel)}
#: Baselines evaluated beside every training (never promoted).
BASELINES: dict[str, type[KeystrokeModel]] = {m.name: m for m in (ChanceModel, MajorityModel)}

"""The model classes by name (what ``model.json`` records and training's ``models`` accept), imported lazily so
that naming a model does not import torch or CatBoost."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

_CLASSES = {
    "mean": ("pipelines.engagement.models.baselines", "GlobalMean"),
    "author_mean": ("pipelines.engagement.models.baselines", "AuthorMean"),
    "linear": ("pipelines.engagement.models.linear", "StreamingLinear"),
    "catboost": ("pipelines.engagement.models.catboost_model", "CatBoostEngagement"),
    "minilm": ("pipelines.engagement.models.minilm", "MiniLMEngagement"),
    "neural": ("pipelines.engagement.models.neural", "NeuralEngagement"),
}
BASELINES = ("mean", "author_mean")
LEARNED = ("linear", "catboost", "minilm", "neural")


class _Models(Mapping):
    def __getitem__(self, name: str) -> type:
        module, cls = _CLASSES[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_CLASSES)

    def __len__(self) -> int:
        return len(_CLASSES)


MODELS: Mapping[str, type] = _Models()

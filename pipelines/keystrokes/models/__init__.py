"""Keystroke models: linear baselines, trees, CatBoost, a GRU and a metric-learning embedding, one interface.

Every model maps :class:`~pipelines.keystrokes.features.Samples` to probabilities over the users it knows
(``classes_``); :func:`~pipelines.keystrokes.models.train.train_and_evaluate` fits them on the same split and
compares them on the same held-out attempts beside chance, the majority user and the generator's oracle.
"""

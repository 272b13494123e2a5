"""Socio-demographic models (issue 4): TopClass baseline, CatBoost, DeepSets + Time2Vec, and their evaluation.

Every model takes a :class:`~pipelines.sociodemo.models.base.Dataset` and returns
:class:`~pipelines.sociodemo.models.base.Predictions`; :func:`~pipelines.sociodemo.models.train.train_and_evaluate`
fits them on one split of users and compares them on held-out users against the generator's oracle.
"""

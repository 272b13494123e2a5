"""Engagement models: baselines, the streamed linear model, CatBoost, the sentence-embedding model, the torch
model over an iterable Parquet dataset; their evaluation and report (``evaluate``) and one training run that
compares them all on the same held-out months (``train``)."""

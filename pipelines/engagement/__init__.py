"""Engagement regression: a post's up-votes from its title and metadata, on CSVs far larger than memory.

Modules: ``schema`` (the CSV format, staged format, reasons, paths), ``generate`` (Eluvio-format data at any
size with its planted truth), ``records`` (a streaming CSV record splitter that survives broken quoting),
``convert`` (the streaming validator: CSV → month-partitioned Parquet + quarantine, on the ingest contract),
``dataset`` (accepted month files, the time split, streamed batches, bounded samples), ``features`` (hashed
title n-grams, author target encoding, time features), ``models/`` (baselines, the streamed linear model,
CatBoost, the sentence-embedding model, the torch model over an iterable dataset, evaluation and report),
``jobs`` (what the DAGs and the CLI call), ``cli`` and ``demo``.
"""

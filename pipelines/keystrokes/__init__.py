"""Keystroke user identification (issue 10): paged JSON ingestion, typing models, per-user performance."""

"""Socio-demographic prediction (Rutube Junior ML contest): sex and age class from a user's viewing history.

Modules: ``schema`` (formats, paths, reasons), ``generate`` (synthetic data with an exact Bayes oracle),
``validate`` (quarantine and staging of events and targets), ``features`` (the declarative feature config),
``feature_sql`` (SQL emitted from it), ``history`` (the incremental per-user feature builder) and
``user_sets`` (per-user item sets for set models).
"""

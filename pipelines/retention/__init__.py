"""Retention analytics: tracker events → Postgres, install cohorts and their retention, daily analytics."""

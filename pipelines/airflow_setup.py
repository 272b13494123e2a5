"""What an Airflow deployment of the platform needs besides the DAG files: the pools the DAGs run their heavy
tasks in (:data:`pipelines.dagkit.POOLS`), and, for local development, a metadata database in the embedded
PostgreSQL instead of SQLite (which answered HTTP 500s under a 10-run backfill).

``python -m pipelines airflow-setup`` runs after ``airflow db migrate`` (``make airflow``, the compose file's
``airflow-init``, the real-scheduler tests). Pool sizes can be raised per deployment with
``PIPELINES_POOL_<NAME>`` (e.g. ``PIPELINES_POOL_DUCKDB=8`` on bigger workers).
"""

from __future__ import annotations

import logging
import os

from pipelines.dagkit import POOLS

log = logging.getLogger(__name__)


def pool_sizes() -> dict[str, int]:
    """Each pool's slots: the default, or ``PIPELINES_POOL_<NAME>``."""
    return {name: int(os.environ.get(f"PIPELINES_POOL_{name.upper()}") or slots) for name, (slots, _) in POOLS.items()}


def create_pools() -> dict[str, int]:
    """Create or resize every pool in Airflow's metadata DB (idempotent)."""
    from airflow.models.pool import Pool

    sizes = pool_sizes()
    for name, slots in sizes.items():
        Pool.create_or_update_pool(name, slots, POOLS[name][1], include_deferred=False)
    log.info("Airflow pools: %s", sizes)
    return sizes


def embedded_metadata_url(pg_uri: str, database: str = "airflow") -> str:
    """A SQLAlchemy URL for Airflow's metadata in its own database on the embedded PostgreSQL (created here)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    conn = psycopg2.connect(pg_uri)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{database}"')
    conn.close()
    parts = urlsplit(pg_uri)
    return urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{database}", parts.query, ""))

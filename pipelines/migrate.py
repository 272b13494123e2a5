"""Versioned schema migrations (Alembic, plain SQL revisions under ``pipelines/migrations/versions``).

The version table is ``pipelines_schema_version`` so the schema can share a database with Airflow's own
metadata (which keeps ``alembic_version``). Concurrent callers are serialised by an advisory lock.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

VERSION_TABLE = "pipelines_schema_version"
_SCRIPTS = Path(__file__).parent / "migrations"


def _sqlalchemy_url(dsn: str) -> str:
    _, _, rest = dsn.partition("://")
    if not rest:  # libpq keyword form "host=... dbname=..."
        raise ValueError("PIPELINES_PG_DSN must be a postgresql:// URI for migrations")
    return f"postgresql+psycopg2://{rest}"


def _config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def upgrade(dsn: str | None = None, revision: str = "head") -> str:
    """Bring the schema to ``revision``; returns the revision now applied."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    from pipelines.settings import pg_dsn

    engine = sa.create_engine(_sqlalchemy_url(dsn or pg_dsn()), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended('pipelines.migrate', 0))"))
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return current.get_current_revision() or "base"
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision the code ships (what :func:`upgrade` brings a database to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


@cache
def ensure_schema(dsn: str) -> str:
    """:func:`upgrade` once per process and DSN (every job calls this before touching tables)."""
    return upgrade(dsn)

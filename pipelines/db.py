"""PostgreSQL access: connections, transactions and bulk COPY, all through psycopg2.

Every write in the platform goes through :func:`transaction`, so a failed task leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import IO, Any

import psycopg2
import psycopg2.extras

from pipelines.settings import pg_dsn

log = logging.getLogger(__name__)


def connect(dsn: str | None = None) -> psycopg2.extensions.connection:
    """A new connection to the pipelines database (UTC session time zone)."""
    conn = psycopg2.connect(dsn or pg_dsn(), application_name="ubm-pipelines")
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


@contextlib.contextmanager
def transaction(dsn: str | None = None) -> Iterator[psycopg2.extensions.cursor]:
    """One transaction: commit when the block succeeds, roll back (and close) otherwise."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:  # psycopg2: `with conn` commits or rolls back
            yield cur
    finally:
        conn.close()


def advisory_xact_lock(cur: psycopg2.extensions.cursor, name: str) -> None:
    """Serialise writers of one logical resource until the transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))


def copy_csv(cur: psycopg2.extensions.cursor, table: str, columns: list[str], stream: IO[Any]) -> int:
    """Bulk-load a CSV stream (with header) into ``table``; returns rows loaded.

    Table and column names come from code, never from input, and are quoted as identifiers.
    """
    from psycopg2 import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    cur.copy_expert(statement.as_string(cur), stream)
    return cur.rowcount


def fetch_dicts(cur: psycopg2.extensions.cursor, query: str, params: Any = None) -> list[dict]:
    """Run a parameterised query and return rows as dicts."""
    cur.execute(query, params)
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def query(query_text: str, params: Any = None, dsn: str | None = None) -> list[dict]:
    """Read-only convenience: one query in its own transaction."""
    with transaction(dsn) as cur:
        return fetch_dicts(cur, query_text, params)

"""The shared ingest contract: one status row per input partition, quarantine rows tied to their run.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("""
    -- What readers may use: a partition's accepted run and where its staged files are. Written last by an
    -- ingest, in the same transaction as the partition's quarantine rows. A rejected attempt of an accepted
    -- partition leaves the accepted run in place and is recorded in the last_* columns.
    CREATE TABLE ingest_partitions (
        pipeline         text NOT NULL,
        partition_key    text NOT NULL,
        status           text NOT NULL CHECK (status IN ('accepted', 'rejected')),
        run_id           uuid,
        staged_uri       text,
        files            integer NOT NULL DEFAULT 0,
        rows_read        bigint NOT NULL DEFAULT 0,
        rows_valid       bigint NOT NULL DEFAULT 0,
        rows_quarantined bigint NOT NULL DEFAULT 0,
        bad_share        double precision NOT NULL DEFAULT 0,
        reasons          jsonb NOT NULL DEFAULT '{}'::jsonb,
        extra            jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the pipeline's own figures (users, hashes)
        error            text,
        last_status      text,
        last_run_id      uuid,
        last_error       text,
        last_reasons     jsonb,
        last_attempt_at  timestamptz,
        updated_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pipeline, partition_key)
    );
    ALTER TABLE quarantine ADD COLUMN run_id uuid;
    CREATE INDEX quarantine_reason ON quarantine (pipeline, reason);
    """)

"""Run registry, model promotions and the shared quarantine.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE runs (
        run_id              uuid PRIMARY KEY,
        pipeline            text NOT NULL,
        kind                text NOT NULL CHECK (kind IN ('ingest', 'transform', 'train', 'evaluate', 'score',
                                                          'publish', 'benchmark')),
        model_name          text,
        model_version       text,
        status              text NOT NULL CHECK (status IN ('running', 'success', 'failed', 'rejected')),
        params              jsonb NOT NULL DEFAULT '{}'::jsonb,
        summary             jsonb NOT NULL DEFAULT '{}'::jsonb,
        data_interval_start timestamptz,
        data_interval_end   timestamptz,
        artifact_uri        text,
        airflow_dag_id      text,
        airflow_run_id      text,
        code_version        text,
        error               text,
        started_at          timestamptz NOT NULL DEFAULT now(),
        finished_at         timestamptz
    );
    CREATE INDEX runs_pipeline_started ON runs (pipeline, started_at DESC);
    CREATE INDEX runs_model ON runs (pipeline, model_name, model_version);

    -- Long format so any metric of any model version can be compared with one query.
    CREATE TABLE run_metrics (
        run_id  uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        name    text NOT NULL,
        segment text NOT NULL DEFAULT '',   -- '' = overall; else e.g. 'split=holdout', 'user=u17', 'class=2'
        value   double precision,
        PRIMARY KEY (run_id, name, segment)
    );

    -- Which model version serves; changed only by an explicit promotion.
    CREATE TABLE model_promotions (
        pipeline    text NOT NULL,
        model_name  text NOT NULL,
        alias       text NOT NULL DEFAULT 'production',
        run_id      uuid NOT NULL REFERENCES runs (run_id),
        promoted_at timestamptz NOT NULL DEFAULT now(),
        promoted_by text,
        PRIMARY KEY (pipeline, model_name, alias)
    );

    -- Every rejected input record of every pipeline, with its reason; replaced per (pipeline, partition).
    CREATE TABLE quarantine (
        id             bigserial PRIMARY KEY,
        pipeline       text NOT NULL,
        partition_key  text NOT NULL,
        source         text,
        reason         text NOT NULL,
        detail         text,
        record         jsonb,
        quarantined_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX quarantine_partition ON quarantine (pipeline, partition_key);
    """)

"""Operations: the alerts every pipeline raises, and the indexes the operations page reads by.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.execute("""
    -- One row per alert: a task that failed for good, a day whose quarantined share passed its warning level,
    -- a model whose metric fell past the tolerance against the promoted version, a DAG run past its expected
    -- time. dedup_key makes raising idempotent (a callback run twice records and sends once). notified_ok is
    -- NULL when no target is configured (recorded only), true when every target took it, false otherwise.
    CREATE TABLE alerts (
        id              bigserial PRIMARY KEY,
        kind            text NOT NULL CHECK (kind IN ('task_failed', 'retries_exhausted', 'quarantine_share',
                                                      'metric_drop', 'dag_overrun', 'test')),
        severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
        pipeline        text,
        dag_id          text,
        task_id         text,
        map_index       integer,
        try_number      integer,
        run_id          text,                      -- the Airflow DAG run
        logical_date    timestamptz,
        registry_run_id uuid,                      -- the registry run it is about (ingest, train, evaluate)
        message         text NOT NULL,
        details         jsonb NOT NULL DEFAULT '{}'::jsonb,
        dedup_key       text NOT NULL UNIQUE,
        created_at      timestamptz NOT NULL DEFAULT now(),
        notified_ok     boolean,
        notified_at     timestamptz,
        notify_targets  text[],
        notify_error    text
    );
    CREATE INDEX alerts_created ON alerts (created_at DESC, id DESC);
    CREATE INDEX alerts_pipeline_created ON alerts (pipeline, created_at DESC, id DESC);

    -- The quarantine browser pages by id within a pipeline (and a reason).
    CREATE INDEX quarantine_pipeline_id ON quarantine (pipeline, id);
    CREATE INDEX quarantine_pipeline_reason_id ON quarantine (pipeline, reason, id);
    -- Versions and data quality per DAG run: runs by kind, and by the Airflow run that made them.
    CREATE INDEX runs_pipeline_kind_started ON runs (pipeline, kind, started_at DESC);
    CREATE INDEX runs_airflow_run ON runs (airflow_dag_id, airflow_run_id);
    """)

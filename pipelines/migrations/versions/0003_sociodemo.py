"""Socio-demographic predictions: the latest scores per user, and one bookkeeping row per scored day.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("""
    -- The serving table: one row per user, the scores of the most recent scoring run that saw them. A run
    -- upserts all its users in one transaction; scored_at is the end of the run's data interval, not now(),
    -- so rerunning a day writes identical rows.
    CREATE TABLE sociodemo_predictions (
        user_id         text PRIMARY KEY,
        sex_proba       double precision NOT NULL CHECK (sex_proba BETWEEN 0 AND 1),  -- P(male)
        age_class       smallint NOT NULL CHECK (age_class BETWEEN 0 AND 3),         -- argmax of the classes
        age_class_proba double precision[] NOT NULL CHECK (cardinality(age_class_proba) = 4),
        model_name      text,
        model_version   text NOT NULL,
        as_of           date NOT NULL,
        scored_at       timestamptz NOT NULL
    );
    CREATE INDEX sociodemo_predictions_as_of ON sociodemo_predictions (as_of);

    -- Which day was scored with which model, by which registry run.
    CREATE TABLE sociodemo_scoring_runs (
        as_of         date PRIMARY KEY,
        model_name    text,
        model_version text NOT NULL,
        users         integer NOT NULL,
        run_id        uuid,
        status        text NOT NULL,
        scored_at     timestamptz NOT NULL
    );
    """)

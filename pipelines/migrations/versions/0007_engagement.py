"""Engagement regression: the latest predicted up-votes per post, and one bookkeeping row per scored day.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute("""
    -- The serving table: one row per post, the score of the most recent day that scored it. A day's scores are
    -- upserted in one transaction; scored_at is the end of the scored day's interval, not now(), so rerunning a
    -- day writes identical rows, and a row is only replaced by a score of the same or a later day.
    CREATE TABLE engagement_predictions (
        post_id            bigint PRIMARY KEY,       -- pipelines.engagement.schema.post_id (the export has none)
        predicted_up_votes double precision NOT NULL CHECK (predicted_up_votes >= 0),
        predicted_log1p    double precision NOT NULL,   -- what the model predicts: log1p(up_votes)
        model_name         text NOT NULL,
        model_version      text NOT NULL,
        as_of              date NOT NULL,               -- the day whose drop held the post
        scored_at          timestamptz NOT NULL,
        run_id             uuid
    );
    CREATE INDEX engagement_predictions_as_of ON engagement_predictions (as_of);

    -- Which day was scored with which model, by which registry run, and how many rows it wrote.
    CREATE TABLE engagement_scoring_runs (
        as_of         date PRIMARY KEY,
        model_name    text NOT NULL,
        model_version text NOT NULL,
        posts         integer NOT NULL,
        upserted      integer NOT NULL,
        run_id        uuid,
        scored_at     timestamptz NOT NULL
    );
    """)

"""Keystroke user identification: predictions per test dataset and model version, and embedding enrolments.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute("""
    -- One row per attempt of a test dataset (its ingest partition, test-<hash of the URL>) and model version,
    -- in the test document's order. A prediction run replaces its (dataset, model, version) rows in one
    -- transaction, so a rerun writes the same rows (as_of is the run's day, not the wall clock; the run that
    -- wrote them is in keystrokes_prediction_runs).
    CREATE TABLE keystrokes_predictions (
        test_partition    text NOT NULL,
        model_name        text NOT NULL,
        model_version     text NOT NULL,
        position          integer NOT NULL CHECK (position >= 0),
        status            text NOT NULL CHECK (status IN ('predicted', 'invalid')),
        reason            text,                      -- why an invalid attempt is invalid (quarantine reason)
        user_label        text,                      -- the top-1 user; NULL when invalid ("Invalid Input")
        probability       double precision CHECK (probability BETWEEN 0 AND 1),
        top_users         text[],                    -- the top-3 users, best first
        top_probabilities double precision[],
        sample_id         text,
        as_of             date NOT NULL,
        PRIMARY KEY (test_partition, model_name, model_version, position),
        CHECK ((status = 'predicted') = (user_label IS NOT NULL))
    );
    CREATE INDEX keystrokes_predictions_user ON keystrokes_predictions (user_label);

    -- Which test dataset was predicted with which model version, where the files are, by which registry run.
    CREATE TABLE keystrokes_prediction_runs (
        test_partition text NOT NULL,
        model_name     text NOT NULL,
        model_version  text NOT NULL,
        model_type     text NOT NULL,
        url            text NOT NULL,
        attempts       integer NOT NULL,
        predicted      integer NOT NULL,
        invalid        integer NOT NULL,
        final_pred_uri text NOT NULL,
        csv_uri        text NOT NULL,
        as_of          date NOT NULL,
        run_id         uuid,
        PRIMARY KEY (test_partition, model_name, model_version)
    );

    -- Users enrolled into an embedding model's gallery after training (no retraining): the mean embedding of
    -- their attempts. Prediction adds them to the gallery saved with the model (and replaces a user found in
    -- both). Replaced per (model version, user) in one transaction.
    CREATE TABLE keystrokes_enrolments (
        model_name    text NOT NULL,
        model_version text NOT NULL,
        user_label    text NOT NULL,
        samples       integer NOT NULL CHECK (samples > 0),
        embedding     real[] NOT NULL,
        source_url    text,
        run_id        uuid,
        enrolled_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (model_name, model_version, user_label)
    );
    """)

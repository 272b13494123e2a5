"""Cantonese article tagging: the tags of every article, and one bookkeeping row per tagged day.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute("""
    -- The serving table: an article's current tags, one row per (article, tag), written by the daily tagging
    -- run that saw the article last. A run replaces an article's whole tag set in one transaction; a run of an
    -- older day never replaces tags written from a newer day (as_of), so backfills cannot roll tags back.
    -- tagged_at is the end of the day's interval, not now(): rerunning a day writes identical rows (which run
    -- wrote a day is in tagging_days).
    CREATE TABLE tagging_article_tags (
        article_id    text NOT NULL,
        tag           text NOT NULL,
        probability   double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
        rank          smallint NOT NULL CHECK (rank >= 1),          -- 1 = the most probable assigned tag
        model_name    text NOT NULL,
        model_version text NOT NULL,
        content_hash  text NOT NULL,                                 -- the article text that was tagged
        as_of         date NOT NULL,                                 -- the day whose drop carried the article
        tagged_at     timestamptz NOT NULL,
        PRIMARY KEY (article_id, tag)
    );
    CREATE INDEX tagging_article_tags_tag ON tagging_article_tags (tag, probability DESC);
    CREATE INDEX tagging_article_tags_as_of ON tagging_article_tags (as_of);

    -- Which day was tagged with which model, by which registry run, and how much of it was written.
    CREATE TABLE tagging_days (
        day             date PRIMARY KEY,
        model_name      text NOT NULL,
        model_version   text NOT NULL,
        articles        integer NOT NULL,
        articles_written integer NOT NULL,   -- the rest were tagged from a newer day already
        tags_written    integer NOT NULL,
        ingest_run_id   uuid,
        run_id          uuid,
        tagged_at       timestamptz NOT NULL
    );
    """)

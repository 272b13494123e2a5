"""Engagement regression: the pipeline's own tables (this revision is reserved for it; it adds them).

Revision ID: 0007
Revises: 0006
"""

from alembic import op  # noqa: F401

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    pass

"""Cantonese article tagging: the pipeline's own tables (this revision is reserved for it; it adds them).

Revision ID: 0006
Revises: 0005
"""

from alembic import op  # noqa: F401

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    pass

"""Keystroke user identification: the pipeline's own tables (this revision is reserved for it; it adds them).

Revision ID: 0005
Revises: 0004
"""

from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    pass

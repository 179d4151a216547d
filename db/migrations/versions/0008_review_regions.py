"""Defect boxes: a review may carry the box its reviewer drew around the defect.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-16

Written by hand to match ``db.models.reviews``:

* ``reviews.region`` (nullable JSON): ``{"x", "y", "w", "h"}``, fractions of the image's width
  and height; NULL when no box was drawn (every existing review).

A nullable column added in place (SQLite's ALTER TABLE ADD COLUMN, so the append-only
triggers on ``reviews`` stay as they are).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``reviews.region``."""
    op.add_column("reviews", sa.Column("region", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop ``reviews.region`` (the boxes are lost).

    In place on every backend: SQLite (3.35 or newer) drops a column with ALTER TABLE, which
    keeps the append-only triggers; a batch rebuild of ``reviews`` would lose them.
    """
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE reviews DROP COLUMN region")
    else:
        op.drop_column("reviews", "region")

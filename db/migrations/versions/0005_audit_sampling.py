"""Audit sampling: ``predictions.audit`` marks passed parts drawn for review at random.

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10

Written by hand to match ``db.models.images``:

* ``predictions.audit`` (boolean, ``false`` by default): the part passed when it was first
  inspected and was drawn at random for review (see :mod:`adcore.audit`); later predictions of
  a drawn part carry the flag, so it stays in the review queue until it is labelled.

A plain ``ADD COLUMN`` (no table rebuild on SQLite); existing predictions get ``false``: parts
inspected before this revision were never drawn.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``predictions.audit`` (NOT NULL, false for the existing rows)."""
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(
            sa.Column("audit", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Drop ``predictions.audit`` (the audit draws are forgotten; predictions stay)."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("audit")

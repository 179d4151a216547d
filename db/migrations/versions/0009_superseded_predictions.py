"""Superseded predictions: a flag on each prediction a later one of the same pair replaced.

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-30

Written by hand to match ``db.models.images``:

* ``predictions.superseded`` (boolean, NOT NULL, default false): true when the same model
  version has scored the same image again later (a later ``created_at``, or the same one and a
  higher id). "The latest prediction per image and version", which every dashboard query
  needs, becomes a plain filter instead of a grouped pass over all predictions.

The upgrade adds the column (a batch rebuild on SQLite, as in 0005) and computes it for the
existing rows in one portable UPDATE (a correlated "newest of the pair" lookup through the
``(image_id, model_version_id, created_at)`` index).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``predictions.superseded`` and set it on the existing rows."""
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(
            sa.Column("superseded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    predictions = sa.table(
        "predictions",
        sa.column("id", sa.Integer),
        sa.column("image_id", sa.Integer),
        sa.column("model_version_id", sa.Integer),
        sa.column("created_at", sa.DateTime),
        sa.column("superseded", sa.Boolean),
    )
    candidate = predictions.alias("newest_prediction")
    newest = (
        sa.select(candidate.c.id)
        .where(
            candidate.c.image_id == predictions.c.image_id,
            candidate.c.model_version_id == predictions.c.model_version_id,
        )
        .order_by(candidate.c.created_at.desc(), candidate.c.id.desc())
        .limit(sa.literal_column("1"))
        .scalar_subquery()
    )
    op.execute(sa.update(predictions).values(superseded=predictions.c.id != newest))


def downgrade() -> None:
    """Drop ``predictions.superseded``."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("superseded")

"""Scorer decisions: a prediction records the feedback scorer that decided its verdict.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-12

Written by hand to match ``db.models.images``:

* ``predictions.scorer_version_id`` (nullable foreign key to ``model_versions``): the active
  feedback scorer that decided the verdict; NULL when the detector alone decided.
* ``predictions.defect_probability`` (nullable float): that scorer's p(defect) for the part.

Both are NULL for existing rows: their verdicts were the detector's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``predictions.scorer_version_id`` and ``predictions.defect_probability``."""
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("scorer_version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("defect_probability", sa.Double(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_predictions_scorer_version_id_model_versions"),
            "model_versions",
            ["scorer_version_id"],
            ["id"],
        )
        batch.create_check_constraint(
            op.f("ck_predictions_defect_probability_range"),
            "defect_probability IS NULL OR (defect_probability >= 0 AND defect_probability <= 1)",
        )


def downgrade() -> None:
    """Drop the scorer columns (verdicts stay as they were decided)."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_defect_probability_range"), type_="check")
        batch.drop_constraint(
            op.f("fk_predictions_scorer_version_id_model_versions"), type_="foreignkey"
        )
        batch.drop_column("defect_probability")
        batch.drop_column("scorer_version_id")

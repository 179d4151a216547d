"""Decision regions: a prediction records where the cascade put its part, and the known odds.

Revision ID: 0015
Revises: 0014
Create Date: 2027-02-20

Written by hand to match ``db.models.images``:

* ``predictions.decision_region`` (nullable string, ``db.base.DecisionRegion``): where the
  line's decision put the part at its first inspection (sent to a human, auto-accepted, near
  pass, deep pass).
* ``predictions.audit_probability`` (nullable float in (0, 1]): the known probability that a
  part of that region is looked at by a human (the audit odds in force when it was drawn).

Both are NULL for existing rows: their parts were decided before regions existed, and the
estimate of the line's rates (``services.loop_rates``) counts them as a stratum of their own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REGIONS = ("sent_to_human", "auto_accepted", "near_pass", "deep_pass")


def upgrade() -> None:
    """Add ``predictions.decision_region`` and ``predictions.audit_probability``."""
    allowed = ", ".join(f"'{region}'" for region in REGIONS)
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("decision_region", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("audit_probability", sa.Double(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_predictions_decision_region"),
            f"decision_region IS NULL OR decision_region IN ({allowed})",
        )
        batch.create_check_constraint(
            op.f("ck_predictions_audit_probability_range"),
            "audit_probability IS NULL OR (audit_probability > 0 AND audit_probability <= 1)",
        )


def downgrade() -> None:
    """Drop the region columns (verdicts and audit flags stay as they were decided)."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_audit_probability_range"), type_="check")
        batch.drop_constraint(op.f("ck_predictions_decision_region"), type_="check")
        batch.drop_column("audit_probability")
        batch.drop_column("decision_region")

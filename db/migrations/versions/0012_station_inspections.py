"""Station inspections: parts posted through the inspection API (idempotency, read-back).

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-30

Written by hand to match ``db.models.station_inspections``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "station_inspections"


def upgrade() -> None:
    """Create ``station_inspections`` with its unique part ids and lookup indexes."""
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("part_id", sa.String(length=128), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *(
            sa.ForeignKeyConstraint(
                [column], [f"{target}.id"], name=op.f(f"fk_{TABLE}_{column}_{target}")
            )
            for column, target in (
                ("project_id", "projects"),
                ("api_key_id", "api_keys"),
                ("image_id", "images"),
                ("prediction_id", "predictions"),
            )
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
        sa.UniqueConstraint(
            "project_id", "station", "part_id", name=op.f(f"uq_{TABLE}_project_id_station_part_id")
        ),
    )
    op.create_index(
        f"ix_{TABLE}_project_id_station_sha256_created_at",
        TABLE,
        ["project_id", "station", "sha256", "created_at"],
    )
    op.create_index(f"ix_{TABLE}_project_id_created_at", TABLE, ["project_id", "created_at"])


def downgrade() -> None:
    """Drop ``station_inspections`` (the images and predictions stay)."""
    op.drop_index(f"ix_{TABLE}_project_id_created_at", table_name=TABLE)
    op.drop_index(f"ix_{TABLE}_project_id_station_sha256_created_at", table_name=TABLE)
    op.drop_table(TABLE)

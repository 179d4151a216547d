"""Hot-folder files: what a folder watcher took in, for restarts without double scoring.

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-30

Written by hand to match ``db.models.hot_folder_files``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "hot_folder_files"


def upgrade() -> None:
    """Create ``hot_folder_files``."""
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("folder", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("prediction_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('scoring', 'processed', 'refused')", name=op.f(f"ck_{TABLE}_status")
        ),
        *(
            sa.ForeignKeyConstraint(
                [column], [f"{target}.id"], name=op.f(f"fk_{TABLE}_{column}_{target}")
            )
            for column, target in (
                ("project_id", "projects"),
                ("image_id", "images"),
                ("prediction_id", "predictions"),
            )
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
        sa.UniqueConstraint(
            "project_id",
            "folder",
            "name",
            "sha256",
            name=op.f(f"uq_{TABLE}_project_id_folder_name_sha256"),
        ),
    )


def downgrade() -> None:
    """Drop ``hot_folder_files`` (a watcher would then take every file in again)."""
    op.drop_table(TABLE)

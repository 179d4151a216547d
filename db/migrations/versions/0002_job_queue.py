"""Job queue: cancel flag, heartbeat and result version on jobs; the workers table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Written by hand to match ``db.models.jobs``. The new ``jobs`` columns are added in batch mode
(SQLite rebuilds the table for the foreign key; the rebuild reflects and keeps the CHECK
constraints, which ``tests/db/test_job_queue.py`` verifies).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESULT_FK = "fk_jobs_result_model_version_id_model_versions"


def upgrade() -> None:
    """Add the job columns, then create ``workers``."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("result_model_version_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f(RESULT_FK), "model_versions", ["result_model_version_id"], ["id"]
        )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["current_job_id"], ["jobs.id"], name=op.f("fk_workers_current_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    """Drop ``workers``, then the job columns."""
    op.drop_table("workers")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f(RESULT_FK), type_="foreignkey")
        batch.drop_column("result_model_version_id")
        batch.drop_column("heartbeat_at")
        batch.drop_column("cancel_requested")

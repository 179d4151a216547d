"""Outbound messages: the outbox of webhook posts and MQTT publishes (verdicts out).

Revision ID: 0014
Revises: 0013
Create Date: 2027-02-06

Written by hand to match ``db.models.outbound_messages``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "outbound_messages"


def upgrade() -> None:
    """Create ``outbound_messages`` with its worker and per-project indexes."""
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=1024), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('webhook', 'mqtt')", name=op.f(f"ck_{TABLE}_channel")),
        sa.CheckConstraint("event IN ('verdict', 'review')", name=op.f(f"ck_{TABLE}_event")),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'dead')",
            name=op.f(f"ck_{TABLE}_status"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f(f"fk_{TABLE}_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index(f"ix_{TABLE}_status_next_attempt_at", TABLE, ["status", "next_attempt_at"])
    op.create_index(f"ix_{TABLE}_project_id_status", TABLE, ["project_id", "status"])


def downgrade() -> None:
    """Drop ``outbound_messages`` (undelivered messages are lost)."""
    op.drop_index(f"ix_{TABLE}_project_id_status", table_name=TABLE)
    op.drop_index(f"ix_{TABLE}_status_next_attempt_at", table_name=TABLE)
    op.drop_table(TABLE)

"""Sessions that survive a reload, and the audit trail of sign-in attempts.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-14

Written by hand to match ``db.models.auth``:

* ``auth_sessions``: one browser's signed-in session, bound to its cookie by the SHA-256
  digest of the cookie's token (or, until the browser fetched its cookie, of a one-time
  hand-off code); ended early at sign-out, password or role change, deactivation.
* ``sign_in_attempts``: every sign-in attempt with its time, the user name as typed, the
  client's address and the outcome (success, failure, refused while locked).

Two new tables; nothing existing changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``auth_sessions`` and ``sign_in_attempts`` with their indexes."""
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handoff_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "end_reason IS NULL OR end_reason IN ('signed_out', 'password', 'role', 'deactivated')",
            name=op.f("ck_auth_sessions_end"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_auth_sessions_token_digest")),
    )
    op.create_index(op.f("ix_auth_sessions_user_id"), "auth_sessions", ["user_id"], unique=False)
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('success', 'failure', 'refused')",
            name=op.f("ck_sign_in_attempts_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
    )
    op.create_index(
        op.f("ix_sign_in_attempts_attempted_at"),
        "sign_in_attempts",
        ["attempted_at"],
        unique=False,
    )
    op.create_index(
        "ix_sign_in_attempts_user_name_attempted_at",
        "sign_in_attempts",
        ["user_name", "attempted_at"],
        unique=False,
    )
    op.create_index(
        "ix_sign_in_attempts_client_attempted_at",
        "sign_in_attempts",
        ["client", "attempted_at"],
        unique=False,
    )


def downgrade() -> None:
    """Drop both tables (everyone signed in by cookie has to sign in again)."""
    op.drop_index("ix_sign_in_attempts_client_attempted_at", table_name="sign_in_attempts")
    op.drop_index("ix_sign_in_attempts_user_name_attempted_at", table_name="sign_in_attempts")
    op.drop_index(op.f("ix_sign_in_attempts_attempted_at"), table_name="sign_in_attempts")
    op.drop_table("sign_in_attempts")
    op.drop_index(op.f("ix_auth_sessions_user_id"), table_name="auth_sessions")
    op.drop_table("auth_sessions")

"""Explanations: project settings, prediction embeddings and inspectors' explanation notes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Written by hand to match ``db.models``:

* ``projects.settings`` (JSON, ``{}`` by default): per-project options such as the language
  model that rephrases explanations.
* ``predictions.embedding`` (bytes, nullable): the part's global feature vector, for "resembles
  N confirmed '<type>' parts".
* ``explanation_notes``: an inspector's accepted or edited explanation of a prediction, the
  training data of explanation adapters.

Both new columns are plain ``ADD COLUMN`` statements (no table rebuild on SQLite, so the
``reviews`` triggers are not touched).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two columns, then create ``explanation_notes`` and its indexes."""
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), server_default="{}", nullable=False))
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
    op.create_table(
        "explanation_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("shown_text", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "action IN ('accepted', 'edited')", name=op.f("ck_explanation_notes_action")
        ),
        sa.CheckConstraint("length(text) > 0", name=op.f("ck_explanation_notes_text_not_empty")),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_explanation_notes_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_explanation_notes_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_explanation_notes_prediction_id_predictions"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_explanation_notes_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_explanation_notes")),
    )
    op.create_index(
        op.f("ix_explanation_notes_image_id"), "explanation_notes", ["image_id"], unique=False
    )
    op.create_index(
        op.f("ix_explanation_notes_prediction_id"),
        "explanation_notes",
        ["prediction_id"],
        unique=False,
    )
    op.create_index(
        "ix_explanation_notes_project_id_created_at",
        "explanation_notes",
        ["project_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    """Drop ``explanation_notes`` and the two columns."""
    op.drop_index("ix_explanation_notes_project_id_created_at", table_name="explanation_notes")
    op.drop_index(op.f("ix_explanation_notes_prediction_id"), table_name="explanation_notes")
    op.drop_index(op.f("ix_explanation_notes_image_id"), table_name="explanation_notes")
    op.drop_table("explanation_notes")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("embedding")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("settings")

"""Current label on ``images`` (backfilled from the review log); two read-path indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Written by hand to match ``db.models.images``. The column names each image's latest counting
review (not an undo row, not cancelled by one; latest by ``created_at`` then ``id``), so
readers join on it instead of re-deriving it from the log; the ORM keeps it current (see
``db.models.reviews``). The upgrade backfills it with one portable ``UPDATE``. On SQLite the
batch rebuilds ``images`` (the foreign key), which has no triggers; ``reviews`` is not touched,
so its append-only triggers stay.

Two indexes serve the dashboard and queue reads: ``images(project_id)`` (a project's images in
id order; the unique ``(project_id, sha256)`` index visits them in hash order) and
``predictions(image_id, model_version_id, created_at)`` (a version's latest prediction of an
image without reading the table).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_REVIEW_FK = "fk_images_current_review_id_reviews"
CURRENT_REVIEW_INDEX = "ix_images_current_review_id"
PROJECT_INDEX = "ix_images_project_id"
LATEST_PREDICTION_INDEX = "ix_predictions_image_id_model_version_id_created_at"

# Each image's latest counting review, as the log defines it (an undo row has is_undo true).
BACKFILL = (
    "UPDATE images SET current_review_id = ("
    "SELECT log_review.id FROM reviews AS log_review"
    " WHERE log_review.image_id = images.id AND NOT log_review.is_undo"
    " AND NOT EXISTS (SELECT 1 FROM reviews AS log_undo"
    " WHERE log_undo.supersedes_id = log_review.id)"
    " ORDER BY log_review.created_at DESC, log_review.id DESC LIMIT 1)"
)


def upgrade() -> None:
    """Add the column, its index and foreign key, backfill it from the log; add the indexes."""
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("current_review_id", sa.Integer(), nullable=True))
        batch.create_index(op.f(CURRENT_REVIEW_INDEX), ["current_review_id"], unique=False)
        batch.create_index(op.f(PROJECT_INDEX), ["project_id"], unique=False)
        batch.create_foreign_key(op.f(CURRENT_REVIEW_FK), "reviews", ["current_review_id"], ["id"])
    op.execute(BACKFILL)
    op.create_index(
        op.f(LATEST_PREDICTION_INDEX),
        "predictions",
        ["image_id", "model_version_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    """Drop the indexes, the foreign key and the column (the review log is untouched)."""
    op.drop_index(op.f(LATEST_PREDICTION_INDEX), table_name="predictions")
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint(op.f(CURRENT_REVIEW_FK), type_="foreignkey")
        batch.drop_index(op.f(PROJECT_INDEX))
        batch.drop_index(op.f(CURRENT_REVIEW_INDEX))
        batch.drop_column("current_review_id")

"""Reviewer labels: each reviewer's latest counting label of each part, for agreement.

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-30

Written by hand to match ``db.models.reviewer_labels``:

* ``reviewer_labels`` (image, reviewer) -> project, review id and label: the reviewer's latest
  review of the image that is not an undo row and is not undone. A copy of the review log,
  kept by mapper events, read by the Dashboard's agreement between reviewers.

The upgrade fills the table from the existing log in one pass over the counting reviews.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``reviewer_labels`` and fill it from the review log."""
    op.create_table(
        "reviewer_labels",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_reviewer_labels_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_reviewer_labels_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name=op.f("fk_reviewer_labels_review_id_reviews")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_reviewer_labels_reviewer_id_users")
        ),
        sa.PrimaryKeyConstraint("image_id", "reviewer_id", name=op.f("pk_reviewer_labels")),
    )
    op.create_index(
        "ix_reviewer_labels_project_id_image_id",
        "reviewer_labels",
        ["project_id", "image_id"],
        unique=False,
    )
    _fill()


_REVIEWS = sa.table(
    "reviews",
    sa.column("id", sa.Integer),
    sa.column("image_id", sa.Integer),
    sa.column("reviewer_id", sa.Integer),
    sa.column("label", sa.String),
    sa.column("is_undo", sa.Boolean),
    sa.column("supersedes_id", sa.Integer),
    sa.column("created_at", sa.DateTime),
)
_IMAGES = sa.table("images", sa.column("id", sa.Integer), sa.column("project_id", sa.Integer))
_COLUMNS = ["image_id", "reviewer_id", "project_id", "review_id", "label"]
_TARGET = sa.table("reviewer_labels", *(sa.column(name) for name in _COLUMNS))


def _fill() -> None:
    """Insert every (image, reviewer)'s latest counting review (as the model's module keeps it).

    One pass over the counting reviews (not undo rows, not undone), oldest first by
    ``created_at`` then ``id``: the last one per (image, reviewer) is the row. Offline (SQL
    for a DBA to run), the same rows come from one set-based SELECT instead.
    """
    if context.is_offline_mode():
        later = _REVIEWS.alias("later")
        is_later = (later.c.created_at > _REVIEWS.c.created_at) | (
            (later.c.created_at == _REVIEWS.c.created_at) & (later.c.id > _REVIEWS.c.id)
        )
        has_later = sa.exists().where(
            later.c.image_id == _REVIEWS.c.image_id,
            later.c.reviewer_id == _REVIEWS.c.reviewer_id,
            _counting(later, "later_undo"),
            is_later,
        )
        op.execute(sa.insert(_TARGET).from_select(_COLUMNS, _counting_labels().where(~has_later)))
        return
    connection = op.get_bind()
    oldest_first = _counting_labels().order_by(_REVIEWS.c.created_at, _REVIEWS.c.id)
    latest = {
        (row[0], row[1]): dict(zip(_COLUMNS, row, strict=True))
        for row in connection.execute(oldest_first)
    }
    if latest:
        connection.execute(sa.insert(_TARGET), list(latest.values()))


def _counting(review: sa.FromClause, undo_name: str) -> sa.ColumnElement[bool]:
    """``review`` is a label that counts: not an undo row, and no undo row cancels it."""
    undo = _REVIEWS.alias(undo_name)
    return review.c.is_undo.is_(False) & ~sa.exists().where(undo.c.supersedes_id == review.c.id)


def _counting_labels() -> sa.Select:
    """SELECT the :data:`_COLUMNS` of every counting review (with its image's project)."""
    return (
        sa.select(
            _REVIEWS.c.image_id,
            _REVIEWS.c.reviewer_id,
            _IMAGES.c.project_id,
            _REVIEWS.c.id,
            _REVIEWS.c.label,
        )
        .join(_IMAGES, _IMAGES.c.id == _REVIEWS.c.image_id)
        .where(_counting(_REVIEWS, "undo"))
    )


def downgrade() -> None:
    """Drop ``reviewer_labels`` (the log keeps every label)."""
    op.drop_index("ix_reviewer_labels_project_id_image_id", table_name="reviewer_labels")
    op.drop_table("reviewer_labels")

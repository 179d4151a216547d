"""Each reviewer's latest label of each part: a copy of the review log kept for agreement.

Inter-reviewer agreement (the Dashboard's Cohen's kappa per pair of inspectors) compares, for
every part two reviewers labelled, each one's latest label that still counts (not undone).
Deriving that from the log means reading every review of the project; this table holds the
answer, one row per (image, reviewer), so the dashboard self-joins it instead.

Like ``images.current_review_id`` (:mod:`db.models.reviews`), it is never written by
application code: a mapper event recomputes the (image, reviewer) row from the log in the same
flush as every review or undo row inserted through the ORM (the image row is already locked
by then, so concurrent reviews of one image queue up). Rows inserted around the ORM skip the
event: call :func:`db.review_log.rebuild_reviewer_labels` afterwards.
"""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    ForeignKey,
    Index,
    String,
    delete,
    event,
    insert,
    literal_column,
    select,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from db.base import ENUM_LENGTH, Base
from db.models.images import Image
from db.models.reviews import Review, is_counting_label


class ReviewerLabel(Base):
    """A reviewer's latest counting label of an image (derived from the review log)."""

    __tablename__ = "reviewer_labels"
    __table_args__ = (Index("ix_reviewer_labels_project_id_image_id", "project_id", "image_id"),)

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"))
    label: Mapped[str] = mapped_column(String(ENUM_LENGTH))


def refresh_reviewer_label(connection: Connection, image_id: int, reviewer_id: int) -> None:
    """Recompute one (image, reviewer) row from the log (delete, then insert if any label)."""
    table = ReviewerLabel.__table__
    connection.execute(
        delete(table).where(table.c.image_id == image_id, table.c.reviewer_id == reviewer_id)
    )
    latest = connection.execute(
        select(Review.id, Review.label)
        .where(
            Review.image_id == image_id,
            Review.reviewer_id == reviewer_id,
            is_counting_label(Review),
        )
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(literal_column("1"))
    ).first()
    if latest is None:
        return
    project_id = connection.scalar(select(Image.project_id).where(Image.id == image_id))
    connection.execute(
        insert(table).values(
            image_id=image_id,
            reviewer_id=reviewer_id,
            project_id=project_id,
            review_id=latest.id,
            label=latest.label,
        )
    )


@event.listens_for(Review, "after_insert")
def _refresh_reviewer_label(
    _mapper: Mapper[Review], connection: Connection, review: Review
) -> None:
    """After a label or an undo row: recompute the labelling reviewer's row for the image."""
    if review.image_id is None:
        return
    reviewer_id = review.reviewer_id
    if review.is_undo and review.supersedes_id is not None:  # whose label was undone
        reviewer_id = connection.scalar(
            select(Review.reviewer_id).where(Review.id == review.supersedes_id)
        )
    if reviewer_id is not None:
        refresh_reviewer_label(connection, review.image_id, reviewer_id)

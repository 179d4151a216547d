"""Current labels: the review that labels an image now, for one image or a whole project.

The two queries every reader uses: :func:`current_label` (one image) and
:func:`current_labels` (a project's labelled images, as a subquery to join).

An image's current label needs no derivation here: ``images.current_review_id`` names its
latest counting review (kept current by :mod:`db.models.reviews`), so readers join on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Subquery, func, select
from sqlalchemy.orm import Session

from db.models import Image, Review


def current_label(session: Session, image_id: int) -> Review | None:
    """Return the review that gives the image its current label, or ``None`` if unlabelled."""
    statement = select(Review).join(Image, Image.current_review_id == Review.id)
    return session.scalars(statement.where(Image.id == image_id)).first()


def current_labels(project_id: int) -> Subquery:
    """Each labelled image's current label in a project (its latest counting review).

    Args:
        project_id: The project.

    Returns:
        A subquery with columns ``review_id, image_id, label, defect_type, reviewer_id,
        reviewed_at``; unlabelled images have no row.
    """
    return (
        select(
            Review.id.label("review_id"),
            Review.image_id,
            Review.label,
            Review.defect_type,
            Review.reviewer_id,
            Review.created_at.label("reviewed_at"),
        )
        .select_from(Image)
        .join(Review, Review.id == Image.current_review_id)
        .where(Image.project_id == project_id)
        .subquery("current_labels")
    )


def label_counts(session: Session, project_id: int) -> dict[str, int]:
    """How many of the project's images carry each current label, e.g. ``{"good": 40}``."""
    labels = current_labels(project_id)
    rows = session.execute(select(labels.c.label, func.count()).group_by(labels.c.label)).all()
    return {str(label): int(n) for label, n in rows}


def reviews_after(session: Session, project_id: int, after_review_id: int | None) -> ReviewTally:
    """Count the project's label reviews (undo rows not counted) newer than a review id.

    Args:
        session: An open session.
        project_id: The project.
        after_review_id: Count reviews with a larger id; ``None`` counts them all.

    Returns:
        The count and the newest review id of the project (``None`` without reviews).
    """
    in_project = (Review.image_id == Image.id) & (Image.project_id == project_id)
    newest = session.scalar(select(func.max(Review.id)).join(Image, in_project))
    statement = select(func.count()).select_from(Review).join(Image, in_project)
    statement = statement.where(Review.is_undo.is_(False))
    if after_review_id is not None:
        statement = statement.where(Review.id > after_review_id)
    return ReviewTally(int(session.scalar(statement) or 0), newest)


@dataclass(frozen=True)
class ReviewTally:
    """Reviews counted by :func:`reviews_after`.

    Attributes:
        count: Label reviews newer than the given id.
        newest_review_id: The project's newest review id (undo rows included), or ``None``.
    """

    count: int
    newest_review_id: int | None

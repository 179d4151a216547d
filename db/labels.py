"""Current labels: the review that labels an image now, for one image or a whole project.

The two queries every reader uses: :func:`current_label` (one image) and
:func:`current_labels` (a project's labelled images, as a subquery to join).

An image's current label needs no derivation here: ``images.current_review_id`` names its
latest counting review (kept current by :mod:`db.models.reviews`), so readers join on it.
"""

from __future__ import annotations

from sqlalchemy import Subquery, select
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

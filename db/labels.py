"""Current labels: the review that labels an image now, for one image or a whole project.

An image's current label needs no derivation here: ``images.current_review_id`` names its
latest counting review (kept current by :mod:`db.models.reviews`), so readers join on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Exists, ScalarSelect, Select, Subquery, exists, select
from sqlalchemy.orm import Session, aliased

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


def current_labels_query() -> Select[Review]:
    """Return a SELECT of the review that currently labels each image (one row per image).

    A join on ``images.current_review_id`` (through an alias, so callers may join
    :class:`db.models.Image` themselves); narrow it further with ``.where(...)``, e.g.
    ``current_labels_query().where(Review.label == "defect")`` or a join on
    :class:`db.models.Image` to filter by project.
    """
    labelled = aliased(Image, name="labelled_image")
    return select(Review).join(labelled, labelled.current_review_id == Review.id)


def current_review_value(image_id: ColumnElement[int], column: str = "id") -> ScalarSelect[Any]:
    """A correlated scalar: one column of the image's current (latest counting) review.

    Where :class:`db.models.Image` is already in the query, join ``Review`` on
    ``Review.id == Image.current_review_id`` instead (cheaper).

    Args:
        image_id: The outer query's image id column.
        column: Which column of the review, e.g. ``"id"`` or ``"label"``.

    Returns:
        The scalar subquery (NULL for an unlabelled image).
    """
    labelled = aliased(Image, name="labelled_image")
    if column == "id":
        pick = select(labelled.current_review_id)
    else:
        current = aliased(Review, name="current_review")
        pick = (
            select(getattr(current, column))
            .select_from(labelled)
            .join(current, current.id == labelled.current_review_id)
        )
    return pick.where(labelled.id == image_id).scalar_subquery()


def has_current_label(image_id: ColumnElement[int]) -> Exists:
    """A correlated EXISTS: the image has a counting review (it is labelled).

    Where :class:`db.models.Image` is already in the query, test
    ``Image.current_review_id.is_not(None)`` instead.
    """
    labelled = aliased(Image, name="labelled_image")
    return exists().where(labelled.id == image_id, labelled.current_review_id.is_not(None))

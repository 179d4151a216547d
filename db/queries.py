"""Reusable portable queries: latest predictions, current labels, the project write lock.

An image's current label needs no derivation here: ``images.current_review_id`` names its
latest counting review (kept current by :mod:`db.models.reviews`), so readers join on it.

"The latest prediction of an image" is a correlated ``ORDER BY created_at DESC, id DESC
LIMIT 1`` subquery, which every backend answers with one short backwards walk of the
``(image_id, model_version_id, created_at)`` or ``(image_id, created_at)`` index; on SQLite this
is three to four times faster than a ``row_number()`` window, which sorts every row. No
dialect-specific function is used.

``LIMIT 1 OFFSET 0`` is written literally: SQLAlchemy's SQLite dialect otherwise binds an
``OFFSET ?`` parameter, which stops SQLite from ending the index walk at the first row (about
1.5 times slower over a whole project).

Performance note (SQLite): reference each correlated scalar subquery *once* in a statement.
SQLite flattens a derived table into the outer query, so a subquery column used in several
outer expressions is evaluated once per use; group by it instead, or join on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Exists,
    ScalarSelect,
    Select,
    Subquery,
    case,
    exists,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from db.models import Image, ModelVersion, Prediction, Project, Review

_ONE = literal_column("1")
_ZERO = literal_column("0")


def undone_review_ids() -> Select[tuple[int | None]]:
    """Return a SELECT of the ids of reviews that an undo row cancels (for ``NOT IN``)."""
    undo = aliased(Review, name="undo")
    return select(undo.supersedes_id).where(undo.supersedes_id.is_not(None))


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


def latest_prediction_value(
    image_id: ColumnElement[int],
    model_version_id: ColumnElement[int] | int | None = None,
    column: str = "id",
    *,
    prefer_version_id: int | None = None,
) -> ScalarSelect[Any]:
    """A correlated scalar: one column of the image's latest prediction.

    Args:
        image_id: The outer query's image id column.
        model_version_id: Only this version's predictions (a value or an outer column);
            ``None`` for any version.
        column: Which column of the prediction, e.g. ``"id"``, ``"score"`` or ``"verdict"``.
        prefer_version_id: Take this version's latest prediction when it has one, else the
            latest of any (allowed) version.

    Returns:
        The scalar subquery (NULL when there is no such prediction).
    """
    candidate = aliased(Prediction, name="candidate_prediction")
    pick = select(getattr(candidate, column)).where(candidate.image_id == image_id)
    if model_version_id is not None:
        pick = pick.where(candidate.model_version_id == model_version_id)
    order = [candidate.created_at.desc(), candidate.id.desc()]
    if prefer_version_id is not None:
        order.insert(0, case((candidate.model_version_id == prefer_version_id, 0), else_=1))
    return (
        pick.order_by(*order)
        .limit(_ONE)
        .offset(_ZERO)
        .correlate_except(candidate)
        .scalar_subquery()
    )


def latest_predictions(
    project_id: int,
    *,
    model_version_id: int | None = None,
    per_version: bool = False,
    unlabelled_only: bool = False,
    prefer_version_id: int | None = None,
) -> Subquery:
    """Each image's latest prediction (by ``created_at`` then ``id``) in a project.

    Args:
        project_id: The project.
        model_version_id: Only predictions of this version; ``None`` for any version.
        per_version: One row per (image, model version of the project) instead of one per
            image (combine with ``model_version_id`` to keep a single version).
        unlabelled_only: Only images without a current label (filtered before the latest
            prediction is looked up).
        prefer_version_id: Per image, this version's latest prediction when there is one,
            else the latest of any version.

    Returns:
        A subquery with columns ``prediction_id, image_id, model_version_id, score, threshold,
        verdict, predicted_at``; images without a matching prediction have no row.
    """
    statement = select(
        Prediction.id.label("prediction_id"),
        Prediction.image_id,
        Prediction.model_version_id,
        Prediction.score,
        Prediction.threshold,
        Prediction.verdict,
        Prediction.created_at.label("predicted_at"),
    ).select_from(Image)
    version: ColumnElement[int] | int | None = model_version_id
    if per_version:
        same_project = ModelVersion.project_id == Image.project_id
        if model_version_id is not None:
            same_project = same_project & (ModelVersion.id == model_version_id)
        statement = statement.join(ModelVersion, same_project)
        version = ModelVersion.id
    latest_id = latest_prediction_value(Image.id, version, prefer_version_id=prefer_version_id)
    # The redundant image_id equality lets planners join this subquery to others by image.
    same_image = Prediction.image_id == Image.id
    statement = statement.join(Prediction, (Prediction.id == latest_id) & same_image).where(
        Image.project_id == project_id
    )
    if unlabelled_only:
        statement = statement.where(Image.current_review_id.is_(None))
    return statement.subquery("latest_predictions")


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


def active_version_id(session: Session, project_id: int) -> int | None:
    """Return the id of the project's active model version, or ``None``."""
    return session.scalar(select(Project.active_model_version_id).where(Project.id == project_id))


def locked_project(session: Session, project_id: int) -> Project:
    """Write the project's row (a no-op change) to take the write lock; return it refreshed.

    Call this before a read-modify-write of a project's state (its defect types, version
    numbers, active version, thresholds): concurrent changes then queue up (the SQLite
    database lock, a row lock elsewhere) instead of losing updates.

    Raises:
        LookupError: If the project does not exist.
    """
    locked = session.execute(  # ORM-enabled, so pending changes are flushed first
        update(Project)
        .where(Project.id == project_id)
        .values(target_fnr=Project.target_fnr)
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount == 0:
        raise LookupError(f"There is no project with id {project_id}.")
    project = session.get(Project, project_id)
    assert project is not None
    session.refresh(project)
    return project

"""The review log: append a review, undo one's last review, rebuild the current-label column.

Reviews are append-only (see :mod:`db.models.reviews`): a correction or an undo adds a row and
history is never rewritten. A review *counts* when it is not an undo row and no undo row
supersedes it. An image's current label is its latest counting review, ordered by
``created_at`` then ``id``; the ORM keeps that answer in ``images.current_review_id`` in the
same flush as every inserted review (the image row locked first).

These writers check no role: the workbench records reviews through
:func:`db.review_queue.record_review` and :func:`db.review_queue.undo_last`, which do. None of
them commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.base import Label
from db.models import Image, Review
from db.models.reviewer_labels import ReviewerLabel
from db.models.reviews import is_counting_label, latest_counting_review


def add_review(
    session: Session,
    *,
    image_id: int,
    reviewer_id: int,
    label: str,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
    region: dict[str, float] | None = None,
    created_at: datetime | None = None,
) -> Review:
    """Append a review (flushed, so it has an id) and make it the image's current label.

    The flush locks the image row, inserts the review and recomputes
    ``images.current_review_id`` from the log, all in the caller's transaction (see
    :mod:`db.models.reviews`): two inspectors labelling the same image at once both keep
    their review, and the later one is current.

    Args:
        session: The caller's session.
        image_id: The reviewed image.
        reviewer_id: The reviewing user.
        label: One of :class:`db.base.Label`.
        defect_type: The kind of defect; only with ``label="defect"``.
        note: Free text.
        seconds_spent: Time the reviewer spent on the image.
        region: The box drawn around the defect (checked by the caller); only with "defect".
        created_at: When the review was given (timezone-aware); default now. Only for
            replaying a past (e.g. the demo's simulated history), never for a live review.

    Returns:
        The new review.

    Raises:
        ValueError: On an unknown label, or a defect type or box on a good part.
    """
    label = Label(label).value
    if defect_type is not None and label != Label.DEFECT:
        raise ValueError("a defect type needs label 'defect'")
    if region is not None and label != Label.DEFECT:
        raise ValueError("a defect box needs label 'defect'")
    review = Review(
        image_id=image_id,
        reviewer_id=reviewer_id,
        label=label,
        defect_type=defect_type,
        note=note,
        seconds_spent=seconds_spent,
        region=region,
    )
    if created_at is not None:
        if created_at.tzinfo is None or created_at.utcoffset() is None:
            raise ValueError(f"created_at must be timezone-aware, got {created_at!r}")
        review.created_at = created_at
    session.add(review)
    session.flush()
    return review


def add_past_reviews(session: Session, reviews: Sequence[dict[str, Any]]) -> int:
    """Append many reviews given in the past at once, then rebuild their images' labels.

    For replaying a recorded or simulated past (the demo's history), where one flush per
    review would be slow: the rows are inserted in one statement, which skips the mapper
    events, so ``images.current_review_id`` and the reviewer labels of the reviewed images are
    rebuilt from the log afterwards (:func:`rebuild_current_reviews`,
    :func:`rebuild_reviewer_labels`), in the caller's transaction.

    Args:
        session: The caller's session.
        reviews: Dicts with ``image_id``, ``reviewer_id``, ``label``, ``created_at``
            (timezone-aware) and optionally ``defect_type`` and ``seconds_spent``.

    Returns:
        How many reviews were appended.

    Raises:
        ValueError: On an unknown label, a defect type on a good part, or a naive or missing
            ``created_at`` (nothing is written).
    """
    rows = []
    for review in reviews:
        label = Label(review["label"]).value
        defect_type = review.get("defect_type")
        if defect_type is not None and label != Label.DEFECT:
            raise ValueError("a defect type needs label 'defect'")
        created_at = review.get("created_at")
        if not isinstance(created_at, datetime) or created_at.utcoffset() is None:
            raise ValueError(f"created_at must be a timezone-aware datetime, got {created_at!r}")
        rows.append(
            {
                "image_id": review["image_id"],
                "reviewer_id": review["reviewer_id"],
                "label": label,
                "defect_type": defect_type,
                "seconds_spent": review.get("seconds_spent"),
                "is_undo": False,
                "created_at": created_at,
            }
        )
    if not rows:
        return 0
    session.execute(insert(Review), rows)
    reviewed = sorted({row["image_id"] for row in rows})
    rebuild_current_reviews(session, reviewed)
    rebuild_reviewer_labels(session, reviewed)
    return len(rows)


def undo_last_review(session: Session, *, reviewer_id: int) -> Review | None:
    """Cancel the reviewer's latest counting review by appending an undo row.

    Repeated calls walk further back through the reviewer's own reviews; other reviewers'
    reviews are never touched. The image's label falls back to its latest remaining counting
    review (whoever gave it), or to unlabelled; ``images.current_review_id`` follows in the
    same flush, with the image row locked (see :func:`add_review`).

    Args:
        session: The caller's session.
        reviewer_id: The user whose last review is undone.

    Returns:
        The undo row, or ``None`` if there is nothing to undo or a concurrent undo of the same
        review won the race (``supersedes_id`` is unique).
    """
    target = session.scalars(
        select(Review)
        .where(Review.reviewer_id == reviewer_id, is_counting_label(Review))
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
    ).first()
    if target is None:
        return None
    undo = Review(
        image_id=target.image_id,
        reviewer_id=reviewer_id,
        label=None,
        is_undo=True,
        supersedes_id=target.id,
    )
    try:
        with session.begin_nested():
            session.add(undo)
    except IntegrityError:
        if _undo_of(session, target.id) is None:
            raise
        return None
    return undo


def rebuild_current_reviews(session: Session, image_ids: Iterable[int] | None = None) -> int:
    """Recompute ``images.current_review_id`` from the review log.

    Only needed after reviews were written around the ORM (Core or bulk inserts, raw SQL), or
    to repair; the ORM keeps the column current otherwise.

    Args:
        session: The caller's session (the caller commits).
        image_ids: Only these images; ``None`` for every image.

    Returns:
        How many image rows were updated.
    """
    statement = update(Image).values(
        current_review_id=latest_counting_review(Image.id).scalar_subquery()
    )
    if image_ids is not None:
        statement = statement.where(Image.id.in_(list(image_ids)))
    result = session.execute(statement.execution_options(synchronize_session=False))
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Image):
            session.expire(loaded, ["current_review_id"])
    return int(result.rowcount or 0)


def rebuild_reviewer_labels(session: Session, image_ids: Iterable[int] | None = None) -> int:
    """Recompute the ``reviewer_labels`` rows (:mod:`db.models.reviewer_labels`) from the log.

    Only needed after reviews were written around the ORM; mapper events keep the table
    otherwise. One pass over the counting reviews, oldest first: the last one per (image,
    reviewer) is the row (a correlated "no later label" test per review is far slower).

    Args:
        session: The caller's session (the caller commits).
        image_ids: Only these images' rows; ``None`` for every image.

    Returns:
        How many rows were written.
    """
    table = ReviewerLabel.__table__
    wipe = delete(table)
    oldest_first = (
        select(Review.image_id, Review.reviewer_id, Image.project_id, Review.id, Review.label)
        .join(Image, Image.id == Review.image_id)
        .where(is_counting_label(Review))
        .order_by(Review.created_at, Review.id)
    )
    if image_ids is not None:
        ids = list(image_ids)
        wipe = wipe.where(table.c.image_id.in_(ids))
        oldest_first = oldest_first.where(Review.image_id.in_(ids))
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    for image_id, reviewer_id, project_id, review_id, label in session.execute(oldest_first):
        latest[(image_id, reviewer_id)] = {
            "image_id": image_id,
            "reviewer_id": reviewer_id,
            "project_id": project_id,
            "review_id": review_id,
            "label": label,
        }
    session.execute(wipe)
    if latest:
        session.execute(insert(table), list(latest.values()))
    return len(latest)


def _undo_of(session: Session, review_id: int) -> Review | None:
    return session.scalars(select(Review).where(Review.supersedes_id == review_id)).first()

"""Small repository functions: images (deduplicated by content) and the review log.

None of these functions commits: the caller owns the transaction, e.g.
``with factory() as session, session.begin(): ...``, so a multi-row change is all or nothing.

Review semantics (see :mod:`db.models.reviews`): a review *counts* when it is not an undo row
and no undo row supersedes it. An image's current label is its latest counting review, ordered
by ``created_at`` then ``id``. That answer is kept in ``images.current_review_id``, which the
ORM maintains in the same flush as every inserted review (the image row locked first), so the
readers here simply join on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Select, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from db.base import ImageSource, Label
from db.image_store import sha256_hex, stored_path_for, write_image_file
from db.models import Image, Review
from db.models.images import ORIGINAL_NAME_LENGTH
from db.models.reviews import latest_counting_review


def get_or_create_image(
    session: Session,
    *,
    data: bytes,
    original_name: str,
    project_id: int,
    source: str,
    width: int,
    height: int,
    data_dir: Path | None = None,
) -> tuple[Image, bool]:
    """Return the project's image with these bytes, storing file and row the first time.

    The file is written (atomically) before the row is inserted, so a committed row always has
    its file; a file whose row was rolled back is harmless (same bytes, same path, reused next
    time). If a concurrent session inserts the same image first, the insert fails inside a
    SAVEPOINT, which is rolled back, and the other session's row is returned: the caller's
    transaction goes on.

    Args:
        session: The caller's session (inside the caller's transaction).
        data: The image file's bytes.
        original_name: The user's file name: display metadata only, never part of a path.
        project_id: The project the image belongs to.
        source: One of :class:`db.base.ImageSource`.
        width: Width in pixels (decoded by the caller).
        height: Height in pixels.
        data_dir: The data directory; default :func:`db.settings.data_dir`.

    Returns:
        ``(image, created)``; ``created`` is ``False`` when an existing row was reused.

    Raises:
        ValueError: On empty data or an unknown source.
    """
    if not data:
        raise ValueError("refusing to store an empty image")
    source = ImageSource(source).value
    digest = sha256_hex(data)
    existing = _find_image(session, project_id, digest)
    if existing is not None:
        write_image_file(existing.stored_path, data, data_dir)  # restores a lost file
        return existing, False
    stored_path = stored_path_for(digest, data)
    write_image_file(stored_path, data, data_dir)
    image = Image(
        project_id=project_id,
        sha256=digest,
        stored_path=stored_path,
        original_name=original_name[:ORIGINAL_NAME_LENGTH],
        width=width,
        height=height,
        size_bytes=len(data),
        source=source,
    )
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:
        winner = _find_image(session, project_id, digest)
        if winner is None:  # not the race: some other constraint failed
            raise
        return winner, False
    return image, True


def add_review(
    session: Session,
    *,
    image_id: int,
    reviewer_id: int,
    label: str,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
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

    Returns:
        The new review.

    Raises:
        ValueError: On an unknown label or a defect type on a good part.
    """
    label = Label(label).value
    if defect_type is not None and label != Label.DEFECT:
        raise ValueError("a defect type needs label 'defect'")
    review = Review(
        image_id=image_id,
        reviewer_id=reviewer_id,
        label=label,
        defect_type=defect_type,
        note=note,
        seconds_spent=seconds_spent,
    )
    session.add(review)
    session.flush()
    return review


def current_label(session: Session, image_id: int) -> Review | None:
    """Return the review that gives the image its current label, or ``None`` if unlabelled."""
    statement = select(Review).join(Image, Image.current_review_id == Review.id)
    return session.scalars(statement.where(Image.id == image_id)).first()


def current_labels_query() -> Select[Review]:
    """Return a SELECT of the review that currently labels each image (one row per image).

    A join on ``images.current_review_id`` (through an alias, so callers may join
    :class:`db.models.Image` themselves); narrow it further with ``.where(...)``, e.g.
    ``current_labels_query().where(Review.label == "defect")`` or a join on
    :class:`db.models.Image` to filter by project.
    """
    labelled = aliased(Image, name="labelled_image")
    return select(Review).join(labelled, labelled.current_review_id == Review.id)


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
        .where(Review.reviewer_id == reviewer_id, counting_review())
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


def counting_review() -> ColumnElement[bool]:
    """Return the condition "this review is not an undo row and no undo row cancels it"."""
    undo = aliased(Review, name="undo")
    return Review.is_undo.is_(False) & ~exists().where(undo.supersedes_id == Review.id)


def _find_image(session: Session, project_id: int, digest: str) -> Image | None:
    return session.scalars(
        select(Image).where(Image.project_id == project_id, Image.sha256 == digest)
    ).first()


def _undo_of(session: Session, review_id: int) -> Review | None:
    return session.scalars(select(Review).where(Review.supersedes_id == review_id)).first()

"""Human reviews: an append-only log from which each image's current label is derived.

A review is never edited or deleted. Correcting a label appends a newer review; "undo" appends
an *undo row* (``is_undo`` true, no label) whose ``supersedes_id`` names the review it cancels.
An image's current label is its latest review that is not an undo row and is not cancelled by
one (see :mod:`db.review_log`).

Append-only is enforced three times: mapper events refuse ORM updates and deletes of a loaded
review, a session hook refuses ORM bulk ``update(Review)`` / ``delete(Review)`` statements, and
database triggers (created by the migrations) abort any UPDATE or DELETE, including raw SQL.

The log's answer is also kept in ``images.current_review_id`` so readers need not derive it
(:func:`latest_counting_review`). Mapper events maintain it for every review or undo row the
ORM inserts, inside the same flush: *before* the insert the image row is locked
(``SELECT ... FOR UPDATE``; skipped on SQLite, where the insert takes the database write lock
and every write is serialised), so concurrent reviews of one image queue up; *after* it the
image's current review is recomputed from the log. Each recomputation therefore sees every
review committed before it, and the last writer leaves the log's answer. Rows inserted around
the ORM (Core ``insert()``, ORM bulk inserts, raw SQL) skip the events: call
:func:`db.review_log.rebuild_current_reviews` afterwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Connection,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    event,
    exists,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import (
    Mapped,
    Mapper,
    ORMExecuteState,
    aliased,
    mapped_column,
    object_session,
    relationship,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.elements import ColumnElement

from db.base import ENUM_LENGTH, Base, Label, sql_in, utcnow
from db.errors import AppendOnlyError
from db.models.accounts import User
from db.models.images import Image

DEFECT_TYPE_LENGTH = 64
APPEND_ONLY_MESSAGE = "reviews are append-only"


class Review(Base):
    """One reviewer's label for one image at one moment, or an undo of an earlier review."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(sql_in("label", Label), name="label"),
        CheckConstraint(
            "(is_undo AND label IS NULL AND defect_type IS NULL AND supersedes_id IS NOT NULL)"
            " OR (NOT is_undo AND label IS NOT NULL AND supersedes_id IS NULL)",
            name="undo_shape",
        ),
        CheckConstraint("defect_type IS NULL OR label = 'defect'", name="defect_type_needs_defect"),
        CheckConstraint("seconds_spent IS NULL OR seconds_spent >= 0", name="seconds_not_negative"),
        Index("ix_reviews_image_id_created_at", "image_id", "created_at"),
        Index("ix_reviews_reviewer_id_created_at", "reviewer_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    label: Mapped[str | None] = mapped_column(String(ENUM_LENGTH))
    defect_type: Mapped[str | None] = mapped_column(String(DEFECT_TYPE_LENGTH))
    note: Mapped[str | None] = mapped_column(Text)
    seconds_spent: Mapped[float | None]
    region: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    """The box the reviewer drew around the defect: ``{"x", "y", "w", "h"}``, fractions of the
    image's width and height from its top-left corner (:func:`db.review_queue.defect_region`)."""
    is_undo: Mapped[bool] = mapped_column(default=False)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    image: Mapped[Image] = relationship(foreign_keys=[image_id])
    reviewer: Mapped[User] = relationship()
    supersedes: Mapped[Review | None] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        kind = f"undo of {self.supersedes_id!r}" if self.is_undo else repr(self.label)
        return f"Review(id={self.id!r}, image_id={self.image_id!r}, {kind})"


def is_counting_label(review: Any = Review, undo_name: str = "undo") -> ColumnElement[bool]:
    """The condition "``review`` is a label that counts": not an undo row, and not undone.

    Args:
        review: ``Review`` or an alias of it.
        undo_name: The name of the alias that looks for a cancelling undo row (distinct names
            keep two such conditions apart in one statement).
    """
    undo = aliased(Review, name=undo_name)
    return review.is_undo.is_(False) & ~exists().where(undo.supersedes_id == review.id)


def latest_counting_review(image_id: Any) -> Select[tuple[int]]:
    """Return a SELECT of the id of the image's latest counting review, derived from the log.

    A review counts when it is not an undo row and no undo row supersedes it; the latest is
    the last by ``created_at`` then ``id``. Use ``.scalar_subquery()`` to correlate it with an
    outer image column, or pass a plain id.

    Args:
        image_id: An image id, or an outer query's image id column.

    Returns:
        The SELECT (no row for an unlabelled image).
    """
    candidate = aliased(Review, name="log_review")
    return (
        select(candidate.id)
        .where(candidate.image_id == image_id, is_counting_label(candidate, "log_undo"))
        .order_by(candidate.created_at.desc(), candidate.id.desc())
        .limit(literal_column("1"))
        .correlate_except(candidate)
    )


@event.listens_for(Review, "before_insert")
def _lock_reviewed_image(_mapper: Mapper[Review], connection: Connection, review: Review) -> None:
    """Lock the image row before its review is inserted (concurrent reviewers queue up)."""
    if review.image_id is None or connection.dialect.name == "sqlite":
        return  # SQLite: the insert itself takes the database write lock
    connection.execute(select(Image.id).where(Image.id == review.image_id).with_for_update())


@event.listens_for(Review, "after_insert")
def _refresh_current_review(
    _mapper: Mapper[Review], connection: Connection, review: Review
) -> None:
    """Recompute ``images.current_review_id`` of the reviewed image from the log."""
    if review.image_id is None:
        return
    current = connection.scalar(latest_counting_review(review.image_id))
    images = Image.__table__
    connection.execute(
        update(images).where(images.c.id == review.image_id).values(current_review_id=current)
    )
    session = object_session(review)
    loaded = (
        None if session is None else session.identity_map.get(identity_key(Image, review.image_id))
    )
    if loaded is not None:  # keep a loaded image in step without marking it changed
        set_committed_value(loaded, "current_review_id", current)


@event.listens_for(Review, "before_update")
def _refuse_review_update(_mapper: Mapper[Review], _connection: Connection, review: Review) -> None:
    """Refuse to flush a changed review (an unchanged "dirty" one is harmless)."""
    session = object_session(review)
    if session is None or session.is_modified(review, include_collections=False):
        raise AppendOnlyError(f"{APPEND_ONLY_MESSAGE}: refusing to update review {review.id}")


@event.listens_for(Review, "before_delete")
def _refuse_review_delete(_mapper: Mapper[Review], _connection: Connection, review: Review) -> None:
    """Refuse to flush the deletion of a review."""
    raise AppendOnlyError(f"{APPEND_ONLY_MESSAGE}: refusing to delete review {review.id}")


def refuse_bulk_review_changes(execute_state: ORMExecuteState) -> None:
    """``do_orm_execute`` hook: refuse ORM bulk UPDATE/DELETE statements aimed at reviews.

    Args:
        execute_state: The statement about to run.

    Raises:
        AppendOnlyError: If the statement updates or deletes rows of ``reviews``.
    """
    if not (execute_state.is_update or execute_state.is_delete):
        return
    target = getattr(execute_state.statement, "table", None)
    if getattr(target, "name", None) == Review.__tablename__:
        raise AppendOnlyError(f"{APPEND_ONLY_MESSAGE}: refusing a bulk UPDATE/DELETE")

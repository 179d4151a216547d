"""The review log: append-only, current label = latest counting review, undo, concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import AppendOnlyError, Image, Review, current_label
from db.images import get_or_create_image
from db.labels import current_labels
from db.review_log import add_review, undo_last_review

Factory = sessionmaker[Session]


def _review(factory: Factory, image_id: int, reviewer_id: int, label: str, **extra: object) -> int:
    with factory() as session, session.begin():
        return add_review(
            session, image_id=image_id, reviewer_id=reviewer_id, label=label, **extra
        ).id


def _label(factory: Factory, image_id: int) -> str | None:
    with factory() as session:
        review = current_label(session, image_id)
        return None if review is None else review.label


def _undo(factory: Factory, reviewer_id: int) -> Review | None:
    with factory() as session, session.begin():
        return undo_last_review(session, reviewer_id=reviewer_id)


def _count(factory: Factory, model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def ann(make_user: Callable[..., int]) -> int:
    return make_user("ann")


@pytest.fixture
def bob(make_user: Callable[..., int]) -> int:
    return make_user("bob")


@pytest.fixture
def image_id(make_image: Callable[[int], int]) -> int:
    return make_image(1)


# --- append-only ---------------------------------------------------------------------------


def test_orm_update_of_a_review_raises(session_factory: Factory, image_id: int, ann: int) -> None:
    review_id = _review(session_factory, image_id, ann, "good")
    with pytest.raises(AppendOnlyError), session_factory() as session, session.begin():
        session.get_one(Review, review_id).label = "defect"
    assert _label(session_factory, image_id) == "good"


def test_orm_delete_of_a_review_raises(session_factory: Factory, image_id: int, ann: int) -> None:
    review_id = _review(session_factory, image_id, ann, "good")
    with pytest.raises(AppendOnlyError), session_factory() as session, session.begin():
        session.delete(session.get_one(Review, review_id))
    assert _count(session_factory, Review) == 1


def test_orm_bulk_update_and_delete_raise(
    session_factory: Factory, image_id: int, ann: int
) -> None:
    _review(session_factory, image_id, ann, "good")
    with pytest.raises(AppendOnlyError), session_factory() as session, session.begin():
        session.execute(update(Review).values(label="defect"))
    with pytest.raises(AppendOnlyError), session_factory() as session, session.begin():
        session.execute(delete(Review))
    assert _label(session_factory, image_id) == "good"


def test_raw_sql_update_and_delete_are_aborted_by_triggers(
    session_factory: Factory, image_id: int, ann: int, database_backend: str
) -> None:
    _review(session_factory, image_id, ann, "good")
    statements = ["UPDATE reviews SET label = 'defect'", "DELETE FROM reviews"]
    if database_backend == "postgresql":  # TRUNCATE (SQLite has none) skips row triggers
        # A plain TRUNCATE is refused even earlier, by the foreign key from
        # images.current_review_id (below); CASCADE gets past that check to the trigger.
        statements += ["TRUNCATE reviews CASCADE", "TRUNCATE images CASCADE"]
    for statement in statements:
        with (
            pytest.raises(DBAPIError, match="reviews are append-only"),
            session_factory() as session,
            session.begin(),
        ):
            session.execute(text(statement))
    if database_backend == "postgresql":
        with (
            pytest.raises(DBAPIError, match="cannot truncate a table referenced in a foreign key"),
            session_factory() as session,
            session.begin(),
        ):
            session.execute(text("TRUNCATE reviews"))
    assert _label(session_factory, image_id) == "good"
    assert _count(session_factory, Review) == 1
    assert _count(session_factory, Image) == 1


def test_loading_and_reading_reviews_is_not_an_update(
    session_factory: Factory, image_id: int, ann: int
) -> None:
    review_id = _review(session_factory, image_id, ann, "good")
    with session_factory() as session, session.begin():
        review = session.get_one(Review, review_id)
        review.note = review.note  # same value: no net change, nothing to refuse
        assert review.image.id == image_id


# --- current label ---------------------------------------------------------------------------


def test_unreviewed_image_has_no_label(session_factory: Factory, image_id: int) -> None:
    assert _label(session_factory, image_id) is None


def test_current_label_is_the_latest_review(
    session_factory: Factory, image_id: int, ann: int, bob: int
) -> None:
    _review(session_factory, image_id, ann, "good")
    _review(session_factory, image_id, bob, "defect", defect_type="crack")
    assert _label(session_factory, image_id) == "defect"
    _review(session_factory, image_id, ann, "good")
    assert _label(session_factory, image_id) == "good"
    assert _count(session_factory, Review) == 3


def test_current_labels_give_one_row_per_labelled_image(
    session_factory: Factory, make_image: Callable[[int], int], ann: int, bob: int, project_id: int
) -> None:
    first, second, unreviewed = make_image(1), make_image(2), make_image(3)
    _review(session_factory, first, ann, "defect")
    _review(session_factory, first, bob, "good")
    _review(session_factory, second, ann, "defect")
    _review(session_factory, second, bob, "good")
    _undo(session_factory, bob)  # second falls back to ann's "defect"
    current = current_labels(project_id)
    with session_factory() as session:
        rows = session.execute(select(current.c.image_id, current.c.label)).all()
        labels = dict(rows)
        defects = session.scalars(
            select(current.c.image_id).where(current.c.label == "defect")
        ).all()
    assert len(rows) == len(labels) == 2  # one row per labelled image
    assert labels == {first: "good", second: "defect"}
    assert unreviewed not in labels
    assert defects == [second]


def test_add_review_validates_its_arguments(
    session_factory: Factory, image_id: int, ann: int
) -> None:
    with pytest.raises(ValueError), session_factory() as session, session.begin():
        add_review(session, image_id=image_id, reviewer_id=ann, label="maybe")
    with pytest.raises(ValueError), session_factory() as session, session.begin():
        add_review(session, image_id=image_id, reviewer_id=ann, label="good", defect_type="x")


# --- undo ------------------------------------------------------------------------------------


def test_undo_with_nothing_to_undo_returns_none(session_factory: Factory, ann: int) -> None:
    assert _undo(session_factory, ann) is None


def test_undo_of_the_only_review_leaves_the_image_unlabelled(
    session_factory: Factory, image_id: int, ann: int
) -> None:
    review_id = _review(session_factory, image_id, ann, "defect", defect_type="crack")
    undo = _undo(session_factory, ann)
    assert undo is not None
    assert (undo.is_undo, undo.label, undo.supersedes_id) == (True, None, review_id)
    assert _label(session_factory, image_id) is None
    assert _count(session_factory, Review) == 2  # nothing was deleted


def test_undo_after_two_reviews_restores_the_first_then_nothing(
    session_factory: Factory, image_id: int, ann: int
) -> None:
    first = _review(session_factory, image_id, ann, "good")
    second = _review(session_factory, image_id, ann, "defect")
    assert _undo(session_factory, ann).supersedes_id == second
    assert _label(session_factory, image_id) == "good"
    assert _undo(session_factory, ann).supersedes_id == first
    assert _label(session_factory, image_id) is None
    assert _undo(session_factory, ann) is None
    assert _count(session_factory, Review) == 4


def test_undo_walks_back_across_images(
    session_factory: Factory, make_image: Callable[[int], int], ann: int
) -> None:
    first_image, second_image = make_image(1), make_image(2)
    _review(session_factory, first_image, ann, "good")
    _review(session_factory, second_image, ann, "defect")
    _undo(session_factory, ann)
    assert _label(session_factory, first_image) == "good"
    assert _label(session_factory, second_image) is None


def test_undo_never_touches_another_reviewers_review(
    session_factory: Factory, image_id: int, ann: int, bob: int
) -> None:
    _review(session_factory, image_id, ann, "good")
    _review(session_factory, image_id, bob, "defect")
    undo = _undo(session_factory, ann)
    assert undo is not None
    assert _label(session_factory, image_id) == "defect"  # bob's review still counts
    assert _undo(session_factory, ann) is None


def test_new_review_after_undo_counts(session_factory: Factory, image_id: int, ann: int) -> None:
    _review(session_factory, image_id, ann, "good")
    _undo(session_factory, ann)
    _review(session_factory, image_id, ann, "defect")
    assert _label(session_factory, image_id) == "defect"


def test_a_review_can_be_undone_only_once(
    session_factory: Factory, image_id: int, ann: int
) -> None:
    review_id = _review(session_factory, image_id, ann, "good")
    _undo(session_factory, ann)
    duplicate = Review(
        image_id=image_id, reviewer_id=ann, label=None, is_undo=True, supersedes_id=review_id
    )
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        session.add(duplicate)


# --- transactions and concurrency -----------------------------------------------------------


def test_two_sessions_both_review_the_same_image(
    session_factory: Factory, image_id: int, ann: int, bob: int
) -> None:
    """Interleaved: both read, both add, both commit; the second writer waits for the lock."""
    with session_factory() as first, session_factory() as second:
        assert current_label(first, image_id) is None
        assert current_label(second, image_id) is None
        add_review(first, image_id=image_id, reviewer_id=ann, label="good")  # holds the lock
        errors: list[BaseException] = []

        def second_reviewer() -> None:
            try:
                add_review(second, image_id=image_id, reviewer_id=bob, label="defect")
                second.commit()
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        thread = threading.Thread(target=second_reviewer)
        thread.start()
        time.sleep(0.2)  # the second writer is now waiting on SQLite's write lock
        first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert errors == []
    with session_factory() as session:
        reviews = session.scalars(select(Review).order_by(Review.id)).all()
        assert [(review.reviewer_id, review.label) for review in reviews] == [
            (ann, "good"),
            (bob, "defect"),
        ]
        latest = current_label(session, image_id)
        assert latest is not None and latest.reviewer_id == bob


def test_failure_mid_transaction_writes_nothing(
    session_factory: Factory, project_id: int, ann: int, png: Callable[..., bytes]
) -> None:
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        image, created = get_or_create_image(
            session,
            data=png(42),
            original_name="new.png",
            project_id=project_id,
            source="upload",
            width=8,
            height=8,
        )
        assert created
        session.add(Review(image_id=image.id, reviewer_id=ann, label="maybe"))
        session.flush()
    assert _count(session_factory, Image) == 0
    assert _count(session_factory, Review) == 0


def test_validation_failure_mid_transaction_writes_nothing(
    session_factory: Factory, project_id: int, ann: int, png: Callable[..., bytes]
) -> None:
    with pytest.raises(ValueError), session_factory() as session, session.begin():
        image, _ = get_or_create_image(
            session,
            data=png(43),
            original_name="new.png",
            project_id=project_id,
            source="folder",
            width=8,
            height=8,
        )
        add_review(session, image_id=image.id, reviewer_id=ann, label="maybe")
    assert _count(session_factory, Image) == 0

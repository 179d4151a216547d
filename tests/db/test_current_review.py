"""``images.current_review_id`` always equals what the review log says.

The reference here is computed in Python from the raw log (every review row, no SQL
derivation): a review counts when it is not an undo row and no undo row supersedes it; an
image's current review is its last counting review by ``(created_at, id)``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from db import Image, Review, current_label, utcnow
from db.labels import current_labels
from db.review_log import add_review, rebuild_current_reviews, undo_last_review

Factory = sessionmaker[Session]


def _log_current(session: Session) -> dict[int, int | None]:
    """The reference: image id -> id of its latest counting review, from the raw log."""
    reviews = session.execute(
        select(Review.id, Review.image_id, Review.is_undo, Review.supersedes_id, Review.created_at)
    ).all()
    undone = {row.supersedes_id for row in reviews if row.is_undo}
    current: dict[int, int | None] = dict.fromkeys(session.scalars(select(Image.id)), None)
    best: dict[int, tuple] = {}
    for row in reviews:
        if row.is_undo or row.id in undone:
            continue
        key = (row.created_at, row.id)
        if row.image_id not in best or key > best[row.image_id]:
            best[row.image_id] = key
            current[row.image_id] = row.id
    return current


def _assert_consistent(factory: Factory) -> dict[int, int | None]:
    """Check the column and every reader against the reference; return the reference."""
    with factory() as session:
        expected = _log_current(session)
        rows = session.execute(select(Image.id, Image.current_review_id))
        stored = {image_id: review_id for image_id, review_id in rows}
        assert stored == expected
        for image_id, review_id in expected.items():
            review = current_label(session, image_id)
            assert (review.id if review is not None else None) == review_id
        project_ids = session.scalars(select(Image.project_id).distinct()).all()
        for project_id in project_ids:
            subquery = current_labels(project_id)
            rows = session.execute(select(subquery.c.image_id, subquery.c.review_id)).all()
            in_project = set(
                session.scalars(select(Image.id).where(Image.project_id == project_id))
            )
            assert dict(rows) == {
                key: value
                for key, value in expected.items()
                if value is not None and key in in_project
            }
    return expected


def _review(factory: Factory, image_id: int, reviewer_id: int, label: str) -> int:
    with factory() as session, session.begin():
        return add_review(session, image_id=image_id, reviewer_id=reviewer_id, label=label).id


def _undo(factory: Factory, reviewer_id: int) -> int | None:
    with factory() as session, session.begin():
        undo = undo_last_review(session, reviewer_id=reviewer_id)
        return None if undo is None else undo.supersedes_id


@pytest.fixture
def people(make_user: Callable[..., int]) -> tuple[int, int, int]:
    return make_user("ann"), make_user("bob"), make_user("cem")


@pytest.fixture
def images(make_image: Callable[[int], int]) -> list[int]:
    return [make_image(seed) for seed in range(1, 6)]


def test_new_images_are_unlabelled(session_factory: Factory, images: list[int]) -> None:
    assert set(_assert_consistent(session_factory).values()) == {None}


def test_review_and_correction_move_the_current_review(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    ann, bob, _ = people
    first = _review(session_factory, images[0], ann, "good")
    assert _assert_consistent(session_factory)[images[0]] == first
    correction = _review(session_factory, images[0], bob, "defect")
    assert _assert_consistent(session_factory)[images[0]] == correction


def test_undo_walks_back_past_several_reviews_and_keeps_another_reviewers_later_one(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    ann, bob, _ = people
    image = images[0]
    oldest = _review(session_factory, image, ann, "good")
    middle = _review(session_factory, image, ann, "defect")
    newest = _review(session_factory, image, ann, "good")
    bobs = _review(session_factory, image, bob, "defect")
    assert _assert_consistent(session_factory)[image] == bobs
    for undone in (newest, middle, oldest):  # ann walks back; bob's later review stays current
        assert _undo(session_factory, ann) == undone
        assert _assert_consistent(session_factory)[image] == bobs
    assert _undo(session_factory, bob) == bobs
    assert _assert_consistent(session_factory)[image] is None


def test_undo_of_the_latest_falls_back_to_an_earlier_review_by_someone_else(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    ann, bob, _ = people
    image = images[0]
    bobs = _review(session_factory, image, bob, "defect")
    _review(session_factory, image, ann, "good")
    _review(session_factory, images[1], ann, "good")
    _undo(session_factory, ann)  # the review of images[1]
    _undo(session_factory, ann)  # the review of image
    current = _assert_consistent(session_factory)
    assert current[image] == bobs and current[images[1]] is None


def test_random_mix_of_reviews_corrections_and_undos(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    rng = random.Random(3)
    for _ in range(80):
        reviewer = rng.choice(people)
        if rng.random() < 0.35:
            _undo(session_factory, reviewer)
        else:
            _review(session_factory, rng.choice(images), reviewer, rng.choice(["good", "defect"]))
        _assert_consistent(session_factory)


def test_several_reviews_in_one_flush_and_backdated_reviews(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    """Direct ORM inserts (as tests and tools do) are maintained too, whatever their times."""
    ann, bob, _ = people
    now = utcnow()
    with session_factory() as session, session.begin():
        session.add_all(
            [
                Review(image_id=images[0], reviewer_id=ann, label="good", created_at=now),
                Review(image_id=images[0], reviewer_id=bob, label="defect", created_at=now),
                Review(image_id=images[1], reviewer_id=ann, label="defect", created_at=now),
            ]
        )
    old = Review(
        image_id=images[1],
        reviewer_id=bob,
        label="good",
        created_at=now - timedelta(days=1),
    )
    with session_factory() as session, session.begin():
        session.add(old)  # older than the current review: it must not become current
    current = _assert_consistent(session_factory)
    assert current[images[1]] != old.id


def test_a_loaded_image_sees_its_new_current_review_in_the_same_transaction(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    with session_factory() as session, session.begin():
        image = session.get_one(Image, images[0])
        assert image.current_review_id is None
        review = add_review(session, image_id=images[0], reviewer_id=people[0], label="defect")
        assert image.current_review_id == review.id
        assert image not in session.dirty  # not an ORM change to flush again
        undo = undo_last_review(session, reviewer_id=people[0])
        assert undo is not None and image.current_review_id is None
    _assert_consistent(session_factory)


def test_a_failed_transaction_leaves_the_current_review_alone(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    kept = _review(session_factory, images[0], people[0], "good")
    with pytest.raises(RuntimeError), session_factory() as session, session.begin():
        add_review(session, image_id=images[0], reviewer_id=people[1], label="defect")
        raise RuntimeError("the caller gives up")
    assert _assert_consistent(session_factory)[images[0]] == kept


def test_rebuild_repairs_reviews_written_around_the_orm(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    ann, bob, _ = people
    _review(session_factory, images[0], ann, "good")
    now = utcnow()
    with session_factory() as session, session.begin():
        session.execute(  # a bulk insert skips the mapper events
            insert(Review),
            [
                {"image_id": images[0], "reviewer_id": bob, "label": "defect", "created_at": now},
                {"image_id": images[2], "reviewer_id": bob, "label": "good", "created_at": now},
            ],
        )
    with session_factory() as session, session.begin():
        loaded = session.get_one(Image, images[2])
        assert loaded.current_review_id is None  # stale until rebuilt
        assert rebuild_current_reviews(session, [images[0]]) == 1
        assert rebuild_current_reviews(session) == len(images)
        assert loaded.current_review_id is not None  # expired and reloaded
    _assert_consistent(session_factory)


# --- concurrency (file SQLite: the writers queue on the database lock) ----------------------


def test_two_sessions_reviewing_one_image_at_once_leave_the_later_review_current(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    ann, bob, _ = people
    image = images[0]
    with session_factory() as first, session_factory() as second:
        add_review(first, image_id=image, reviewer_id=ann, label="good")  # holds the lock
        errors: list[BaseException] = []
        done: list[int] = []

        def second_reviewer() -> None:
            try:
                done.append(add_review(second, image_id=image, reviewer_id=bob, label="defect").id)
                second.commit()
            except BaseException as error:  # reported in the test's thread
                errors.append(error)

        thread = threading.Thread(target=second_reviewer)
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive()  # waiting for the first writer
        first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive() and errors == []
    with session_factory() as session:
        assert len(session.scalars(select(Review)).all()) == 2  # both reviews are kept
    assert _assert_consistent(session_factory)[image] == done[0]


def test_threads_reviewing_and_undoing_the_same_images_stay_consistent(
    session_factory: Factory, images: list[int], people: tuple[int, int, int]
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(people))

    def work(reviewer: int, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait(timeout=10)
            for _ in range(15):
                if rng.random() < 0.3:
                    _undo(session_factory, reviewer)
                else:
                    label = rng.choice(["good", "defect"])
                    _review(session_factory, rng.choice(images[:2]), reviewer, label)
        except BaseException as error:  # reported in the test's thread
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=(reviewer, seed)) for seed, reviewer in enumerate(people)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    _assert_consistent(session_factory)

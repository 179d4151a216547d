"""Replaying past reviews: ``add_review(created_at=...)`` and ``add_past_reviews``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db import Image, Review, current_label
from db.review_log import add_past_reviews, add_review

Factory = sessionmaker[Session]
MONDAY = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_past_reviews_are_dated_and_the_latest_one_is_current(
    session_factory: Factory, make_user: Callable[..., int], make_image: Callable[[int], int]
) -> None:
    ann, bob = make_user("ann"), make_user("bob")
    first, second = make_image(1), make_image(2)
    with session_factory() as session, session.begin():
        # Given out of order: the later correction must win, whatever the insert order.
        n = add_past_reviews(
            session,
            [
                {"image_id": first, "reviewer_id": bob, "label": "defect",
                 "created_at": MONDAY + timedelta(hours=8), "seconds_spent": 30.0},
                {"image_id": first, "reviewer_id": ann, "label": "good", "created_at": MONDAY},
                {"image_id": second, "reviewer_id": ann, "label": "good", "created_at": MONDAY},
            ],
        )  # fmt: skip
        assert n == 3
    with session_factory() as session:
        assert current_label(session, first).label == "defect"
        assert current_label(session, second).label == "good"
        image = session.get(Image, first)
        assert session.get(Review, image.current_review_id).reviewer_id == bob
        dates = session.scalars(select(Review.created_at).where(Review.image_id == first)).all()
        assert sorted(dates) == [MONDAY, MONDAY + timedelta(hours=8)]


def test_past_reviews_are_checked_before_anything_is_written(
    session_factory: Factory, make_user: Callable[..., int], make_image: Callable[[int], int]
) -> None:
    ann, image_id = make_user("ann"), make_image(1)
    bad_rows = (
        {"image_id": image_id, "reviewer_id": ann, "label": "maybe", "created_at": MONDAY},
        {"image_id": image_id, "reviewer_id": ann, "label": "good", "created_at": MONDAY,
         "defect_type": "crack"},
        {"image_id": image_id, "reviewer_id": ann, "label": "good",
         "created_at": MONDAY.replace(tzinfo=None)},
        {"image_id": image_id, "reviewer_id": ann, "label": "good"},
    )  # fmt: skip
    for bad in bad_rows:
        good = {"image_id": image_id, "reviewer_id": ann, "label": "good", "created_at": MONDAY}
        with pytest.raises(ValueError), session_factory() as session, session.begin():
            add_past_reviews(session, [good, bad])
    with pytest.raises(ValueError, match="timezone-aware"), session_factory() as session:
        add_review(
            session, image_id=image_id, reviewer_id=ann, label="good",
            created_at=MONDAY.replace(tzinfo=None),
        )  # fmt: skip
    with session_factory() as session:
        assert session.scalar(select(func.count(Review.id))) == 0
        assert add_past_reviews(session, []) == 0


def test_add_review_keeps_a_given_moment(
    session_factory: Factory, make_user: Callable[..., int], make_image: Callable[[int], int]
) -> None:
    ann, image_id = make_user("ann"), make_image(1)
    with session_factory() as session, session.begin():
        review = add_review(
            session, image_id=image_id, reviewer_id=ann, label="good", created_at=MONDAY
        )
        assert review.created_at == MONDAY
        assert session.get(Image, image_id).current_review_id == review.id

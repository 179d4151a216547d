"""``reviewer_labels``: each reviewer's latest counting label per part, kept from the log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import ReviewerLabel
from db.review_log import (
    add_past_reviews,
    add_review,
    rebuild_reviewer_labels,
    undo_last_review,
)

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def table(factory: sessionmaker[Session]) -> dict[tuple[int, int], str]:
    """``{(image id, reviewer id): label}`` as the table holds it."""
    with factory() as session:
        rows = session.execute(
            select(ReviewerLabel.image_id, ReviewerLabel.reviewer_id, ReviewerLabel.label)
        )
        return {(image, reviewer): label for image, reviewer, label in rows}


def test_labels_corrections_and_undos_keep_each_reviewers_latest_label(
    session_factory: sessionmaker[Session],
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> None:
    ines, mona = make_user("ines"), make_user("mona")
    part, other = make_image(1), make_image(2)

    def do(action: Callable[[Session], object]) -> dict[tuple[int, int], str]:
        with session_factory() as session, session.begin():
            action(session)
        return table(session_factory)

    assert do(lambda s: add_review(s, image_id=part, reviewer_id=ines, label="good")) == {
        (part, ines): "good"
    }
    assert do(lambda s: add_review(s, image_id=part, reviewer_id=mona, label="defect")) == {
        (part, ines): "good",
        (part, mona): "defect",
    }
    labelled = do(lambda s: add_review(s, image_id=part, reviewer_id=ines, label="defect"))
    assert labelled[(part, ines)] == "defect"  # a correction replaces the reviewer's label
    assert do(lambda s: undo_last_review(s, reviewer_id=ines))[(part, ines)] == "good"
    assert (part, ines) not in do(lambda s: undo_last_review(s, reviewer_id=ines))
    assert do(lambda s: add_review(s, image_id=other, reviewer_id=ines, label="good")) == {
        (part, mona): "defect",
        (other, ines): "good",
    }


def test_rebuild_after_past_reviews_gives_what_the_events_keep(
    session_factory: sessionmaker[Session],
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> None:
    ines, mona = make_user("ines"), make_user("mona")
    parts = [make_image(seed) for seed in range(1, 4)]
    history = [  # out of time order on purpose: the latest by time wins, not by insertion
        {"image_id": parts[0], "reviewer_id": ines, "label": "defect", "minutes": 5},
        {"image_id": parts[0], "reviewer_id": ines, "label": "good", "minutes": 1},
        {"image_id": parts[0], "reviewer_id": mona, "label": "good", "minutes": 2},
        {"image_id": parts[1], "reviewer_id": mona, "label": "defect", "minutes": 3},
    ]
    with session_factory() as session, session.begin():
        add_past_reviews(
            session,
            [
                {**row, "created_at": T0 + timedelta(minutes=row.pop("minutes"))}
                for row in (dict(item) for item in history)
            ],
        )
    assert table(session_factory) == {
        (parts[0], ines): "defect",
        (parts[0], mona): "good",
        (parts[1], mona): "defect",
    }
    with session_factory() as session, session.begin():
        add_review(session, image_id=parts[2], reviewer_id=ines, label="good")
    kept = table(session_factory)
    with session_factory() as session, session.begin():
        assert rebuild_reviewer_labels(session) == len(kept)
    assert table(session_factory) == kept

"""Decided parts in the store: one row per image, from its first prediction, with its label.

The project (threshold 1.0) holds:

    part        predictions (time, region, odds, audit, score)                  current label
    rescored    T0 deep_pass 0.05 audited 0.2; T0+2d sent_to_human 2.0         good
    same_time   T0+1h near_pass 0.2 0.5; T0+1h sent_to_human 2.0 (higher id)    none
    out_of_order (stored first) T0+3d sent_to_human; then T0+1d auto_accepted   defect (relabelled)
    legacy      T0+5d no region, score 2.0                                      defect
    unscored    none                                                            (left out)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import T0, add_image, add_prediction, add_version

from db import Project, User
from db.loop_parts import LoopCount, LoopPart, loop_part_counts, loop_parts
from db.review_queue import record_review

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def label(factory: sessionmaker[Session], image_id: int, user_id: int, value: str) -> None:
    with factory() as session, session.begin():
        record_review(session, image_id=image_id, user=session.get(User, user_id), label=value)


def region(name: str, odds: float, audit: bool = False) -> dict[str, object]:
    return {"decision_region": name, "audit_probability": odds, "audit": audit}


@pytest.fixture
def parts(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable[..., int]
) -> dict[str, int]:
    """The project in the module docstring; returns image ids by name."""
    ines = make_user("ines")
    version = add_version(session_factory, project_id)
    names = ["rescored", "same_time", "out_of_order", "legacy", "unscored"]
    images = {name: add_image(session_factory, project_id, n) for n, name in enumerate(names)}

    def predict(name: str, score: float, at: datetime, **fields: object) -> None:
        add_prediction(session_factory, images[name], version, score, at=at, **fields)

    predict("rescored", 0.2, T0, **region("deep_pass", 0.05, audit=True))
    predict("rescored", 2.0, T0 + 2 * DAY, **region("sent_to_human", 1.0))
    predict("same_time", 0.5, T0 + HOUR, **region("near_pass", 0.2))
    predict("same_time", 2.0, T0 + HOUR, **region("sent_to_human", 1.0))
    predict("out_of_order", 2.0, T0 + 3 * DAY, **region("sent_to_human", 1.0))
    predict("out_of_order", 1.5, T0 + DAY, **region("auto_accepted", 0.1, audit=True))
    predict("legacy", 2.0, T0 + 5 * DAY)

    other = Project(name="other")
    with session_factory() as session, session.begin():
        session.add(other)
        session.flush()
        other_id = other.id
    other_image = add_image(session_factory, other_id, 99)
    other_version = add_version(session_factory, other_id)
    add_prediction(session_factory, other_image, other_version, 0.1, at=T0)

    label(session_factory, images["rescored"], ines, "good")
    label(session_factory, images["out_of_order"], ines, "good")
    label(session_factory, images["out_of_order"], ines, "defect")
    label(session_factory, images["legacy"], ines, "defect")
    images["version"] = version
    return images


def test_each_part_comes_once_from_its_first_prediction_with_its_current_label(
    session_factory: sessionmaker[Session], project_id: int, parts: dict[str, int]
) -> None:
    with session_factory() as session:
        rows = loop_parts(session, project_id)
    version = parts["version"]

    assert rows == [
        LoopPart(parts["rescored"], T0, "deep_pass", 0.05, True, "good", "good", version),
        LoopPart(parts["same_time"], T0 + HOUR, "near_pass", 0.2, False, "good", None, version),
        LoopPart(
            parts["out_of_order"], T0 + DAY, "auto_accepted", 0.1, True, "defect", "defect", version
        ),
        LoopPart(parts["legacy"], T0 + 5 * DAY, None, None, False, "defect", "defect", version),
    ]
    assert all(row.decided_at.tzinfo is not None for row in rows)


def test_since_and_until_bound_when_the_line_decided_the_part(
    session_factory: sessionmaker[Session], project_id: int, parts: dict[str, int]
) -> None:
    with session_factory() as session:
        later = loop_parts(session, project_id, since=T0 + HOUR)
        window = loop_parts(session, project_id, since=T0 + HOUR, until=T0 + 5 * DAY)
        none = loop_parts(session, project_id, until=T0)

    # "rescored" was decided at T0: its re-score at T0 + 2 days does not bring it in.
    assert [row.image_id for row in later] == [
        parts["same_time"],
        parts["out_of_order"],
        parts["legacy"],
    ]
    assert [row.image_id for row in window] == [parts["same_time"], parts["out_of_order"]]
    assert none == []


@pytest.mark.parametrize("bound", ["since", "until"])
def test_a_naive_bound_is_refused(
    session_factory: sessionmaker[Session], project_id: int, bound: str
) -> None:
    with session_factory() as session, pytest.raises(ValueError, match="timezone-aware"):
        loop_parts(session, project_id, **{bound: datetime(2025, 3, 1)})


def test_an_aware_bound_in_another_zone_counts_in_utc(
    session_factory: sessionmaker[Session], project_id: int, parts: dict[str, int]
) -> None:
    paris = datetime(2025, 3, 1, 3, tzinfo=timezone(HOUR))  # 02:00 UTC
    with session_factory() as session:
        rows = loop_parts(session, project_id, since=paris)

    assert parts["same_time"] not in [row.image_id for row in rows]  # decided at 01:00 UTC
    assert [row.image_id for row in rows] == [parts["out_of_order"], parts["legacy"]]


def test_counts_group_the_same_parts_by_hour_or_day_and_what_the_estimate_reads(
    session_factory: sessionmaker[Session], project_id: int, parts: dict[str, int]
) -> None:
    with session_factory() as session:
        listed = loop_parts(session, project_id)
        by_hour = loop_part_counts(session, project_id, by="hour")
        by_day = loop_part_counts(session, project_id)
        since = loop_part_counts(session, project_id, since=T0 + HOUR)
        with pytest.raises(ValueError, match="by"):
            loop_part_counts(session, project_id, by="week")  # type: ignore[arg-type]

    version = parts["version"]
    assert sorted(by_hour) == sorted(
        [
            LoopCount(T0, "deep_pass", 0.05, True, "good", "good", version, 1),
            LoopCount(T0 + HOUR, "near_pass", 0.2, False, "good", None, version, 1),
            LoopCount(T0 + DAY, "auto_accepted", 0.1, True, "defect", "defect", version, 1),
            LoopCount(T0 + 5 * DAY, None, None, False, "defect", "defect", version, 1),
        ]
    )
    # By day, the first two parts (T0 and T0 + 1 h) fall on the same day but differ in what
    # the estimate reads: still two rows, both dated midnight.
    assert sorted((c.decided_in, c.region, c.n) for c in by_day)[:2] == [
        (T0, "deep_pass", 1),
        (T0, "near_pass", 1),
    ]
    assert sum(c.n for c in by_day) == len(listed) == 4
    assert all(c.decided_in.tzinfo is not None for c in by_day + by_hour)
    assert sum(c.n for c in since) == 3  # "rescored" was decided at T0


def test_identical_parts_are_counted_once_with_their_number(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    version = add_version(session_factory, project_id)
    for n in range(5):
        image = add_image(session_factory, project_id, n)
        add_prediction(
            session_factory,
            image,
            version,
            0.2,
            at=T0 + timedelta(minutes=n),
            **region("deep_pass", 0.02),
        )
    with session_factory() as session:
        counts = loop_part_counts(session, project_id, by="hour")
    assert counts == [LoopCount(T0, "deep_pass", 0.02, False, "good", None, version, 5)]

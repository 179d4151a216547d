"""Review load, defect types, second opinions and good-part scores on a hand-built project.

One active version (threshold 1.0). First inspections (Mon 3 / Tue 4 March 2025):

    image  score  day  verdict  audit   reviews (current label last)
    1      3.0    Mon  defect           ines defect crack, mona defect crack
    2      0.5    Mon  good     yes     ines good; mona defect, undone
    3      0.2    Mon  good             -
    4      2.0    Tue  defect           ines good, mona defect scratch
    5      0.1    Tue  good             -
    6      0.3    Tue  good             -

Image 1 is scored again on Tuesday (a re-score: not a new part).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_prediction, add_version

from db import Review
from db.dashboard_views import (
    defect_type_counts,
    good_part_scores,
    pair_label_tables,
    second_opinions,
)

MON = datetime(2025, 3, 3, 9, tzinfo=UTC)
TUE = MON + timedelta(days=1)


@pytest.fixture
def world(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> dict[str, int]:
    ines, mona = make_user("ines"), make_user("mona")
    version = add_version(session_factory, project_id)
    images = [make_image(seed) for seed in range(1, 7)]
    firsts = [(3.0, MON), (0.5, MON), (0.2, MON), (2.0, TUE), (0.1, TUE), (0.3, TUE)]
    for image, (score, at) in zip(images, firsts, strict=True):
        add_prediction(session_factory, image, version, score, at=at, audit=image == images[1])
    add_prediction(session_factory, images[0], version, 2.9, at=TUE)  # a re-score
    with session_factory() as session, session.begin():

        def review(index: int, user: int, label: str, minutes: int, kind: str | None = None):
            row = Review(
                image_id=images[index],
                reviewer_id=user,
                label=label,
                defect_type=kind,
                created_at=TUE + timedelta(hours=2, minutes=minutes),
            )
            session.add(row)
            session.flush()
            return row

        review(0, ines, "defect", 1, "crack")
        review(0, mona, "defect", 2, "crack")
        review(1, ines, "good", 3)
        undone = review(1, mona, "defect", 4)
        session.add(
            Review(
                image_id=images[1],
                reviewer_id=mona,
                is_undo=True,
                supersedes_id=undone.id,
                created_at=TUE + timedelta(hours=3),
            )
        )
        review(3, ines, "good", 5)
        review(3, mona, "defect", 6, "scratch")
    return {"version": version, **{f"img{i + 1}": v for i, v in enumerate(images)}}


def test_defect_types_are_counted_by_current_label(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        assert defect_type_counts(session, project_id) == [("crack", 1), ("scratch", 1)]


def test_second_opinions_hold_each_reviewers_latest_label_without_undone_ones(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        opinions = second_opinions(session, project_id)
    assert opinions == {
        world["img1"]: {"ines": "defect", "mona": "defect"},
        world["img4"]: {"ines": "good", "mona": "defect"},
    }


def test_pair_label_tables_count_the_second_opinions_label_pairs(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        tables = pair_label_tables(session, project_id)
    # img1: both said defect; img4: ines good, mona defect; undone labels do not count.
    assert tables == {("ines", "mona"): {("defect", "defect"): 1, ("good", "defect"): 1}}


def test_good_part_scores_are_confirmed_or_passed_parts_first_scores(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        scored = good_part_scores(session, project_id, world["version"])
    assert [score for _, score in scored] == [0.5, 0.2, 0.1, 0.3]
    assert scored[0][0] == MON and scored[-1][0] == TUE


def test_good_part_scores_ends_keeps_the_first_and_last_parts_only(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        ends = good_part_scores(session, project_id, world["version"], ends=1)
        all_of_them = good_part_scores(session, project_id, world["version"], ends=2)
    assert [score for _, score in ends] == [0.5, 0.3]
    assert ends[0][0] == MON and ends[-1][0] == TUE
    assert [score for _, score in all_of_them] == [0.5, 0.2, 0.1, 0.3]  # 4 <= 2 * 2: all

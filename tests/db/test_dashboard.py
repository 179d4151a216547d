"""Dashboard numbers on a small hand-built project whose answers are worked out by hand.

Versions: v1 (threshold 1.0, retired) and v2 (threshold 2.0, active). Latest scores:

    image  v1    v2    current label (review day)
    1      3.0   2.5   defect (Mon 3 March, ines)
    2      0.5   0.4   good   (Mon 3 March, ines)
    3      2.0   1.0   defect (Tue 11 March, mona; was good on 4 March)
    4      0.2   -     none   (mona's defect on 4 March was undone)
    5      -     3.0   none
    6      -     1.0   none
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import ModelVersion, Prediction, Review, activate_model_version, register_model_version
from db.dashboard import (
    confusion,
    data_version,
    error_rates_over_time,
    labelled_scores,
    period_start,
    review_counts,
    reviewed_outcomes,
    score_distribution,
    throughput,
)

MON = datetime(2025, 3, 3, 9, tzinfo=UTC)
TUE = datetime(2025, 3, 4, 9, tzinfo=UTC)
NEXT_TUE = datetime(2025, 3, 11, 23, 59, tzinfo=UTC)


@pytest.fixture
def world(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> dict[str, int]:
    ines, mona = make_user("ines"), make_user("mona", "manager")
    images = [make_image(seed) for seed in range(1, 7)]
    with session_factory() as session, session.begin():
        versions = [
            register_model_version(
                session,
                project_id=project_id,
                kind="patchcore",
                artifact_path="m",
                metrics={},
                threshold=threshold,
                training_snapshot={},
            ).id
            for threshold in (1.0, 2.0)
        ]
        activate_model_version(session, version_id=versions[1], user=None, system=True)
        scores = {0: (3.0, 2.5), 1: (0.5, 0.4), 2: (2.0, 1.0), 3: (0.2, None), 4: (None, 3.0)}
        scores[5] = (None, 1.0)
        for index, pair in scores.items():
            for version_id, threshold, score in zip(versions, (1.0, 2.0), pair, strict=True):
                if score is not None:
                    session.add(
                        Prediction(
                            image_id=images[index],
                            model_version_id=version_id,
                            score=score,
                            threshold=threshold,
                            verdict="defect" if score >= threshold else "good",
                            created_at=MON.replace(hour=1),
                        )
                    )

        def review(index: int, user: int, label: str, at: datetime, seconds: float) -> Review:
            row = Review(
                image_id=images[index],
                reviewer_id=user,
                label=label,
                seconds_spent=seconds,
                created_at=at,
            )
            session.add(row)
            session.flush()
            return row

        review(0, ines, "defect", MON, 10)
        review(1, ines, "good", MON, 20)
        review(2, ines, "good", TUE, 30)
        undone = review(3, mona, "defect", TUE, 8)
        session.add(
            Review(
                image_id=images[3],
                reviewer_id=mona,
                is_undo=True,
                supersedes_id=undone.id,
                created_at=TUE.replace(hour=10),
            )
        )
        review(2, mona, "defect", NEXT_TUE, 5)
    return {
        "v1": versions[0],
        "v2": versions[1],
        "ines": ines,
        **{f"img{i + 1}": v for i, v in enumerate(images)},
    }


def test_reviewed_outcomes_pair_latest_scores_with_current_labels(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        outcomes = reviewed_outcomes(session, project_id)
        only_v1 = reviewed_outcomes(session, project_id, model_version_id=world["v1"])
    assert [(o.image_id, o.version, o.label, o.verdict) for o in outcomes] == [
        (world["img1"], 1, "defect", "defect"),
        (world["img1"], 2, "defect", "defect"),
        (world["img2"], 1, "good", "good"),
        (world["img2"], 2, "good", "good"),
        (world["img3"], 1, "defect", "defect"),
        (world["img3"], 2, "defect", "good"),
    ]
    last = outcomes[-1]
    assert (last.reviewer, last.reviewed_at, last.score, last.threshold) == (
        "mona",
        NEXT_TUE,
        1.0,
        2.0,
    )
    assert last.model_version_id == world["v2"] and last.predicted_at.tzinfo is not None
    assert [o.version for o in only_v1] == [1, 1, 1]


def test_error_rates_by_day_and_week(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        daily = error_rates_over_time(session, project_id)
        weekly = error_rates_over_time(session, project_id, period="week")
        with pytest.raises(ValueError, match="period"):
            error_rates_over_time(session, project_id, period="month")
    expected = [
        (date(2025, 3, 3), 1, 0.0, 0.0, 1, 1),
        (date(2025, 3, 3), 2, 0.0, 0.0, 1, 1),
        (date(2025, 3, 11), 1, 0.0, None, 1, 0),
        (date(2025, 3, 11), 2, 1.0, None, 1, 0),
    ]
    as_tuples = [
        (p.period_start, p.model_number, p.fnr, p.fpr, p.n_defect, p.n_good) for p in daily
    ]
    assert as_tuples == expected
    assert [p.period_start for p in weekly] == [date(2025, 3, 3)] * 2 + [date(2025, 3, 10)] * 2
    assert period_start(NEXT_TUE, "week") == date(2025, 3, 10)


def test_counts_confusion_and_scores(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        counts = review_counts(session, project_id)
        active = confusion(session, project_id)
        first = confusion(session, project_id, world["v1"])
        distribution = score_distribution(session, project_id)
        labelled = labelled_scores(session, project_id, world["v1"])
    assert counts == {"total": 6, "reviewed": 3, "unreviewed": 3, "flagged_unreviewed": 1}
    assert active == {"tp": 1, "fp": 0, "tn": 1, "fn": 1}
    assert first == {"tp": 2, "fp": 0, "tn": 1, "fn": 0}
    points, threshold = distribution
    assert threshold == 2.0
    assert sorted(points, key=lambda p: (p[0], p[1] or "")) == [
        (0.4, "good"),
        (1.0, None),
        (1.0, "defect"),
        (2.5, "defect"),
        (3.0, None),
    ]
    assert sorted(labelled) == [(0.5, "good"), (2.0, "defect"), (3.0, "defect")]


def test_throughput_counts_labels_not_undo_rows(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        daily = throughput(session, project_id)
        weekly = throughput(session, project_id, period="week")
        recent = throughput(session, project_id, since=NEXT_TUE.replace(hour=0))
    rows = [(r["period_start"], r["reviewer"], r["n_reviews"], r["median_seconds"]) for r in daily]
    assert rows == [
        (date(2025, 3, 3), "ines", 2, 15.0),
        (date(2025, 3, 4), "ines", 1, 30.0),
        (date(2025, 3, 4), "mona", 1, 8.0),
        (date(2025, 3, 11), "mona", 1, 5.0),
    ]
    assert [(r["reviewer"], r["n_reviews"], r["median_seconds"]) for r in weekly] == [
        ("ines", 3, 20.0),
        ("mona", 1, 8.0),
        ("mona", 1, 5.0),
    ]
    assert [r["period_start"] for r in recent] == [date(2025, 3, 11)]


def test_data_version_moves_with_reviews_and_thresholds(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    with session_factory() as session:
        before = data_version(session, project_id)
        assert data_version(session, project_id) == before
        hash(before)
    with session_factory() as session, session.begin():
        session.add(Review(image_id=world["img5"], reviewer_id=world["ines"], label="good"))
    with session_factory() as session:
        after_review = data_version(session, project_id)
        assert after_review != before
    with session_factory() as session, session.begin():
        session.get(ModelVersion, world["v2"]).threshold = 2.5
    with session_factory() as session:
        assert data_version(session, project_id) != after_review


def test_an_empty_project_gives_empty_numbers(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session:
        assert reviewed_outcomes(session, project_id) == []
        assert error_rates_over_time(session, project_id) == []
        assert review_counts(session, project_id)["total"] == 0
        assert confusion(session, project_id) == {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
        assert score_distribution(session, project_id) == ([], None)
        assert throughput(session, project_id) == []


def test_throughput_medians_skip_untimed_reviews_and_average_the_middle_two(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> None:
    reviewer = make_user("ines")
    images = [make_image(seed) for seed in range(1, 10)]
    days = {  # day -> seconds spent per review (None: not recorded)
        MON: [4.0, None, 10.0, 7.0],  # odd timed count: the middle one
        TUE: [1.0, 2.0, 3.0, 10.0],  # even: the mean of the middle two
        NEXT_TUE: [None],  # nothing timed: no median
    }
    with session_factory() as session, session.begin():
        image = iter(images)
        for day, spent in days.items():
            for seconds in spent:
                session.add(
                    Review(
                        image_id=next(image),
                        reviewer_id=reviewer,
                        label="good",
                        seconds_spent=seconds,
                        created_at=day,
                    )
                )
    with session_factory() as session:
        rows = throughput(session, project_id)
    assert [(r["period_start"], r["n_reviews"], r["median_seconds"]) for r in rows] == [
        (date(2025, 3, 3), 4, 7.0),
        (date(2025, 3, 4), 4, 2.5),
        (date(2025, 3, 11), 1, None),
    ]


def test_rates_and_confusion_follow_the_model_lineage(
    session_factory: sessionmaker[Session], project_id: int, world: dict[str, int]
) -> None:
    """A recalibration of v2 is v2.1: its parts count with model 2's, each image once.

    v2.1 is active; it re-scored images 1 and 3 later than v2, and image 2 earlier (so v2's
    prediction of image 2 stays the model's latest).
    """
    with session_factory() as session, session.begin():
        revision = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="m",
            metrics={"same_model_as": [world["v2"]]},
            threshold=2.0,
            training_snapshot={},
        )
        assert (revision.model_number, revision.revision) == (2, 1)
        activate_model_version(session, version_id=revision.id, user=None, system=True)
        for image, score, at in (
            ("img1", 2.6, TUE.replace(hour=2)),
            ("img3", 2.2, TUE.replace(hour=2)),
            ("img2", 2.1, MON.replace(hour=0)),
        ):
            session.add(
                Prediction(
                    image_id=world[image],
                    model_version_id=revision.id,
                    score=score,
                    threshold=2.0,
                    verdict="defect",
                    created_at=at,
                )
            )
    with session_factory() as session:
        daily = error_rates_over_time(session, project_id)
        matrix = confusion(session, project_id)
        single = confusion(session, project_id, world["v1"])
    assert [(p.period_start, p.model, p.n_defect, p.n_missed, p.n_good) for p in daily] == [
        (date(2025, 3, 3), "v1", 1, 0, 1),
        (date(2025, 3, 3), "v2", 1, 0, 1),  # image 1 once, though two revisions scored it
        (date(2025, 3, 11), "v1", 1, 0, 0),
        (date(2025, 3, 11), "v2", 1, 0, 0),  # v2.1's later verdict on image 3 counts
    ]
    assert daily[1].fpr == 0.0  # v2's good verdict on image 2 is the model's latest
    assert matrix == {"tp": 2, "fp": 0, "tn": 1, "fn": 0}  # every revision of model 2
    assert single == {"tp": 2, "fp": 0, "tn": 1, "fn": 0}  # v1 is a model of its own

"""The review queue: what is in it, in which order, and labelling from it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_prediction, add_version

from db import (
    PermissionDenied,
    Prediction,
    Project,
    Review,
    User,
    current_label,
    register_model_version,
    set_threshold,
)
from db.images import get_or_create_image
from db.review_queue import (
    DEFAULT_NEAR_MARGIN,
    flagged_by_model,
    queue_size,
    record_review,
    review_queue,
    undo_last,
)


def load_user(factory: sessionmaker[Session], user_id: int) -> User:
    with factory() as session:
        return session.get(User, user_id)


@pytest.fixture
def inspector(session_factory: sessionmaker[Session], make_user: Callable[..., int]) -> User:
    return load_user(session_factory, make_user("ines", "inspector"))


@pytest.fixture
def scored(
    session_factory: sessionmaker[Session], project_id: int, make_image: Callable[[int], int]
) -> dict[str, int]:
    """Active v1 (threshold 1.0): images with scores 1.5, 3.0, 0.95, 0.5 and a re-scored one."""
    version = add_version(session_factory, project_id, 1.0, active=True)
    images = {name: make_image(seed) for seed, name in enumerate(["mid", "high", "near", "far"])}
    for name, score in {"mid": 1.5, "high": 3.0, "near": 0.95, "far": 0.5}.items():
        add_prediction(session_factory, images[name], version, score)
    images["rescored"] = make_image(10)
    add_prediction(session_factory, images["rescored"], version, 5.0, minutes=0)
    add_prediction(
        session_factory, images["rescored"], version, 0.2, minutes=5
    )  # latest: far below
    images["version"] = version
    return images


def test_flagged_parts_only_by_default_and_near_threshold_goods_with_a_near_band(
    session_factory: sessionmaker[Session], project_id: int, scored: dict[str, int]
) -> None:
    assert DEFAULT_NEAR_MARGIN == 0.0  # near-threshold parts come in through their audit odds
    with session_factory() as session:
        queue = review_queue(session, project_id)
        assert [item.image_id for item in queue] == [scored["high"], scored["mid"]]
        assert [item.verdict for item in queue] == ["defect", "defect"]
        assert queue[0].score == 3.0 and queue[0].threshold == 1.0
        assert queue[0].original_name == "part-1.png"
        assert queue[0].stored_path.startswith("images/")
        assert queue[0].created_at.tzinfo is not None
        assert queue_size(session, project_id) == 2
        assert len(review_queue(session, project_id, limit=1)) == 1

        # An explicit near band still brings the good parts just below the threshold in.
        banded = review_queue(session, project_id, near_margin=0.1)
        assert [item.image_id for item in banded] == [scored["high"], scored["mid"], scored["near"]]
        assert [item.verdict for item in banded] == ["defect", "defect", "good"]
        assert queue_size(session, project_id, near_margin=0.1) == 3
        assert queue_size(session, project_id, near_margin=0.6) == 4  # 0.5 >= 1.0 * 0.4
        with pytest.raises(ValueError, match="near_margin"):
            review_queue(session, project_id, near_margin=-1)


def test_a_near_threshold_good_enters_the_queue_only_when_drawn_for_audit(
    session_factory: sessionmaker[Session],
    project_id: int,
    scored: dict[str, int],
    make_image: Callable[[int], int],
) -> None:
    drawn = make_image(20)
    add_prediction(
        session_factory,
        drawn,
        scored["version"],
        0.97,
        audit=True,
        decision_region="near_pass",
        audit_probability=0.2,
    )
    with session_factory() as session:
        queue = review_queue(session, project_id)
    assert [item.image_id for item in queue] == [scored["high"], scored["mid"], drawn]
    assert [(item.verdict, item.audit) for item in queue] == [
        ("defect", False),
        ("defect", False),
        ("good", True),  # the audit sample comes after the flagged parts
    ]
    assert scored["near"] not in {item.image_id for item in queue}  # 0.95, not drawn


def test_reviewed_images_leave_and_undone_ones_return(
    session_factory: sessionmaker[Session],
    project_id: int,
    scored: dict[str, int],
    inspector: User,
) -> None:
    with session_factory() as session, session.begin():
        record_review(
            session, image_id=scored["high"], user=inspector, label="defect", seconds_spent=4
        )
    with session_factory() as session:
        assert scored["high"] not in [item.image_id for item in review_queue(session, project_id)]
    with session_factory() as session, session.begin():
        assert undo_last(session, user=inspector) is not None
    with session_factory() as session:
        assert review_queue(session, project_id)[0].image_id == scored["high"]


def test_active_version_wins_and_current_threshold_is_used(
    session_factory: sessionmaker[Session],
    project_id: int,
    scored: dict[str, int],
    make_user: Callable[..., int],
) -> None:
    other = add_version(session_factory, project_id, 10.0, active=False)
    add_prediction(session_factory, scored["far"], other, 50.0, minutes=30, threshold=10.0)
    with session_factory() as session:  # the newer prediction is from an inactive version
        assert queue_size(session, project_id) == 2
        assert scored["far"] not in {item.image_id for item in review_queue(session, project_id)}
    manager = load_user(session_factory, make_user("mona", "manager"))
    with session_factory() as session, session.begin():
        set_threshold(session, version_id=scored["version"], threshold=0.9, user=manager)
    with session_factory() as session:
        queue = review_queue(session, project_id)
        # 0.95 is flagged against the version's current threshold: it comes in, as a defect
        assert [item.image_id for item in queue] == [scored["high"], scored["mid"], scored["near"]]
        assert [item.verdict for item in queue] == ["defect", "defect", "defect"]
        assert {item.threshold for item in queue} == {0.9}


def test_one_part_is_judged_flagged_as_the_queue_judges_it_labelled_or_not(
    session_factory: sessionmaker[Session],
    project_id: int,
    scored: dict[str, int],
    inspector: User,
    make_user: Callable[..., int],
    make_image: Callable[[int], int],
) -> None:
    names = ("mid", "high", "near", "far", "rescored")
    unscored = make_image(42)
    with session_factory() as session:
        assert [flagged_by_model(session, scored[name]) for name in names] == [
            True,
            True,
            False,
            False,
            False,  # its latest prediction passes it
        ]
        assert not flagged_by_model(session, unscored) and not flagged_by_model(session, 9999)
    other = add_version(session_factory, project_id, 10.0, active=False)
    add_prediction(session_factory, scored["far"], other, 50.0, minutes=30, threshold=10.0)
    manager = load_user(session_factory, make_user("mona", "manager"))
    with session_factory() as session, session.begin():
        record_review(session, image_id=scored["mid"], user=inspector, label="good")
        set_threshold(session, version_id=scored["version"], threshold=0.9, user=manager)
    with session_factory() as session:
        assert flagged_by_model(session, scored["mid"])  # labelled: judged all the same
        assert flagged_by_model(session, scored["near"])  # the version's current threshold
        assert not flagged_by_model(session, scored["far"])  # the active version's prediction


def test_without_an_active_version_the_latest_prediction_counts(
    session_factory: sessionmaker[Session], png: Callable[..., bytes]
) -> None:
    with session_factory() as session, session.begin():
        project = Project(name="no-model-yet")
        session.add(project)
        session.flush()
        project_id = project.id
        a, b = (
            get_or_create_image(
                session,
                data=png(seed),
                original_name=f"{seed}.png",
                project_id=project_id,
                source="upload",
                width=8,
                height=8,
            )[0].id
            for seed in (1, 2)
        )
    first = add_version(session_factory, project_id, 1.0, active=False)
    second = add_version(session_factory, project_id, 2.0, active=False)
    add_prediction(session_factory, a, first, 5.0, minutes=0)
    add_prediction(session_factory, a, second, 0.1, minutes=10, threshold=2.0)  # latest: far below
    add_prediction(session_factory, b, first, 3.0, minutes=0)
    with session_factory() as session:
        queue = review_queue(session, project_id)
        assert [(item.image_id, item.threshold, item.verdict) for item in queue] == [
            (b, 1.0, "defect")
        ]


def test_record_review_validates_and_extends_the_vocabulary(
    session_factory: sessionmaker[Session],
    project_id: int,
    scored: dict[str, int],
    inspector: User,
) -> None:
    with session_factory() as session, session.begin():
        review = record_review(
            session,
            image_id=scored["mid"],
            user=inspector,
            label="defect",
            defect_type="  burn mark ",
            note="  ",
        )
        assert review.defect_type == "burn mark" and review.note is None
        assert session.get(Project, project_id).defect_types == ["crack", "dark", "burn mark"]
        with pytest.raises(ValueError, match="only be given with the label 'defect'"):
            record_review(
                session, image_id=scored["mid"], user=inspector, label="good", defect_type="x"
            )
        with pytest.raises(ValueError, match="'good' or 'defect'"):
            record_review(session, image_id=scored["mid"], user=inspector, label="ok")
        with pytest.raises(ValueError, match="zero or more"):
            record_review(
                session, image_id=scored["mid"], user=inspector, label="good", seconds_spent=-1
            )
        with pytest.raises(LookupError):
            record_review(session, image_id=9999, user=inspector, label="good")
        with pytest.raises(PermissionDenied):
            record_review(session, image_id=scored["mid"], user=None, label="good")
    with session_factory() as session:
        assert current_label(session, scored["mid"]).label == "defect"


def test_undo_last_needs_a_reviewer(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, pytest.raises(PermissionDenied):
        undo_last(session, user=None)


def test_parts_not_yet_scored_by_a_newly_active_version_stay_in_the_queue(
    session_factory: sessionmaker[Session],
    project_id: int,
    scored: dict[str, int],
) -> None:
    with session_factory() as session:
        before = [item.image_id for item in review_queue(session, project_id)]
    newer = add_version(session_factory, project_id, 1.0, active=True)  # e.g. an instant update
    add_prediction(session_factory, scored["high"], newer, 0.2, minutes=30)  # re-scored: now passes

    with session_factory() as session:
        queue = review_queue(session, project_id)
    assert scored["high"] not in [item.image_id for item in queue]
    assert [item.image_id for item in queue] == [i for i in before if i != scored["high"]]
    assert {item.prediction_id for item in queue}.isdisjoint({None})


def test_scorer_decided_parts_are_judged_by_probability_most_uncertain_first(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> None:
    detector = add_version(session_factory, project_id, threshold=1.0, active=True)
    with session_factory() as session, session.begin():
        scorer = register_model_version(
            session,
            project_id=project_id,
            kind="feedback_scorer",
            artifact_path="models/cells/scorer",
            metrics={},
            threshold=0.4,
            training_snapshot={},
        ).id

    def decided(seed: int, score: float, probability: float, *, audit: bool = False) -> int:
        """A part the screen flagged (score >= 1.0) that the scorer triaged."""
        image_id = make_image(seed)
        sent = probability >= 0.4
        with session_factory() as session, session.begin():
            session.add(
                Prediction(
                    image_id=image_id,
                    model_version_id=detector,
                    score=score,
                    threshold=1.0,
                    verdict="defect" if sent else "good",
                    scorer_version_id=scorer,
                    defect_probability=probability,
                    audit=audit,
                    decision_region="sent_to_human" if sent else "auto_accepted",
                    audit_probability=1.0 if sent else 0.1,
                )
            )
        return image_id

    confident = decided(1, 1.2, 0.95)  # sent to a human
    borderline = decided(2, 5.0, 0.45)  # sent to a human, close to the scorer's threshold
    near = decided(3, 5.0, 0.38)  # auto-accepted, but within 10% of the threshold
    cleared = decided(4, 9.0, 0.10)  # flagged by the screen; the scorer auto-accepts it
    accepted_audit = decided(5, 1.1, 0.05, audit=True)  # auto-accepted, drawn for audit
    passed_audit = make_image(7)  # passed by the screen (never triaged), drawn for audit
    add_prediction(
        session_factory,
        passed_audit,
        detector,
        0.1,
        audit=True,
        decision_region="deep_pass",
        audit_probability=0.02,
    )
    detector_only = make_image(6)
    add_prediction(session_factory, detector_only, detector, 3.0)  # no vector: the screen decided

    with session_factory() as session:
        queue = review_queue(session, project_id)
        banded = review_queue(session, project_id, near_margin=0.1)
    # sent to a human (most uncertain first, then the detector's), then the audits
    order = [borderline, confident, detector_only, accepted_audit, passed_audit]
    assert [item.image_id for item in queue] == order
    assert {near, cleared}.isdisjoint({item.image_id for item in queue})  # auto-accepted
    assert [item.image_id for item in banded] == [near, *order]  # a near band: most uncertain
    assert cleared not in {item.image_id for item in banded}
    by_image = {item.image_id: item for item in banded}
    assert by_image[confident].verdict == "defect" and by_image[near].verdict == "good"
    assert by_image[accepted_audit].verdict == "good" and by_image[accepted_audit].audit
    assert by_image[near].defect_probability == pytest.approx(0.38)
    assert by_image[near].probability_threshold == pytest.approx(0.4)
    assert by_image[detector_only].defect_probability is None
    assert by_image[detector_only].verdict == "defect"
    assert by_image[passed_audit].probability_threshold is None
    with session_factory() as session:  # one part at a time, as the queue judged it
        judged = [confident, borderline, near, cleared, accepted_audit, passed_audit, detector_only]
        assert [flagged_by_model(session, i) for i in judged] == [
            by_image[i].verdict == "defect" if i in by_image else False for i in judged
        ]

    manager = load_user(session_factory, make_user("mia", "manager"))
    with session_factory() as session, session.begin():  # a manager moves the scorer threshold
        set_threshold(session, version_id=scorer, threshold=0.05, user=manager)
    with session_factory() as session:
        assert cleared in {item.image_id for item in review_queue(session, project_id)}
        assert flagged_by_model(session, cleared)  # p 0.10 >= the scorer's 0.05 now
        assert flagged_by_model(session, near) and flagged_by_model(session, detector_only)


def test_a_defect_box_is_checked_and_stored_with_the_review(
    session_factory: sessionmaker[Session], scored: dict[str, int], inspector: User
) -> None:
    with session_factory() as session, session.begin():
        review = record_review(
            session,
            image_id=scored["mid"],
            user=inspector,
            label="defect",
            region={"x": 0.25, "y": "0.5", "w": 0.5, "h": 0.505},  # pokes out by rounding
        )
        review_id = review.id
        for bad, message in [
            ({"x": 0.1, "y": 0.1, "w": 0, "h": 0.2}, "positive width"),
            ({"x": 0.9, "y": 0.1, "w": 0.5, "h": 0.2}, "inside the image"),
            ({"x": 0.1, "y": 0.1, "w": 0.2}, "x, y, w and h"),
            ({"x": "left", "y": 0.1, "w": 0.2, "h": 0.2}, "x, y, w and h"),
            ({"x": float("nan"), "y": 0.1, "w": 0.2, "h": 0.2}, "positive width"),
        ]:
            with pytest.raises(ValueError, match=message):
                record_review(
                    session, image_id=scored["mid"], user=inspector, label="defect", region=bad
                )
        with pytest.raises(ValueError, match="only be drawn with the label 'defect'"):
            record_review(
                session,
                image_id=scored["mid"],
                user=inspector,
                label="good",
                region={"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2},
            )
        plain = record_review(session, image_id=scored["high"], user=inspector, label="defect")
        plain_id = plain.id
    with session_factory() as session:
        stored = session.get(Review, review_id).region
        no_box = session.scalar(
            select(func.count())
            .select_from(Review)
            .where(Review.id == plain_id, Review.region.is_(None))
        )
    assert stored == {"x": 0.25, "y": 0.5, "w": 0.5, "h": 0.5}
    assert no_box == 1  # SQL NULL, not a JSON null

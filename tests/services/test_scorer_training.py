"""Automatic scorer training after N reviews or at the end of a batch, and its option.

The triage model trains by itself only once the labelled flagged defects can meet the
project's auto-accept budget (:func:`adcore.feedback_scorer.triage.min_defects`): the rules
about *when* are exercised with a 50% budget (6 defects suffice), the gate itself with the
default one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version, image_row

from adcore.feedback_scorer.triage import min_defects
from db import Image, Job, ModelVersion, Prediction, Project, Role, User
from db.model_versions import activate_model_version, register_model_version
from db.permissions import PermissionDenied
from db.review_queue import record_review
from services.reviewing import label_part
from services.scorer_training import (
    LABELLED_KEY,
    MIN_BUDGET,
    SCORER_KEY,
    ScorerSetting,
    TriageStatus,
    maybe_queue_scorer_training,
    scorer_setting,
    set_scorer_setting,
    triage_budget,
    triage_status,
)
from services.training.job_kinds import JobKind


def add_detector(factory: sessionmaker[Session], project_id: int, kind: str = "patchcore") -> int:
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind=kind,
            artifact_path="unused",
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def add_flagged_parts(
    factory: sessionmaker[Session], project_id: int, version_id: int, n: int, first: int = 0
) -> None:
    """``n`` unreviewed parts with a vector, each flagged (so all wait in the review queue).

    Part ``i`` with ``i % 4 == 3`` falls in the scorer's held-out share (its digest starts low).
    """
    with factory() as session, session.begin():
        for i in range(first, first + n):
            digest = ("19999999" if i % 4 == 3 else "e6666666") + f"{project_id:08x}{i:048x}"
            image = image_row(project_id, i, sha256=digest)
            session.add(image)
            session.flush()
            session.add(
                Prediction(
                    image_id=image.id,
                    model_version_id=version_id,
                    score=2.0,
                    threshold=1.0,
                    verdict="defect",
                    embedding=np.ones(4, dtype=np.float32).tobytes(),
                )
            )


SMALL_BUDGET = 0.5
"""An auto-accept budget that 6 labelled flagged defects meet (``min_defects(0.5)``)."""


def store_setting(factory: sessionmaker[Session], project_id: int, **setting: object) -> None:
    """Write ``settings["scorer"]`` directly, as a hand edit (or an older version) would."""
    with factory() as session, session.begin():
        project = session.get(Project, project_id)
        project.settings = {**(project.settings or {}), SCORER_KEY: dict(setting)}


@pytest.fixture
def lab(session_factory: sessionmaker[Session], project_id: int, make_user: Callable) -> dict:
    """A project with an active PatchCore and 40 flagged parts waiting for review.

    Its auto-accept budget is :data:`SMALL_BUDGET`, so a few labelled defects are enough.
    """
    store_setting(session_factory, project_id, budget=SMALL_BUDGET)
    detector = add_detector(session_factory, project_id)
    add_flagged_parts(session_factory, project_id, detector, 40)
    with session_factory() as session:
        images = list(session.scalars(select(Image.id).order_by(Image.id)))
    return {
        "factory": session_factory,
        "project_id": project_id,
        "detector_id": detector,
        "images": images,
        "inspector": make_user("ines"),
        "manager": make_user("max", Role.MANAGER),
    }


def review(lab: dict, index: int, label: str | None = None) -> Job | None:
    """The inspector labels part ``index`` (every other one a defect), then the rule runs."""
    factory = lab["factory"]
    label = label or ("defect" if index % 2 else "good")
    with factory() as session, session.begin():
        user = session.get(User, lab["inspector"])
        record_review(session, image_id=lab["images"][index], user=user, label=label)
    with factory() as session, session.begin():
        job = maybe_queue_scorer_training(session, lab["project_id"], session.get(User, user.id))
        return None if job is None else session.get(Job, job.id)


def finish_jobs(lab: dict) -> None:
    with lab["factory"]() as session, session.begin():
        for job in session.scalars(select(Job)):
            job.status = "succeeded"


def test_a_training_is_queued_after_every_25_reviews_never_twice_at_once(lab: dict) -> None:
    assert [review(lab, i) for i in range(24)] == [None] * 24
    job = review(lab, 24)
    assert job is not None and job.kind == JobKind.TRAIN_FEEDBACK_SCORER
    assert job.created_by_id is None and job.status == "queued"  # queued by the system
    assert "25 new reviews" in job.parameters["trigger"]
    assert review(lab, 25) is None  # one is queued already
    finish_jobs(lab)
    assert [review(lab, i) for i in range(26, 34)] == [None] * 8  # 9 new since the job
    with lab["factory"]() as session:
        assert session.query(Job).count() == 1


def test_the_end_of_a_review_batch_queues_a_training(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable
) -> None:
    store_setting(session_factory, project_id, budget=SMALL_BUDGET)
    detector = add_detector(session_factory, project_id)
    add_flagged_parts(session_factory, project_id, detector, 20)
    lab = {
        "factory": session_factory,
        "project_id": project_id,
        "images": image_ids(session_factory),
        "inspector": make_user("ines"),
    }
    assert [review(lab, i) for i in range(19)] == [None] * 19
    job = review(lab, 19)  # the queue is empty now
    assert job is not None and "end of a review batch" in job.parameters["trigger"]
    assert job.parameters[LABELLED_KEY] == 20

    # The next batch is 10 parts: enough after a training on 20 labelled parts ...
    finish_jobs(lab)
    add_flagged_parts(session_factory, project_id, detector, 10, first=20)
    lab["images"] = image_ids(session_factory)
    assert [review(lab, i) for i in range(20, 29)] == [None] * 9
    assert review(lab, 29) is not None
    # ... but not after one on 100: a batch must bring a fifth as many new labels.
    with session_factory() as session, session.begin():
        job = session.scalars(select(Job).order_by(Job.id.desc())).first()
        job.status, job.parameters = "succeeded", {**job.parameters, LABELLED_KEY: 100}
    add_flagged_parts(session_factory, project_id, detector, 10, first=30)
    lab["images"] = image_ids(session_factory)
    assert [review(lab, i) for i in range(30, 40)] == [None] * 10


def image_ids(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return list(session.scalars(select(Image.id).order_by(Image.id)))


def test_labels_of_parts_the_screen_no_longer_flags_do_not_count(lab: dict) -> None:
    """The manager raised the threshold above every score: no flagged part to train on."""
    with lab["factory"]() as session, session.begin():
        session.get(ModelVersion, lab["detector_id"]).threshold = 3.0
    assert [review(lab, i) for i in range(30)] == [None] * 30


def test_nothing_is_queued_before_five_labels_of_each_class(lab: dict) -> None:
    assert [review(lab, i, "good") for i in range(30)] == [None] * 30


def test_a_detector_without_vectors_never_queues(lab: dict) -> None:
    add_detector(lab["factory"], lab["project_id"], kind="autoencoder")
    assert [review(lab, i) for i in range(30)] == [None] * 30


def test_the_review_count_is_a_project_option_only_managers_change(lab: dict) -> None:
    factory, project_id = lab["factory"], lab["project_id"]
    with factory() as session:
        assert scorer_setting(session.get(Project, project_id)) == ScorerSetting(25, SMALL_BUDGET)
    with factory() as session, session.begin(), pytest.raises(PermissionDenied):
        set_scorer_setting(
            session, project_id, ScorerSetting(10), user=session.get(User, lab["inspector"])
        )
    with factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        set_scorer_setting(session, project_id, ScorerSetting(20, SMALL_BUDGET), user=manager)
        with pytest.raises(ValueError, match="0 to"):
            set_scorer_setting(session, project_id, ScorerSetting(-1), user=manager)
    assert [review(lab, i) for i in range(19)] == [None] * 19
    assert "20 new reviews" in review(lab, 19).parameters["trigger"]


# --- the budget and the stage-2 switch -------------------------------------------------------


def test_the_budget_and_the_switch_are_stored_and_read_back(lab: dict) -> None:
    factory, project_id = lab["factory"], lab["project_id"]
    with factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        stored = set_scorer_setting(
            session, project_id, ScorerSetting(10, budget=0.2, enabled=False), user=manager
        )
    assert stored == ScorerSetting(10, 0.2, False)
    with factory() as session:
        project = session.get(Project, project_id)
        assert project.settings[SCORER_KEY] == {
            "every_n_reviews": 10,
            "budget": 0.2,
            "enabled": False,
        }
        assert scorer_setting(project) == stored
        assert triage_budget(project) == 0.2
    with factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        back = set_scorer_setting(session, project_id, ScorerSetting(10), user=manager)
    assert back == ScorerSetting(10, None, True)  # None: the project's target FNR


@pytest.mark.parametrize("budget", [0, 0.0, 0.0009, 0.6, 1.0, -0.1, float("nan"), "x", "0.1", True])
def test_a_bad_budget_is_refused_and_nothing_changes(lab: dict, budget: object) -> None:
    factory, project_id = lab["factory"], lab["project_id"]
    with factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        with pytest.raises(ValueError, match="budget"):
            set_scorer_setting(session, project_id, ScorerSetting(10, budget=budget), user=manager)
    with factory() as session:
        assert scorer_setting(session.get(Project, project_id)) == ScorerSetting(25, SMALL_BUDGET)


def test_the_budget_limits_are_accepted(lab: dict) -> None:
    with lab["factory"]() as session, session.begin():
        manager = session.get(User, lab["manager"])
        for budget in (MIN_BUDGET, 0.5):
            setting = ScorerSetting(10, budget=budget)
            assert set_scorer_setting(session, lab["project_id"], setting, user=manager) == setting


def test_only_managers_change_the_budget_or_the_switch(lab: dict) -> None:
    with lab["factory"]() as session, session.begin(), pytest.raises(PermissionDenied):
        set_scorer_setting(
            session,
            lab["project_id"],
            ScorerSetting(25, enabled=False),
            user=session.get(User, lab["inspector"]),
        )
    with lab["factory"]() as session:
        assert scorer_setting(session.get(Project, lab["project_id"])).enabled


@pytest.mark.parametrize("stored", ["x", True, 0, 0.7, -1, "nan"])
def test_a_hand_edited_bad_budget_falls_back_to_the_target_fnr(
    session_factory: sessionmaker[Session], project_id: int, stored: object
) -> None:
    store_setting(session_factory, project_id, every_n_reviews=7, budget=stored)
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert scorer_setting(project) == ScorerSetting(7, None, True)
        assert triage_budget(project) == project.target_fnr == 0.01


@pytest.mark.parametrize("stored", [[0.1], {"budget": 0.1}])
def test_a_hand_edited_budget_that_is_no_number_at_all_falls_back_too(
    session_factory: sessionmaker[Session], project_id: int, stored: object
) -> None:
    """A list or an object in the JSON: the same fallback, not a TypeError."""
    store_setting(session_factory, project_id, budget=stored)
    with session_factory() as session:
        project = session.get(Project, project_id)
        assert scorer_setting(project).budget is None
        assert triage_budget(project) == 0.01


def test_a_review_is_saved_whatever_budget_was_stored_by_hand(lab: dict) -> None:
    """The rule runs after every review: a stored list must not make reviewing fail."""
    store_setting(lab["factory"], lab["project_id"], budget=[0.1])
    saved = label_part(
        lab["factory"], user_id=lab["inspector"], image_id=lab["images"][0], label="defect"
    )
    assert saved.follow_up_jobs == ()


@pytest.mark.parametrize(
    ("target_fnr", "budget"), [(0.05, 0.05), (0.01, 0.01), (0.0, MIN_BUDGET), (0.9, 0.5)]
)
def test_without_a_budget_the_target_fnr_is_the_budget_within_limits(
    session_factory: sessionmaker[Session], target_fnr: float, budget: float
) -> None:
    with session_factory() as session, session.begin():
        project = Project(name="tiles", target_fnr=target_fnr)
        session.add(project)
        session.flush()
        assert triage_budget(project) == pytest.approx(budget)
        project.settings = {SCORER_KEY: {"budget": 0.3}}
        assert triage_budget(project) == 0.3  # a setting wins over the target


# --- triage_status --------------------------------------------------------------------------


def part(
    factory: sessionmaker[Session],
    project_id: int,
    n: int,
    version_id: int,
    score: float,
    *,
    label: str | None,
    reviewer: int,
    vector: bool = True,
) -> int:
    """A part scored by ``version_id`` (with or without a vector), labelled when asked."""
    image = add_image(factory, project_id, n)
    embedding = np.ones(4, dtype=np.float32).tobytes() if vector else None
    add_prediction(factory, image, version_id, score, embedding=embedding)
    if label is not None:
        with factory() as session, session.begin():
            user = session.get(User, reviewer)
            record_review(session, image_id=image, user=user, label=label)
    return image


def test_triage_status_counts_labelled_flagged_parts_with_vectors_only(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable
) -> None:
    factory, inspector = session_factory, make_user("ines")
    with factory() as session:
        assert triage_status(session, project_id) == TriageStatus(0.01, 0, 0, min_defects(0.01))
    other = add_version(factory, project_id, active=False)  # another lineage, never active
    detector = add_version(factory, project_id)  # threshold 1.0
    counted = [("defect", 1.5), ("defect", 1.0), ("defect", 2.0), ("good", 1.2), ("good", 1.7)]
    for n, (label, score) in enumerate(counted):
        part(factory, project_id, n, detector, score, label=label, reviewer=inspector)
    part(factory, project_id, 10, detector, 1.5, label="defect", reviewer=inspector, vector=False)
    part(factory, project_id, 11, detector, 0.5, label="defect", reviewer=inspector)  # passed
    part(factory, project_id, 12, detector, 0.5, label="good", reviewer=inspector)  # passed
    part(factory, project_id, 13, detector, 1.5, label=None, reviewer=inspector)  # unlabelled
    part(factory, project_id, 14, other, 1.5, label="defect", reviewer=inspector)  # not its own

    with factory() as session:
        status = triage_status(session, project_id)
    assert (status.n_defects, status.n_goods) == (3, 2)
    assert status.budget == 0.01 and status.defects_needed == min_defects(0.01) - 3

    # The screen is the active detector at its current threshold, not the stored one.
    with factory() as session, session.begin():
        session.get(ModelVersion, detector).threshold = 0.4
    store_setting(factory, project_id, budget=0.3)
    with factory() as session:
        status = triage_status(session, project_id)
    assert status == TriageStatus(0.3, 4, 3, min_defects(0.3) - 4)


def test_triage_status_of_a_missing_project_is_refused(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, pytest.raises(LookupError):
        triage_status(session, 9999)


def test_defects_needed_is_zero_once_the_budget_can_be_met(lab: dict) -> None:
    for i in range(2 * min_defects(SMALL_BUDGET)):  # every other one a defect
        review(lab, i)
    with lab["factory"]() as session:
        status = triage_status(session, lab["project_id"])
    assert status.n_defects == min_defects(SMALL_BUDGET) == 6
    assert status.defects_needed == 0


# --- when nothing is queued -------------------------------------------------------------------


def test_nothing_is_queued_while_stage_two_is_switched_off(lab: dict) -> None:
    store_setting(lab["factory"], lab["project_id"], budget=SMALL_BUDGET, enabled=False)
    assert [review(lab, i) for i in range(40)] == [None] * 40  # 25 reviews, then an empty queue
    store_setting(lab["factory"], lab["project_id"], budget=SMALL_BUDGET, enabled=True)
    with lab["factory"]() as session, session.begin():  # switched on: the next review queues
        user = session.get(User, lab["inspector"])
        assert maybe_queue_scorer_training(session, lab["project_id"], user) is not None


def test_nothing_is_queued_while_more_defects_are_needed(lab: dict) -> None:
    store_setting(lab["factory"], lab["project_id"], budget=0.05)  # 72 flagged defects needed
    assert [review(lab, i) for i in range(40)] == [None] * 40  # 20 defects: 52 short
    with lab["factory"]() as session:
        assert triage_status(session, lab["project_id"]).defects_needed == 72 - 20
    store_setting(lab["factory"], lab["project_id"], budget=SMALL_BUDGET)
    with lab["factory"]() as session, session.begin():
        user = session.get(User, lab["inspector"])
        assert maybe_queue_scorer_training(session, lab["project_id"], user) is not None


def test_nothing_is_queued_before_five_labelled_flagged_goods(lab: dict) -> None:
    labels = ["good" if i < 4 else "defect" for i in range(30)]  # defects galore, 4 goods
    assert [review(lab, i, label) for i, label in enumerate(labels)] == [None] * 30
    assert review(lab, 30, "good") is not None  # the fifth good: 31 new reviews, 5 goods

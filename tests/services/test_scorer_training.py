"""Automatic scorer training after N reviews or at the end of a batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import image_row

from db import Image, Job, Prediction, Project, Role, User
from db.model_versions import activate_model_version, register_model_version
from db.permissions import PermissionDenied
from db.review_queue import record_review
from services.scorer_training import (
    LABELLED_KEY,
    ScorerSetting,
    maybe_queue_scorer_training,
    scorer_setting,
    set_scorer_setting,
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


@pytest.fixture
def lab(session_factory: sessionmaker[Session], project_id: int, make_user: Callable) -> dict:
    """A project with an active PatchCore and 40 flagged parts waiting for review."""
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


def test_labels_the_job_holds_out_do_not_count(lab: dict) -> None:
    """Defects only in the scorer's held-out share: the job could not train, so none is queued."""
    indices = [i for i in range(40) if i % 4 != 1]  # goods, and defects only where i % 4 == 3
    labels = ["defect" if i % 4 == 3 else "good" for i in indices]
    assert [review(lab, i, label) for i, label in zip(indices, labels, strict=True)] == [None] * 30


def test_nothing_is_queued_before_five_labels_of_each_class(lab: dict) -> None:
    assert [review(lab, i, "good") for i in range(30)] == [None] * 30


def test_a_detector_without_vectors_never_queues(lab: dict) -> None:
    add_detector(lab["factory"], lab["project_id"], kind="autoencoder")
    assert [review(lab, i) for i in range(30)] == [None] * 30


def test_the_review_count_is_a_project_option_only_managers_change(lab: dict) -> None:
    factory, project_id = lab["factory"], lab["project_id"]
    with factory() as session:
        assert scorer_setting(session.get(Project, project_id)) == ScorerSetting(25)
    with factory() as session, session.begin(), pytest.raises(PermissionDenied):
        set_scorer_setting(
            session, project_id, ScorerSetting(10), user=session.get(User, lab["inspector"])
        )
    with factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        set_scorer_setting(session, project_id, ScorerSetting(20), user=manager)
        with pytest.raises(ValueError, match="0 to"):
            set_scorer_setting(session, project_id, ScorerSetting(-1), user=manager)
    assert [review(lab, i) for i in range(19)] == [None] * 19
    assert "20 new reviews" in review(lab, 19).parameters["trigger"]

"""The automatic jobs a saved review sets off: a recalibration when an audit finds a miss."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import Image, Job, User
from db.review_queue import record_review
from services.review_followups import follow_up_review
from services.training.job_kinds import JobKind


def label_and_follow_up(factory: sessionmaker[Session], image_id: int, user_id: int, label: str):
    with factory() as session, session.begin():
        record_review(session, image_id=image_id, user=session.get(User, user_id), label=label)
    with factory() as session, session.begin():
        project_id = session.get(Image, image_id).project_id
        jobs = follow_up_review(session, project_id, image_id, session.get(User, user_id))
        return [(job.kind, job.created_by_id, dict(job.parameters)) for job in jobs]


def test_an_audit_that_finds_a_defect_queues_one_recalibration(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable
) -> None:
    version = add_version(session_factory, project_id)
    inspector = make_user("ines")
    audited = [add_image(session_factory, project_id, n) for n in range(3)]
    flagged = add_image(session_factory, project_id, 9)
    for image_id in audited:  # passed (score under the threshold), drawn for audit
        add_prediction(session_factory, image_id, version, 0.5, audit=True)
    add_prediction(session_factory, flagged, version, 1.5)

    assert label_and_follow_up(session_factory, audited[0], inspector, "good") == []
    assert label_and_follow_up(session_factory, flagged, inspector, "defect") == []  # not a miss
    [(kind, created_by, parameters)] = label_and_follow_up(
        session_factory, audited[1], inspector, "defect"
    )
    assert kind == JobKind.RECALIBRATE_THRESHOLD and created_by is None  # queued by the system
    assert parameters["image_id"] == audited[1] and "missed defect" in parameters["trigger"]
    # A second miss while that job waits: the waiting job will see both labels.
    assert label_and_follow_up(session_factory, audited[2], inspector, "defect") == []
    with session_factory() as session:
        kinds = session.scalars(select(Job.kind)).all()
    assert kinds == [JobKind.RECALIBRATE_THRESHOLD]


def test_no_recalibration_without_an_active_detector(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable
) -> None:
    version = add_version(session_factory, project_id, active=False)
    image_id = add_image(session_factory, project_id, 1)
    add_prediction(session_factory, image_id, version, 0.5, audit=True)
    assert label_and_follow_up(session_factory, image_id, make_user("ines"), "defect") == []

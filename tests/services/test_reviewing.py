"""The review service: one transaction per label, its follow-ups in savepoints, its result typed.

Instant learning's job is only queued here (a stored-row project, no model files); it is run in
``test_review_learning.py`` (a tiny PatchCore) and ``tests/workers/test_instant_update_job.py``
(two worker processes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import Job, ModelVersion, PermissionDenied, Review, Role, User
from db.jobs import claim_next_job, enqueue_automatic_job
from db.labels import current_label
from db.review_queue import review_queue
from services import review_options, reviewing
from services.review_options import ReviewOptions, set_review_options
from services.reviewing import Notice, label_part
from services.training.job_kinds import JobKind


@pytest.fixture
def lab(session_factory: sessionmaker[Session], project_id: int, make_user: Callable) -> dict:
    """An active version (threshold 1.0), an inspector; parts flagged (1.5) and passed (0.5)."""
    version = add_version(session_factory, project_id)
    parts = {}
    for n, (name, score) in enumerate(
        [("a", 1.5), ("b", 1.5), ("c", 1.5), ("passed", 0.5), ("near", 0.95)]
    ):
        parts[name] = add_image(session_factory, project_id, n)
        add_prediction(session_factory, parts[name], version, score)
    return {
        "project": project_id,
        "version": version,
        "inspector": make_user("ines"),
        "manager": make_user("max", Role.MANAGER),
        **parts,
    }


def label(factory: sessionmaker[Session], lab: dict, part: str, value: str, **kwargs: object):
    return label_part(factory, user_id=lab["inspector"], image_id=lab[part], label=value, **kwargs)


def jobs(factory: sessionmaker[Session]) -> list[tuple[int, str, str, dict]]:
    with factory() as session:
        rows = session.scalars(select(Job).order_by(Job.id)).all()
        return [(job.id, job.kind, job.status, dict(job.parameters)) for job in rows]


def test_a_good_on_a_flagged_part_joins_the_waiting_instant_update(
    session_factory: sessionmaker[Session], lab: dict
) -> None:
    first = label(session_factory, lab, "a", "good", note=" clean ", seconds_spent=2.0)
    second = label(session_factory, lab, "b", "good")
    passed = label(session_factory, lab, "passed", "good")  # a Good the model agreed with
    defect = label(session_factory, lab, "c", "defect", defect_type="crack")

    assert first.flagged and first.label == "good" and first.project_id == lab["project"]
    assert first.learning_job_id is not None and second.learning_job_id == first.learning_job_id
    assert not passed.flagged and passed.learning_job_id is None
    assert defect.flagged and defect.learning_job_id is None
    assert first.notices == () and first.follow_up_jobs == ()
    [(job_id, kind, status, parameters)] = jobs(session_factory)
    assert (job_id, kind, status) == (first.learning_job_id, JobKind.INSTANT_UPDATE, "queued")
    assert parameters == {"image_ids": [lab["a"], lab["b"]], "user_id": lab["inspector"]}
    with session_factory() as session:
        review = session.get(Review, first.review_id)
        assert (review.image_id, review.note, review.seconds_spent) == (lab["a"], "clean", 2.0)
        assert current_label(session, lab["c"]).defect_type == "crack"


def test_a_good_confirmed_while_an_update_runs_waits_for_the_next_one(
    session_factory: sessionmaker[Session], lab: dict
) -> None:
    running = label(session_factory, lab, "a", "good").learning_job_id
    assert claim_next_job(session_factory, "worker-1").id == running  # the update starts

    later = label(session_factory, lab, "b", "good").learning_job_id
    again = label(session_factory, lab, "c", "good").learning_job_id

    assert later != running and again == later
    assert [(p["image_ids"], s) for _, _, s, p in jobs(session_factory)] == [
        ([lab["a"]], "running"),
        ([lab["b"], lab["c"]], "queued"),
    ]


def test_flagged_is_read_from_the_stored_prediction_at_the_current_threshold(
    session_factory: sessionmaker[Session], lab: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_factory() as session, session.begin():  # the manager lowers the threshold
        session.get(ModelVersion, lab["version"]).threshold = 0.9
    near = label(session_factory, lab, "near", "good")  # stored "good" at 1.0, flagged at 0.9
    assert near.flagged and near.learning_job_id is not None

    monkeypatch.setenv("LOUPE_INSTANT_LEARNING", "0")
    off = label(session_factory, lab, "a", "good")
    assert off.flagged and off.learning_job_id is None


def test_a_failed_follow_up_rolls_back_itself_and_never_the_review(
    session_factory: sessionmaker[Session], lab: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(session: Session, project_id: int, image_id: int, user: User) -> list[Job]:
        enqueue_automatic_job(
            session, kind=JobKind.RECALIBRATE_THRESHOLD, parameters={}, project_id=project_id
        )
        raise ValueError("the rule broke")

    monkeypatch.setattr(reviewing, "follow_up_review", failing)
    saved = label(session_factory, lab, "a", "good")

    assert saved.notices == (
        Notice("info", "The review is saved; no automatic job was queued: the rule broke"),
    )
    assert saved.follow_up_jobs == ()
    with session_factory() as session:
        assert current_label(session, lab["a"]).id == saved.review_id
    # The follow-up's own job is gone with its savepoint; instant learning's is queued.
    assert [kind for _, kind, _, _ in jobs(session_factory)] == [JobKind.INSTANT_UPDATE]


def test_a_refused_review_writes_nothing(
    session_factory: sessionmaker[Session], lab: dict, make_user: Callable
) -> None:
    with pytest.raises(ValueError, match="'good' or 'defect'"):
        label(session_factory, lab, "a", "ok")
    with pytest.raises(ValueError, match="defect box"):
        label(session_factory, lab, "a", "good", region={"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2})
    with pytest.raises(PermissionDenied):
        label_part(session_factory, user_id=9999, image_id=lab["a"], label="good")
    with pytest.raises(LookupError):
        label_part(session_factory, user_id=lab["inspector"], image_id=9999, label="good")
    with session_factory() as session:
        assert session.scalars(select(Review)).all() == []
    assert jobs(session_factory) == []


def test_undo_cancels_the_users_own_latest_review(
    session_factory: sessionmaker[Session], lab: dict
) -> None:
    saved = label(session_factory, lab, "c", "defect")
    undone = reviewing.undo_last(session_factory, user_id=lab["inspector"])
    assert undone is not None and undone.image_id == lab["c"]
    assert undone.undo_review_id > saved.review_id
    with session_factory() as session:
        assert current_label(session, lab["c"]) is None
    assert reviewing.undo_last(session_factory, user_id=lab["inspector"]) is None
    with pytest.raises(PermissionDenied):
        reviewing.undo_last(session_factory, user_id=9999)


def test_accepting_a_page_labels_its_passed_parts_once_each(
    session_factory: sessionmaker[Session], lab: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Near-threshold goods wait only with a near band now (else only when drawn for audit):
    # the page's queue is given one, as an explicit near_margin does.
    monkeypatch.setattr(
        review_options, "review_queue", functools.partial(review_queue, near_margin=0.1)
    )
    page = [lab["near"], lab["a"]]
    with pytest.raises(PermissionDenied, match="off"):
        reviewing.accept_page(
            session_factory, user_id=lab["inspector"], project_id=lab["project"], image_ids=page
        )
    with session_factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        set_review_options(session, lab["project"], ReviewOptions(True), user=manager)

    done = reviewing.accept_page(
        session_factory, user_id=lab["inspector"], project_id=lab["project"], image_ids=page
    )

    assert done.accepted == (lab["near"],) and done.skipped == ((lab["a"], "flagged by the model"),)
    assert done.message.startswith("Accepted 1 passed part(s) as good.")
    assert done.follow_up_jobs == () and done.notices == ()
    assert jobs(session_factory) == []  # a passed part teaches nothing at once


def test_with_no_near_band_a_page_accepts_nothing_and_queues_nothing(
    session_factory: sessionmaker[Session], lab: dict
) -> None:
    with session_factory() as session, session.begin():
        manager = session.get(User, lab["manager"])
        set_review_options(session, lab["project"], ReviewOptions(True), user=manager)
    done = reviewing.accept_page(
        session_factory,
        user_id=lab["inspector"],
        project_id=lab["project"],
        image_ids=[lab["near"], lab["a"]],
    )
    assert done.accepted == ()
    assert done.skipped == (
        (lab["near"], "no longer waiting for review"),  # 0.95, not drawn: not in the queue
        (lab["a"], "flagged by the model"),
    )
    assert done.follow_up_jobs == () and jobs(session_factory) == []

"""Audited parts in the store: counted once by current label, per period, and in the queue.

The project (threshold 1.0) holds, besides unaudited parts:

    part        drawn (first audited prediction)   reviews                           counts as
    twice       Mon 3 March                        ines good, then mona defect       missed
    clean       Mon 3 March                        ines good                         audited
    undone      Mon 3 March                        ines defect, undone by ines       waiting
    waiting     Tue 11 March                       none                              waiting
    rescored    Wed 12 March (again 13 March)      ines defect                       missed
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_prediction, add_version

from db import Project, User
from db.audits import (
    AuditCounts,
    audit_counts,
    drawn_for_audit,
    unlabelled_audits,
)
from db.images import get_or_create_image
from db.review_queue import record_review, review_queue, undo_last

MON = datetime(2025, 3, 3, 9, tzinfo=UTC)
NEXT_TUE = datetime(2025, 3, 11, 9, tzinfo=UTC)
NEXT_WED = datetime(2025, 3, 12, 9, tzinfo=UTC)


def label(factory: sessionmaker[Session], image_id: int, user_id: int, value: str) -> None:
    with factory() as session, session.begin():
        record_review(session, image_id=image_id, user=session.get(User, user_id), label=value)


@pytest.fixture
def audited(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_image: Callable[[int], int],
    make_user: Callable[..., int],
) -> dict[str, int]:
    """The project in the module docstring; returns image ids by name (and the version)."""
    ines, mona = make_user("ines"), make_user("mona", "manager")
    version = add_version(session_factory, project_id)
    names = [
        "twice",
        "clean",
        "undone",
        "waiting",
        "rescored",
        "flagged",
        "near",
        "missed_unaudited",
    ]
    images = {name: make_image(seed) for seed, name in enumerate(names, start=1)}
    drawn = {"twice": MON, "clean": MON, "undone": MON, "waiting": NEXT_TUE, "rescored": NEXT_WED}
    for name, at in drawn.items():
        add_prediction(session_factory, images[name], version, 0.2, at=at, audit=True)
    add_prediction(
        session_factory,
        images["rescored"],
        version,
        0.1,
        at=NEXT_WED + timedelta(days=1),
        audit=True,
    )
    add_prediction(session_factory, images["flagged"], version, 2.0, at=MON)
    add_prediction(session_factory, images["near"], version, 0.95, at=MON)
    add_prediction(session_factory, images["missed_unaudited"], version, 0.3, at=MON)

    label(session_factory, images["twice"], ines, "good")
    label(session_factory, images["twice"], mona, "defect")
    label(session_factory, images["clean"], ines, "good")
    label(session_factory, images["undone"], ines, "defect")
    with session_factory() as session, session.begin():
        undo_last(session, user=session.get(User, ines))
    label(session_factory, images["rescored"], ines, "defect")
    label(session_factory, images["missed_unaudited"], ines, "defect")
    return {**images, "version": version, "ines": ines, "mona": mona}


@pytest.fixture
def other_project(
    session_factory: sessionmaker[Session], audited: dict[str, int], png: Callable[..., bytes]
) -> int:
    """A second project with one audited part labelled defect (never counted in the first)."""
    with session_factory() as session, session.begin():
        project = Project(name="other")
        session.add(project)
        session.flush()
        image, _ = get_or_create_image(
            session,
            data=png(99),
            original_name="other.png",
            project_id=project.id,
            source="upload",
            width=8,
            height=8,
        )
        project_id, image_id = project.id, image.id
    version = add_version(session_factory, project_id)
    add_prediction(session_factory, image_id, version, 0.1, at=MON, audit=True)
    label(session_factory, image_id, audited["ines"], "defect")
    return project_id


def test_each_audited_part_counts_once_by_its_current_label(
    session_factory: sessionmaker[Session],
    project_id: int,
    audited: dict[str, int],
    other_project: int,
) -> None:
    with session_factory() as session:
        counts = audit_counts(session, project_id)
        assert counts == AuditCounts(n_missed=2, n_audited=3)  # twice, rescored / + clean
        n_missed, n_audited = counts  # unpacks as (n_missed, n_audited)
        assert (n_missed, n_audited) == (2, 3)
        assert unlabelled_audits(session, project_id) == 2  # undone, waiting
        assert audit_counts(session, other_project) == (1, 1)


def test_a_correction_and_an_undo_move_the_counts(
    session_factory: sessionmaker[Session], project_id: int, audited: dict[str, int]
) -> None:
    label(session_factory, audited["undone"], audited["mona"], "good")
    label(session_factory, audited["twice"], audited["ines"], "good")  # ines corrects mona
    with session_factory() as session:
        assert audit_counts(session, project_id) == (1, 4)
    with session_factory() as session, session.begin():
        undo_last(session, user=session.get(User, audited["ines"]))  # back to mona's defect
    with session_factory() as session:
        assert audit_counts(session, project_id) == (2, 4)
        assert unlabelled_audits(session, project_id) == 1


def test_since_and_until_bound_when_the_part_was_drawn(
    session_factory: sessionmaker[Session], project_id: int, audited: dict[str, int]
) -> None:
    with session_factory() as session:
        assert audit_counts(session, project_id, until=NEXT_TUE) == (1, 2)
        assert audit_counts(session, project_id, since=NEXT_TUE) == (1, 1)
        # drawn on the 12th, re-scored on the 13th: it belongs to the 12th only
        the_13th = NEXT_WED + timedelta(hours=20)
        assert audit_counts(session, project_id, since=the_13th) == (0, 0)
        assert audit_counts(session, project_id, since=MON, until=MON) == (0, 0)
        with pytest.raises(ValueError, match="timezone-aware"):
            audit_counts(session, project_id, since=datetime(2025, 3, 1))


def test_nothing_audited_gives_zero_counts(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session:
        assert audit_counts(session, project_id) == (0, 0)
        assert unlabelled_audits(session, project_id) == 0


def test_drawn_for_audit_tells_new_unaudited_and_audited_parts_apart(
    session_factory: sessionmaker[Session], audited: dict[str, int], make_image: Callable
) -> None:
    with session_factory() as session:
        assert drawn_for_audit(session, make_image(50)) is None  # never scored
        assert drawn_for_audit(session, audited["flagged"]) is False
        assert drawn_for_audit(session, audited["rescored"]) is True


NEAR_BAND = 0.1  # near-threshold parts queue only with a band (else when drawn for audit)


def test_unlabelled_audit_samples_queue_after_flagged_and_before_near_parts(
    session_factory: sessionmaker[Session], project_id: int, audited: dict[str, int]
) -> None:
    with session_factory() as session:
        queue = review_queue(session, project_id, near_margin=NEAR_BAND)
    assert [item.image_id for item in queue] == [
        audited["flagged"],
        audited["undone"],  # audit samples, highest score first, then by id
        audited["waiting"],
        audited["near"],
    ]
    assert [item.audit for item in queue] == [False, True, True, False]
    assert [item.verdict for item in queue] == ["defect", "good", "good", "good"]


def test_a_labelled_audit_sample_leaves_the_queue_and_a_flagged_one_stays_flagged(
    session_factory: sessionmaker[Session], project_id: int, audited: dict[str, int]
) -> None:
    label(session_factory, audited["waiting"], audited["ines"], "good")
    later = NEXT_WED + timedelta(days=5)  # a newer model flags the audit sample
    add_prediction(
        session_factory, audited["undone"], audited["version"], 3.0, at=later, audit=True
    )
    with session_factory() as session:
        queue = review_queue(session, project_id, near_margin=NEAR_BAND)
    assert [(item.image_id, item.verdict, item.audit) for item in queue] == [
        (audited["undone"], "defect", True),
        (audited["flagged"], "defect", False),
        (audited["near"], "good", False),
    ]

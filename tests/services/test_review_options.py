"""Accepting a page of passed parts as good: allowed by a manager, one review per part."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

import services.review_options as review_options_module
from db import PermissionDenied, Project, Review, Role, User
from db.review_queue import review_queue
from services.review_options import (
    ReviewOptions,
    accept_page_as_good,
    review_options,
    set_review_options,
)


def allow(session: Session, project_id: int, manager: int) -> None:
    set_review_options(session, project_id, ReviewOptions(True), user=session.get(User, manager))


@pytest.fixture
def page(session_factory: sessionmaker[Session], project_id: int) -> dict[str, int]:
    """Threshold 1.0: two passed parts near it, an audit sample, a flagged part."""
    version = add_version(session_factory, project_id, 1.0)
    parts = {
        name: add_image(session_factory, project_id, n)
        for n, name in enumerate(["near_a", "near_b", "audit", "flagged"])
    }
    add_prediction(session_factory, parts["near_a"], version, 0.97)
    add_prediction(session_factory, parts["near_b"], version, 0.95)
    add_prediction(session_factory, parts["audit"], version, 0.2, audit=True)
    add_prediction(session_factory, parts["flagged"], version, 1.4)
    return parts


def test_only_a_manager_turns_it_on_and_it_is_off_by_default(
    session_factory: sessionmaker[Session], project_id: int, make_user: Callable
) -> None:
    inspector, manager = make_user("ines"), make_user("max", Role.MANAGER)
    with session_factory() as session, session.begin():
        assert review_options(session.get(Project, project_id)) == ReviewOptions(False)
        with pytest.raises(PermissionDenied, match="Only managers"):
            set_review_options(
                session, project_id, ReviewOptions(True), user=session.get(User, inspector)
            )
        set_review_options(
            session, project_id, ReviewOptions(True), user=session.get(User, manager)
        )
    with session_factory() as session:
        assert review_options(session.get(Project, project_id)).accept_page_as_good


def allow_page_acceptance(factory: sessionmaker[Session], project_id: int, manager: int) -> None:
    with factory() as session, session.begin():
        allow(session, project_id, manager)


def test_with_no_near_band_a_page_holds_no_passed_part_to_accept(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable,
    page: dict[str, int],
) -> None:
    """Near-threshold goods wait only when drawn for audit now, and audits are never accepted."""
    inspector, manager = make_user("ines"), make_user("max", Role.MANAGER)
    shown = [page["near_a"], page["flagged"], page["near_b"], page["audit"], 9999]
    allow_page_acceptance(session_factory, project_id, manager)
    with session_factory() as session, session.begin():
        done = accept_page_as_good(session, project_id, shown, user=session.get(User, inspector))
    assert done.accepted == ()
    assert dict(done.skipped) == {
        page["near_a"]: "no longer waiting for review",
        page["flagged"]: "flagged by the model",
        page["near_b"]: "no longer waiting for review",
        page["audit"]: "an audit sample",
        9999: "no longer waiting for review",
    }
    assert done.message.startswith("Accepted 0 passed part(s) as good. 5 left")
    with session_factory() as session:
        assert session.scalars(select(Review)).all() == []


def test_passed_parts_are_accepted_one_review_each_flagged_and_audits_are_not(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable,
    page: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A queue with a near band (as an explicit near_margin gives) lists the near-threshold goods.
    monkeypatch.setattr(
        review_options_module, "review_queue", functools.partial(review_queue, near_margin=0.1)
    )
    inspector, manager = make_user("ines"), make_user("max", Role.MANAGER)
    shown = [page["near_a"], page["flagged"], page["near_b"], page["audit"], 9999]
    with (
        session_factory() as session,
        session.begin(),
        pytest.raises(PermissionDenied, match="off"),
    ):
        accept_page_as_good(session, project_id, shown, user=session.get(User, inspector))
    allow_page_acceptance(session_factory, project_id, manager)
    with session_factory() as session, session.begin():
        done = accept_page_as_good(session, project_id, shown, user=session.get(User, inspector))
    assert done.accepted == (page["near_a"], page["near_b"])
    assert dict(done.skipped) == {
        page["flagged"]: "flagged by the model",
        page["audit"]: "an audit sample",
        9999: "no longer waiting for review",
    }
    assert done.message.startswith("Accepted 2 passed part(s) as good. 3 left")
    with session_factory() as session:
        rows = session.execute(select(Review.image_id, Review.label, Review.reviewer_id)).all()
    assert sorted(rows) == sorted(
        [(page["near_a"], "good", inspector), (page["near_b"], "good", inspector)]
    )

"""Recording an instant update: new active version, retired parent, history, refusals, races."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db import (
    Image,
    ModelVersion,
    PermissionDenied,
    Project,
    User,
    activate_model_version,
    register_model_version,
)
from db import instant_updates as iu
from db.instant_updates import InstantUpdateConflict, record_instant_update
from db.review_queue import record_review

SEED_IMAGE = {"sha256": "a" * 64, "label": "good"}


def _version(session: Session, project_id: int, *, activate: bool) -> int:
    version = register_model_version(
        session,
        project_id=project_id,
        kind="patchcore",
        artifact_path="models/cells/v1",
        metrics={"n_train": 10, "memory_bank_size": 100},
        threshold=2.5,
        training_snapshot={"training_hash": "h0", "images": [SEED_IMAGE]},
    )
    if activate:
        activate_model_version(session, version_id=version.id, user=None, system=True)
    return version.id


@pytest.fixture
def setup(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
    make_image: Callable[[int], int],
) -> dict[str, int]:
    """An active v1, an inspector, and an image the inspector labelled Good."""
    inspector_id = make_user("ines", "inspector")
    image_id = make_image(1)
    with session_factory() as session, session.begin():
        parent_id = _version(session, project_id, activate=True)
        inspector = session.get(User, inspector_id)
        review = record_review(session, image_id=image_id, user=inspector, label="good")
        return {
            "inspector": inspector_id,
            "image": image_id,
            "parent": parent_id,
            "review": review.id,
            "project": project_id,
        }


def _sha(session: Session, image_id: int) -> str:
    return session.get(Image, image_id).sha256


def _record(session: Session, setup: dict[str, int], user_id: int | None = None) -> ModelVersion:
    user = session.get(User, user_id or setup["inspector"])
    return record_instant_update(
        session,
        parent_version_id=setup["parent"],
        artifact_path="models/cells/v2",
        added_sha256=_sha(session, setup["image"]),
        review_id=setup["review"],
        user=user,
        training_hash="h1",
        details={"bank_size_before": 100, "bank_size_after": 112, "patches_added": 12},
    )


def test_an_inspector_makes_a_new_active_version_and_retires_the_parent(
    session_factory: sessionmaker[Session], setup: dict[str, int]
) -> None:
    with session_factory() as session, session.begin():
        child_id = _record(session, setup).id
    with session_factory() as session:
        child = session.get(ModelVersion, child_id)
        parent = session.get(ModelVersion, setup["parent"])
        project = session.get(Project, setup["project"])
        assert project.active_model_version_id == child.id
        assert (child.status, parent.status) == ("active", "retired")
        assert child.version == parent.version + 1 and child.threshold == parent.threshold
        assert child.kind == parent.kind and child.artifact_path == "models/cells/v2"
        note = f"instant update from review #{setup['review']} by ines"
        assert parent.metrics["status_history"][-1]["note"] == note
        assert parent.metrics["status_history"][-1]["status"] == "retired"
        assert child.metrics["status_history"] == [
            child.metrics["status_history"][0] | {"status": "active", "by": "ines", "note": note}
        ]
        assert child.metrics["n_train"] == 10 and child.metrics["memory_bank_size"] == 112
        assert child.metrics["instant_update_count"] == 1
        entry = child.metrics["instant_updates"][0]
        assert entry["review_ids"] == [setup["review"]] and entry["patches_added"] == 12
        sha = _sha(session, setup["image"])
        assert child.training_snapshot["images"] == [
            SEED_IMAGE,
            {"sha256": sha, "label": "good", "review_id": setup["review"]},
        ]
        assert child.training_snapshot["training_hash"] == "h1"
        assert parent.training_snapshot["training_hash"] == "h0"  # the parent is untouched


def test_a_deactivated_or_missing_user_is_refused(
    session_factory: sessionmaker[Session], setup: dict[str, int]
) -> None:
    with session_factory() as session, session.begin():
        session.get(User, setup["inspector"]).active = False
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        _record(session, setup)
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        record_instant_update(
            session,
            parent_version_id=setup["parent"],
            artifact_path="x",
            added_sha256=_sha(session, setup["image"]),
            review_id=setup["review"],
            user=None,  # type: ignore[arg-type]
        )
    _assert_unchanged(session_factory, setup)


def test_a_parent_that_is_no_longer_active_is_refused(
    session_factory: sessionmaker[Session], setup: dict[str, int]
) -> None:
    with session_factory() as session, session.begin():
        winner = _version(session, setup["project"], activate=True)
    with (
        session_factory() as session,
        session.begin(),
        pytest.raises(InstantUpdateConflict) as refused,
    ):
        _record(session, setup)
    assert refused.value.active_version_id == winner
    with session_factory() as session:
        assert session.get(Project, setup["project"]).active_model_version_id == winner
        assert session.scalar(select(func.count(ModelVersion.id))) == 2


def test_only_the_current_good_review_of_that_image_is_accepted(
    session_factory: sessionmaker[Session],
    setup: dict[str, int],
    make_image: Callable[[int], int],
) -> None:
    other = make_image(2)
    with session_factory() as session, session.begin():
        inspector = session.get(User, setup["inspector"])
        defect = record_review(session, image_id=other, user=inspector, label="defect").id
    with session_factory() as session, session.begin(), pytest.raises(ValueError, match="Good"):
        record_instant_update(
            session,
            parent_version_id=setup["parent"],
            artifact_path="x",
            added_sha256=_sha(session, other),
            review_id=defect,
            user=session.get(User, setup["inspector"]),
        )
    with session_factory() as session, session.begin(), pytest.raises(ValueError, match="images"):
        record_instant_update(  # a Good review, but of another image than the one added
            session,
            parent_version_id=setup["parent"],
            artifact_path="x",
            added_sha256=_sha(session, other),
            review_id=setup["review"],
            user=session.get(User, setup["inspector"]),
        )
    with session_factory() as session, session.begin():  # relabelled defect after the Good
        inspector = session.get(User, setup["inspector"])
        record_review(session, image_id=setup["image"], user=inspector, label="defect")
    with session_factory() as session, session.begin(), pytest.raises(ValueError, match="current"):
        _record(session, setup)
    _assert_unchanged(session_factory, setup)


def test_a_failure_inside_the_write_leaves_the_parent_active(
    session_factory: sessionmaker[Session],
    setup: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    real = iu._set_status

    def fail(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:  # the parent is already retired, the child not yet active
            raise RuntimeError("disk full")
        real(*args)

    monkeypatch.setattr(iu, "_set_status", fail)
    with session_factory() as session, pytest.raises(RuntimeError), session.begin():
        _record(session, setup)
    assert len(calls) == 2
    _assert_unchanged(session_factory, setup)


def _assert_unchanged(session_factory: sessionmaker[Session], setup: dict[str, int]) -> None:
    with session_factory() as session:
        assert session.get(Project, setup["project"]).active_model_version_id == setup["parent"]
        assert session.get(ModelVersion, setup["parent"]).status == "active"
        assert session.scalar(select(func.count(ModelVersion.id))) == 1


# --------------------------------------------------------------------------- the learning turn


def test_one_learning_turn_at_a_time_per_project(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    """A second taker waits until the first leaves; another project's turn is free meanwhile."""
    with session_factory() as session, session.begin():
        other = Project(name="other")
        session.add(other)
        session.flush()
        other_id = other.id
    events: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with iu.learning_turn(session_factory, project_id, poll_seconds=0.01):
            events.append("first in")
            holding.set()
            release.wait(10)
            events.append("first out")

    def second() -> None:
        with iu.learning_turn(session_factory, project_id, poll_seconds=0.01):
            events.append("second in")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    waiter = threading.Thread(target=second)
    waiter.start()
    with iu.learning_turn(session_factory, other_id, poll_seconds=0.01):
        events.append("other project in")  # not blocked by the first project's turn
    waiter.join(0.3)
    assert waiter.is_alive(), "the second taker must wait for the first"
    release.set()
    thread.join(10)
    waiter.join(10)
    assert events == ["first in", "other project in", "first out", "second in"]


def test_a_waiting_taker_leaves_when_told_and_the_turn_stays_free(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    tries: list[int] = []

    def cancel_on_third_try() -> None:
        tries.append(1)
        if len(tries) == 3:
            raise RuntimeError("cancelled")

    with iu.learning_turn(session_factory, project_id, poll_seconds=0.01):
        done = []

        def impatient() -> None:
            try:
                with iu.learning_turn(
                    session_factory,
                    project_id,
                    between_tries=cancel_on_third_try,
                    poll_seconds=0.01,
                ):
                    done.append("got the turn")
            except RuntimeError as err:
                done.append(str(err))

        thread = threading.Thread(target=impatient)
        thread.start()
        thread.join(10)
    assert done == ["cancelled"] and len(tries) == 3
    with iu.learning_turn(session_factory, project_id, poll_seconds=0.01):
        pass  # released by its holder; the leaver never held it

"""``predictions.superseded``: kept on insert, rebuilt after bulk writes, read as the latest."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import T0, add_image, add_prediction, add_version

from db import Prediction
from db.predictions import latest_prediction_ids, latest_prediction_value, rebuild_superseded


def flags(factory: sessionmaker[Session], image_id: int) -> dict[int, bool]:
    """``{prediction id: superseded}`` of one image, as stored."""
    with factory() as session:
        rows = session.execute(
            select(Prediction.id, Prediction.superseded).where(Prediction.image_id == image_id)
        )
        return {prediction_id: bool(flag) for prediction_id, flag in rows}


def latest_by_lookup(factory: sessionmaker[Session], image_id: int, version_id: int) -> int:
    """The latest prediction of the pair by the correlated ORDER BY lookup (the reference)."""
    with factory() as session:
        return session.scalar(select(latest_prediction_value(image_id, version_id)))


def test_only_the_latest_of_each_image_and_version_is_not_superseded(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    image = add_image(session_factory, project_id, 1)
    first, second = (
        add_version(session_factory, project_id),
        add_version(session_factory, project_id),
    )
    middle = add_prediction(session_factory, image, first, 0.5, minutes=10)
    assert flags(session_factory, image) == {middle: False}
    older = add_prediction(session_factory, image, first, 0.6, minutes=5)  # inserted late, older
    assert flags(session_factory, image) == {middle: False, older: True}
    newest = add_prediction(session_factory, image, first, 0.7, minutes=20)
    other_version = add_prediction(session_factory, image, second, 0.8, minutes=0)
    tie = add_prediction(session_factory, image, second, 0.9, minutes=0)  # same time: higher id
    assert flags(session_factory, image) == {
        middle: True,
        older: True,
        newest: False,
        other_version: True,
        tie: False,
    }
    assert latest_by_lookup(session_factory, image, first) == newest
    assert latest_by_lookup(session_factory, image, second) == tie


def test_a_loaded_older_prediction_sees_its_flag_change_in_the_same_session(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    image = add_image(session_factory, project_id, 1)
    version = add_version(session_factory, project_id)
    with session_factory() as session, session.begin():
        old = Prediction(
            image_id=image, model_version_id=version, score=0.1, threshold=1.0, verdict="good"
        )
        session.add(old)
        session.flush()
        assert old.superseded is False
        new = Prediction(
            image_id=image, model_version_id=version, score=0.2, threshold=1.0, verdict="good"
        )
        session.add(new)
        session.flush()
        assert (old.superseded, new.superseded) == (True, False)


def test_rebuild_sets_the_flags_after_a_bulk_insert_around_the_orm(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    image = add_image(session_factory, project_id, 1)
    version = add_version(session_factory, project_id)
    with session_factory() as session, session.begin():
        session.execute(
            insert(Prediction),
            [
                {
                    "image_id": image,
                    "model_version_id": version,
                    "score": score,
                    "threshold": 1.0,
                    "verdict": "good",
                    "created_at": T0 + timedelta(minutes=minutes),
                }
                for score, minutes in ((0.1, 3), (0.2, 9), (0.3, 1))
            ],
        )
    assert sum(not flag for flag in flags(session_factory, image).values()) == 3  # all "latest"
    with session_factory() as session, session.begin():
        assert rebuild_superseded(session, [image]) == 3
    latest = latest_by_lookup(session_factory, image, version)
    assert {pid for pid, flag in flags(session_factory, image).items() if not flag} == {latest}


def test_latest_prediction_ids_per_version_match_the_correlated_lookup(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    images = [add_image(session_factory, project_id, n) for n in range(3)]
    versions = [add_version(session_factory, project_id) for _ in range(2)]
    for n, image in enumerate(images):
        for version in versions[: 1 + n % 2]:
            for minutes in (7, 2, 7 + n):
                add_prediction(session_factory, image, version, 0.1 * n, minutes=minutes)
    expected = {
        (image, version): latest_by_lookup(session_factory, image, version)
        for image in images
        for version in versions
    }
    with session_factory() as session:
        latest = latest_prediction_ids(project_id, dialect=session.get_bind().dialect.name)
        got = {
            (row.image_id, row.model_version_id): row.prediction_id
            for row in session.execute(select(latest))
        }
        one = latest_prediction_ids(project_id, versions[1], per_version=False)
        got_one = {row.image_id: row.prediction_id for row in session.execute(select(one))}
    assert got == {key: value for key, value in expected.items() if value is not None}
    assert got_one == {
        image: expected[(image, versions[1])]
        for image in images
        if expected[(image, versions[1])] is not None
    }

"""The same storage layer on PostgreSQL, run only when ``LOUPE_TEST_POSTGRES_URL`` is set.

Example: ``LOUPE_TEST_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:54329/loupe``. The
database's Loupe tables are dropped (``downgrade base``) before and after each test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import db.repository
from db import (
    Base,
    Image,
    Review,
    add_review,
    create_engine_for_url,
    current_label,
    current_labels_query,
    downgrade,
    get_or_create_image,
    undo_last_review,
    upgrade,
)

POSTGRES_URL = os.environ.get("LOUPE_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="LOUPE_TEST_POSTGRES_URL is not set")


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    """A freshly migrated PostgreSQL database (overrides the SQLite fixture)."""
    postgres = create_engine_for_url(POSTGRES_URL)
    downgrade(postgres, "base")
    upgrade(postgres)
    yield postgres
    downgrade(postgres, "base")
    postgres.dispose()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_constraints_and_triggers(
    session_factory: sessionmaker[Session], make_user: Callable[..., int], make_image: Callable
) -> None:
    reviewer, image = make_user("ann"), make_image(1)
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        session.add(Review(image_id=image, reviewer_id=reviewer, label="maybe"))
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        session.add(Review(image_id=999, reviewer_id=reviewer, label="good"))
    with session_factory() as session, session.begin():
        add_review(session, image_id=image, reviewer_id=reviewer, label="good")
    for statement in ("UPDATE reviews SET note = 'x'", "DELETE FROM reviews", "TRUNCATE reviews"):
        with (
            pytest.raises(DBAPIError, match="reviews are append-only"),
            session_factory() as session,
            session.begin(),
        ):
            session.execute(text(statement))


def test_review_log_and_undo(
    session_factory: sessionmaker[Session], make_user: Callable[..., int], make_image: Callable
) -> None:
    ann, bob, image = make_user("ann"), make_user("bob"), make_image(1)
    with session_factory() as session, session.begin():
        add_review(session, image_id=image, reviewer_id=ann, label="good")
        add_review(session, image_id=image, reviewer_id=bob, label="defect", defect_type="crack")
        add_review(session, image_id=image, reviewer_id=ann, label="good")
    with session_factory() as session, session.begin():
        assert undo_last_review(session, reviewer_id=ann) is not None
    with session_factory() as session:
        latest = current_label(session, image)
        assert latest is not None and latest.label == "defect"
        assert latest.created_at.tzinfo == UTC
        rows = session.scalars(current_labels_query()).all()
        assert [(row.image_id, row.label) for row in rows] == [(image, "defect")]


def test_image_insert_race_recovers_inside_the_transaction(
    session_factory: sessionmaker[Session],
    project_id: int,
    png: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arguments = {
        "data": png(4),
        "original_name": "a.png",
        "project_id": project_id,
        "source": "upload",
        "width": 8,
        "height": 8,
    }
    with session_factory() as session, session.begin():
        winner, _ = get_or_create_image(session, **arguments)
    monkeypatch.setattr(db.repository, "_find_image", _stale_once(db.repository._find_image))
    with session_factory() as session, session.begin():
        image, created = get_or_create_image(session, **arguments)
        assert (image.id, created) == (winner.id, False)
        assert session.scalar(select(Image.id).where(Image.id == winner.id)) == winner.id


def test_downgrade_drops_every_table(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)


def _stale_once(find: Callable[..., Image | None]) -> Callable[..., Image | None]:
    calls = []

    def lookup(session: Session, project_id: int, digest: str) -> Image | None:
        calls.append(digest)
        return None if len(calls) == 1 else find(session, project_id, digest)

    return lookup

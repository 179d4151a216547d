"""Fixtures for the storage tests: the store on every backend; users, a project and images.

Here ``engine`` runs every test that uses it, or a fixture built on it, on each backend: a SQLite
file in the data directory (the default URL) and a fresh PostgreSQL database, reached through
``LOUPE_DATABASE_URL`` as a deployment would (see ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import Project, Role, User, init_db
from db.images import get_or_create_image


@pytest.fixture
def engine(
    data_dir: Path,
    database_backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Engine]:
    """A migrated database: SQLite in the data directory, or a fresh PostgreSQL database."""
    if database_backend == "postgresql":
        monkeypatch.setenv("LOUPE_DATABASE_URL", request.getfixturevalue("postgres_database_url"))
    migrated = init_db()
    yield migrated
    migrated.dispose()


@pytest.fixture
def make_user(session_factory: sessionmaker[Session]) -> Callable[..., int]:
    """Create a user without hashing cost (the hash is a placeholder); return its id."""

    def create(name: str, role: str = Role.INSPECTOR) -> int:
        with session_factory() as session, session.begin():
            user = User(name=name, role=role, password_hash="not-a-real-hash")
            session.add(user)
            session.flush()
            return user.id

    return create


@pytest.fixture
def project_id(session_factory: sessionmaker[Session]) -> int:
    """A project ("cells", solar cell, two defect types)."""
    with session_factory() as session, session.begin():
        project = Project(name="cells", object_name="solar cell", defect_types=["crack", "dark"])
        session.add(project)
        session.flush()
        return project.id


def png_bytes(seed: int = 0, size: int = 8) -> bytes:
    """A tiny PNG whose pixels depend on ``seed``."""
    image = PILImage.new("L", (size, size), color=seed % 256)
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png() -> Callable[..., bytes]:
    """The :func:`png_bytes` helper, as a fixture (test modules do not import conftest)."""
    return png_bytes


@pytest.fixture
def make_image(session_factory: sessionmaker[Session], project_id: int) -> Callable[[int], int]:
    """Store a tiny distinct PNG in the project; return the image id."""

    def create(seed: int = 0) -> int:
        with session_factory() as session, session.begin():
            image, _ = get_or_create_image(
                session,
                data=png_bytes(seed),
                original_name=f"part-{seed}.png",
                project_id=project_id,
                source="upload",
                width=8,
                height=8,
            )
            return image.id

    return create

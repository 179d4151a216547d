"""Fixtures for the storage tests: tiny stored images.

The store on every backend, users and a project come from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from db.images import get_or_create_image


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

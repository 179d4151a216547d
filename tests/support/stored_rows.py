"""Rows the storage tests write directly: images, model versions and predictions.

Imported as ``from stored_rows import add_image, add_version, add_prediction``
(``tests/support`` is on pytest's pythonpath); the session factory comes from the
``session_factory`` fixture.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import Image, Prediction, activate_model_version, register_model_version

T0 = datetime(2025, 3, 1, tzinfo=UTC)
"""Default prediction time of :func:`add_prediction` (plus its ``minutes``)."""


def image_row(project_id: int, n: int | str, **fields: Any) -> Image:
    """An unsaved 8 x 8 image row ``images/<n>.png`` with no file (digest from ``n``)."""
    digest = f"{n:064x}" if isinstance(n, int) else hashlib.sha256(n.encode()).hexdigest()
    return Image(
        **{
            "project_id": project_id,
            "sha256": digest,
            "stored_path": f"images/{n}.png",
            "original_name": f"{n}.png",
            "width": 8,
            "height": 8,
            "size_bytes": 1,
            "source": "upload",
            **fields,
        }
    )


def add_image(factory: sessionmaker[Session], project_id: int, n: int, **fields: Any) -> int:
    """Store :func:`image_row` in its own transaction; return its id."""
    with factory() as session, session.begin():
        image = image_row(project_id, n, **fields)
        session.add(image)
        session.flush()
        return image.id


def add_version(
    factory: sessionmaker[Session],
    project_id: int,
    threshold: float = 1.0,
    *,
    active: bool = True,
    kind: str = "patchcore",
) -> int:
    """Register a model version (activated unless ``active=False``); return its id."""
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind=kind,
            artifact_path="models/cells/v",
            metrics={},
            threshold=threshold,
            training_snapshot={},
        )
        if active:
            activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def add_prediction(
    factory: sessionmaker[Session],
    image_id: int,
    version_id: int,
    score: float,
    *,
    threshold: float = 1.0,
    at: datetime | None = None,
    minutes: int = 0,
    **fields: Any,
) -> int:
    """Store a prediction judged at ``threshold`` (at ``at``, or ``T0`` + ``minutes``)."""
    with factory() as session, session.begin():
        row = Prediction(
            image_id=image_id,
            model_version_id=version_id,
            score=score,
            threshold=threshold,
            verdict="defect" if score >= threshold else "good",
            created_at=at or T0 + timedelta(minutes=minutes),
            **fields,
        )
        session.add(row)
        session.flush()
        return row.id

"""A hot-folder watcher's progress: claim a file, finish it, and find what a crash left."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import HotFolderFile, Image, Prediction


def taken_file(
    session: Session, project_id: int, folder: str, name: str, sha256: str
) -> HotFolderFile | None:
    """The row of a file already claimed or finished (same folder, name and content)."""
    return session.scalar(
        select(HotFolderFile).where(
            HotFolderFile.project_id == project_id,
            HotFolderFile.folder == folder,
            HotFolderFile.name == name,
            HotFolderFile.sha256 == sha256,
        )
    )


def claim_file(session: Session, project_id: int, folder: str, name: str, sha256: str) -> int:
    """Mark a file as being scored (flushed; the caller commits); returns the row id."""
    row = HotFolderFile(
        project_id=project_id, folder=folder, name=name, sha256=sha256, status="scoring"
    )
    session.add(row)
    session.flush()
    return row.id


def finish_file(
    session: Session,
    row_id: int,
    *,
    status: str,
    reason: str | None = None,
    image_id: int | None = None,
    prediction_id: int | None = None,
) -> HotFolderFile:
    """Record how a claimed file ended: ``processed`` (with its ids) or ``refused`` (why)."""
    row = session.get(HotFolderFile, row_id)
    if row is None:
        raise LookupError(f"There is no hot-folder file {row_id}.")
    row.status, row.reason = status, reason
    row.image_id, row.prediction_id = image_id, prediction_id
    row.finished_at = utcnow()
    session.flush()
    return row


def stored_since(
    session: Session, project_id: int, sha256: str, since: datetime
) -> tuple[int, int] | None:
    """``(image id, prediction id)`` of the project's image with these bytes scored since then.

    What a watcher that crashed between scoring and finishing a file left behind.
    """
    row = session.execute(
        select(Image.id, Prediction.id)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(
            Image.project_id == project_id,
            Image.sha256 == sha256,
            Prediction.created_at >= since,
        )
        .order_by(Prediction.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def hot_folder_counts(session: Session, project_id: int) -> dict[str, int]:
    """How many files the project's watchers took in, by state (``scoring``, ``processed``...)."""
    rows = session.execute(
        select(HotFolderFile.status, func.count())
        .where(HotFolderFile.project_id == project_id)
        .group_by(HotFolderFile.status)
    ).all()
    return {status: int(count) for status, count in rows}


def recent_refusals(session: Session, project_id: int, *, limit: int = 20) -> list[HotFolderFile]:
    """The project's latest refused hot-folder files (with their reasons), newest first."""
    return list(
        session.scalars(
            select(HotFolderFile)
            .where(HotFolderFile.project_id == project_id, HotFolderFile.status == "refused")
            .order_by(HotFolderFile.id.desc())
            .limit(limit)
        )
    )

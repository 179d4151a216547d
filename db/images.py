"""Images of a project: stored once per content (sha256), the file written with its row.

None of these functions commits: the caller owns the transaction, e.g.
``with factory() as session, session.begin(): ...``, so a multi-row change is all or nothing.
The bytes live on disk (:mod:`db.image_store`); the row names them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.base import ImageSource
from db.image_store import sha256_hex, stored_path_for, write_image_file
from db.models import Image
from db.models.images import ORIGINAL_NAME_LENGTH


def get_image(session: Session, image_id: int) -> Image | None:
    """The stored image row with this id, or ``None``."""
    return session.get(Image, image_id)


def get_or_create_image(
    session: Session,
    *,
    data: bytes,
    original_name: str,
    project_id: int,
    source: str,
    width: int,
    height: int,
    data_dir: Path | None = None,
) -> tuple[Image, bool]:
    """Return the project's image with these bytes, storing file and row the first time.

    The file is written (atomically) before the row is inserted, so a committed row always has
    its file; a file whose row was rolled back is harmless (same bytes, same path, reused next
    time). If a concurrent session inserts the same image first, the insert fails inside a
    SAVEPOINT, which is rolled back, and the other session's row is returned: the caller's
    transaction goes on.

    Args:
        session: The caller's session (inside the caller's transaction).
        data: The image file's bytes.
        original_name: The user's file name: display metadata only, never part of a path.
        project_id: The project the image belongs to.
        source: One of :class:`db.base.ImageSource`.
        width: Width in pixels (decoded by the caller).
        height: Height in pixels.
        data_dir: The data directory; default :func:`db.settings.data_dir`.

    Returns:
        ``(image, created)``; ``created`` is ``False`` when an existing row was reused.

    Raises:
        ValueError: On empty data or an unknown source.
    """
    if not data:
        raise ValueError("refusing to store an empty image")
    source = ImageSource(source).value
    digest = sha256_hex(data)
    existing = _find_image(session, project_id, digest)
    if existing is not None:
        write_image_file(existing.stored_path, data, data_dir)  # restores a lost file
        return existing, False
    stored_path = stored_path_for(digest, data)
    write_image_file(stored_path, data, data_dir)
    image = Image(
        project_id=project_id,
        sha256=digest,
        stored_path=stored_path,
        original_name=original_name[:ORIGINAL_NAME_LENGTH],
        width=width,
        height=height,
        size_bytes=len(data),
        source=source,
    )
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:
        winner = _find_image(session, project_id, digest)
        if winner is None:  # not the race: some other constraint failed
            raise
        return winner, False
    return image, True


def _find_image(session: Session, project_id: int, digest: str) -> Image | None:
    return session.scalars(
        select(Image).where(Image.project_id == project_id, Image.sha256 == digest)
    ).first()

"""Files a hot-folder watcher took in: its progress, kept so a restart scores nothing twice.

A file is *claimed* (``scoring``) before it is scored and *finished* (``processed`` or
``refused``, with the reason) after; the watcher moves it out of the folder last. After a
crash, a claimed file is finished from what was stored, or scored again when nothing was
(:mod:`services.hot_folder`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow
from db.models.images import SHA256_HEX_LENGTH

FOLDER_LENGTH = 1024
FILE_NAME_LENGTH = 255
HOT_FOLDER_STATES = ("scoring", "processed", "refused")


class HotFolderFile(Base):
    """One file (by folder, name and content) a watcher took in for a project."""

    __tablename__ = "hot_folder_files"
    __table_args__ = (
        UniqueConstraint("project_id", "folder", "name", "sha256"),
        CheckConstraint("status IN ('scoring', 'processed', 'refused')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    folder: Mapped[str] = mapped_column(String(FOLDER_LENGTH))
    name: Mapped[str] = mapped_column(String(FILE_NAME_LENGTH))
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

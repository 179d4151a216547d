"""Background jobs (training, batch scoring, imports) and their progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import ENUM_LENGTH, Base, JobStatus, sql_in, utcnow
from db.models.accounts import User
from db.models.projects import Project


class Job(Base):
    """A unit of background work, its parameters, status, progress and resource use."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(sql_in("status", JobStatus), name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(ENUM_LENGTH), default=JobStatus.QUEUED.value)
    progress: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    device: Mapped[str | None] = mapped_column(String(32))
    peak_memory_mb: Mapped[float | None]
    worker_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    project: Mapped[Project | None] = relationship()
    created_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"

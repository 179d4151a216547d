"""Background jobs (training, batch scoring, imports), their progress, and the workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import ENUM_LENGTH, Base, JobStatus, sql_in, utcnow
from db.models.accounts import User
from db.models.projects import ModelVersion, Project

WORKER_ID_LENGTH = 64
HOST_LENGTH = 255


class Job(Base):
    """A unit of background work, its parameters, status, progress and resource use.

    A worker claims a queued job by a conditional update (see :mod:`db.jobs`), writes
    ``heartbeat_at`` while it runs, and checks ``cancel_requested`` between steps.
    ``result_model_version_id`` is the candidate version a training job produced.
    """

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
    worker_id: Mapped[str | None] = mapped_column(String(WORKER_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    heartbeat_at: Mapped[datetime | None]
    result_model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))

    project: Mapped[Project | None] = relationship()
    created_by: Mapped[User | None] = relationship()
    result_model_version: Mapped[ModelVersion | None] = relationship()

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"


class Worker(Base):
    """A background worker process: where it runs and when it last said it was alive.

    ``id`` is ``<host>:<pid>:<random>``, the value jobs carry in ``Job.worker_id``. A worker
    whose process is gone (same host) or whose heartbeat is stale is dead; its running jobs
    are retried once or failed by :func:`db.job_workers.recover_orphaned_jobs`.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(WORKER_ID_LENGTH), primary_key=True)
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    current_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))

    def __repr__(self) -> str:
        return f"Worker(id={self.id!r}, stopped_at={self.stopped_at!r})"

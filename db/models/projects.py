"""Inspection projects and the model versions trained for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import ENUM_LENGTH, Base, ModelStatus, sql_in, utcnow
from db.models.accounts import User

PROJECT_NAME_LENGTH = 128
PATH_LENGTH = 512


class Project(Base):
    """One inspected object (e.g. "solar cell") with its defect vocabulary and FNR target.

    ``active_model_version_id`` points at the model that scores new images. It closes a cycle
    with ``model_versions.project_id``, so its foreign key is added after both tables exist
    (``use_alter``) and the ORM writes it in a second statement (``post_update``).
    """

    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("target_fnr >= 0 AND target_fnr <= 1", name="target_fnr_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(PROJECT_NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    object_name: Mapped[str] = mapped_column(String(PROJECT_NAME_LENGTH), default="")
    defect_types: Mapped[list[str]] = mapped_column(default=list)
    active_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True)
    )
    target_fnr: Mapped[float] = mapped_column(default=0.01)
    # Per-project options (e.g. ``{"language_model": {"enabled": true, "source": "smollm2"}}``);
    # see :mod:`services.project_settings`. Assign a new dict rather than editing one in place.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    active_model_version: Mapped[ModelVersion | None] = relationship(
        foreign_keys=[active_model_version_id], post_update=True
    )

    def __repr__(self) -> str:
        return f"Project(id={self.id!r}, name={self.name!r})"


def _own_model_number(context: DefaultExecutionContext) -> int:
    """Default ``model_number`` of a row inserted without one: its own ``version`` number.

    :func:`db.model_versions.register_model_version` always sets the lineage; a row written
    around it (a test's or a benchmark's) becomes a model of its own, revision 0.
    """
    return int(context.get_current_parameters()["version"])


class ModelVersion(Base):
    """A trained model: where its files are, how it scored, and exactly what it learned from.

    ``training_snapshot`` records the image hashes and labels used for training, so a version
    can be reproduced or audited after more reviews arrive. JSON columns are not mutation
    tracked: assign a new value rather than editing one in place.

    ``version`` is the project's sequential internal number (artifact directories, the API,
    foreign keys by number). ``model_number`` and ``revision`` place the version in its model
    lineage (:mod:`db.model_lineages`): an instant update or a recalibration is the next
    revision of its parent's model ("v2.14"); a fit from scratch starts a new model ("v3.0").
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        UniqueConstraint("project_id", "model_number", "revision"),
        CheckConstraint(sql_in("status", ModelStatus), name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("model_number >= 1", name="model_number_positive"),
        CheckConstraint("revision >= 0", name="revision_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    version: Mapped[int]
    model_number: Mapped[int] = mapped_column(default=_own_model_number)
    revision: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(String(32))
    artifact_path: Mapped[str] = mapped_column(String(PATH_LENGTH))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    threshold: Mapped[float | None]
    training_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(ENUM_LENGTH), default=ModelStatus.CANDIDATE.value)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    project: Mapped[Project] = relationship(foreign_keys=[project_id])
    created_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return (
            f"ModelVersion(id={self.id!r}, project_id={self.project_id!r}, "
            f"version={self.version!r}, model_number={self.model_number!r}, "
            f"revision={self.revision!r}, status={self.status!r})"
        )

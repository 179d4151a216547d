"""Model lineages: a model ("v2") and its revisions ("v2.0", "v2.1", ... "v2.14").

An instant update (:mod:`db.instant_updates`: confirmed Good parts added to the memory bank)
and a recalibration (the same model, its threshold chosen again:
:attr:`db.model_metrics.ModelMetrics.same_model_as`) do not make a new model: they are the next
*revision* of their parent's model. A fit from scratch (a first model, a refit, another kind, a
feedback scorer, a classifier) starts a new *model*, numbered ``max + 1`` in the project across
every kind, at revision 0.

``ModelVersion.version`` stays the project's sequential internal number (artifact
directories, the API); ``model_number`` and ``revision`` are what a person reads
(:func:`version_label`). :func:`lineage_number` numbers a new version
(:func:`db.model_versions.register_model_version` calls it under the project's write lock);
migration 0016 numbered the versions that existed before, by the same rule.

Nothing here commits or writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from db.base import ModelStatus
from db.model_families import ModelFamily, model_family
from db.model_metrics import ModelMetrics, read_metrics
from db.models import ModelVersion

__all__ = [
    "Lineage",
    "LineageNumber",
    "Revision",
    "RevisionOrigin",
    "label_of",
    "lineage_number",
    "lineages",
    "model_label",
    "model_numbers",
    "parent_version_id",
    "revision_origin",
    "same_model_ids",
    "version_label",
    "version_labels",
]


class LineageNumber(NamedTuple):
    """Where a version sits: its model and its revision of that model."""

    model_number: int
    revision: int


class RevisionOrigin(StrEnum):
    """What made a revision."""

    TRAINING = "training"
    INSTANT_UPDATE = "instant update"
    RECALIBRATION = "recalibration"


# --------------------------------------------------------------------------- labels


def model_label(model_number: int) -> str:
    """A model as a person reads it: ``"v2"``."""
    return f"v{int(model_number)}"


def version_label(model_number: int, revision: int) -> str:
    """A revision as a person reads it: ``"v2.14"`` (the model's first version is ``"v2.0"``)."""
    return f"v{int(model_number)}.{int(revision)}"


def label_of(version: ModelVersion) -> str:
    """The label of a stored version (``"v2.14"``).

    A transient row not yet numbered (no ``model_number``) shows its internal number
    (``"v7"``).
    """
    if version.model_number is None:
        return f"v{version.version}"
    return version_label(version.model_number, version.revision or 0)


# --------------------------------------------------------------------------- numbering rule


def parent_version_id(metrics: Mapping[str, Any] | None, own_id: int | None = None) -> int | None:
    """The version whose model a metrics document says it reuses (its direct parent), or None.

    The last instant update's parent, else a recalibration's first ``same_model_as`` id (the
    reading of :func:`db.model_families.detector_lineage`).

    Args:
        metrics: A version's metrics document (``None``: none).
        own_id: The version's own id, never its own parent.
    """
    parents = ModelMetrics(dict(metrics or {})).lineage_parents
    return next((parent for parent in parents if parent != own_id), None)


def revision_origin(metrics: Mapping[str, Any] | None) -> RevisionOrigin:
    """What made a version, read from its metrics document."""
    document = ModelMetrics(dict(metrics or {}))
    if not document.lineage_parents:
        return RevisionOrigin.TRAINING
    last_update = next(reversed(document.instant_updates), None)
    if last_update is not None and isinstance(last_update.parent_version_id, int):
        return RevisionOrigin.INSTANT_UPDATE
    return RevisionOrigin.RECALIBRATION


def lineage_number(
    session: Session, project_id: int, *, kind: str, metrics: Mapping[str, Any] | None
) -> LineageNumber:
    """The model number and revision a new version of the project gets.

    A version whose metrics name a parent (:func:`parent_version_id`) of the same project and
    kind takes its parent's model and that model's next revision (after its highest one, also
    when the parent is an older revision); any other version starts a new model. Call it under
    the project's write lock (:func:`db.project_lock.locked_project`), as
    :func:`db.model_versions.register_model_version` does.

    Args:
        session: The caller's session.
        project_id: The project.
        kind: The new version's model kind.
        metrics: Its metrics document.

    Returns:
        The numbers to store.
    """
    parent_id = parent_version_id(metrics)
    if parent_id is not None:
        parent = session.execute(
            select(ModelVersion.model_number, ModelVersion.kind).where(
                ModelVersion.id == parent_id, ModelVersion.project_id == project_id
            )
        ).first()
        if parent is not None and parent.kind == kind:
            latest = session.scalar(
                select(func.max(ModelVersion.revision)).where(
                    ModelVersion.project_id == project_id,
                    ModelVersion.model_number == parent.model_number,
                )
            )
            return LineageNumber(parent.model_number, (latest or 0) + 1)
    top = session.scalar(
        select(func.max(ModelVersion.model_number)).where(ModelVersion.project_id == project_id)
    )
    return LineageNumber((top or 0) + 1, 0)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Revision:
    """One version of a model, as the Models page lists it.

    Attributes:
        version_id: Its id (what promote and roll back act on).
        version: Its internal sequential number.
        revision: Its revision of the model (0 first).
        label: ``"v2.14"``.
        kind: Its model kind.
        status: ``candidate``, ``active`` or ``retired``.
        threshold: Its decision threshold, if any.
        created_at: When it was registered.
        origin: What made it.
        notes: Its free-text notes.
        was_active: Whether it ever served (so it can be rolled back to).
        facts: The scalar values of its metrics document
            (:meth:`db.model_metrics.ModelMetrics.summary`).
    """

    version_id: int
    version: int
    revision: int
    label: str
    kind: str
    status: str
    threshold: float | None
    created_at: datetime
    origin: RevisionOrigin
    notes: str
    was_active: bool
    facts: dict[str, int | float | str | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Lineage:
    """A model and its revisions.

    Attributes:
        model_number: The model's number.
        kind: The kind of its first revision (all share it).
        family: Which slot of the project it fills (:class:`db.model_families.ModelFamily`).
        revisions: Its revisions, newest (highest revision) first.
    """

    model_number: int
    kind: str
    family: ModelFamily
    revisions: tuple[Revision, ...]

    @property
    def label(self) -> str:
        """``"v2"``."""
        return model_label(self.model_number)

    @property
    def active(self) -> Revision | None:
        """The revision serving now, if one does."""
        return next((r for r in self.revisions if r.status == ModelStatus.ACTIVE), None)

    @property
    def latest(self) -> Revision:
        """The newest revision."""
        return self.revisions[0]

    @property
    def title(self) -> str:
        """``"v2 (patchcore, active)"``, ``"v3 (patchcore, candidate)"``, ..."""
        state = "active" if self.active is not None else self.latest.status
        return f"{self.label} ({self.kind}, {state})"


def lineages(session: Session, project_id: int) -> list[Lineage]:
    """Every model of the project with its revisions, newest model first (one query).

    Args:
        session: The caller's session.
        project_id: The project.

    Returns:
        Lineages ordered by model number, highest first; revisions newest first.
    """
    versions = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.model_number.desc(), ModelVersion.revision.desc())
    ).all()
    grouped: dict[int, list[ModelVersion]] = {}
    for version in versions:
        grouped.setdefault(version.model_number, []).append(version)
    result = []
    for number, members in grouped.items():
        first = members[-1]
        result.append(
            Lineage(
                model_number=number,
                kind=first.kind,
                family=model_family(first.kind),
                revisions=tuple(_revision(version) for version in members),
            )
        )
    return result


def same_model_ids(project_id: int, version_id: int) -> Select[tuple[int]]:
    """SELECT the ids of every revision of the version's model (itself included), to embed.

    A subquery for ``IN``: the model is read in the same statement, so no list of ids travels.
    """
    chosen = aliased(ModelVersion)
    number = select(chosen.model_number).where(chosen.id == version_id).scalar_subquery()
    return select(ModelVersion.id).where(
        ModelVersion.project_id == project_id, ModelVersion.model_number == number
    )


def model_numbers(session: Session, project_id: int) -> dict[int, LineageNumber]:
    """``{version id: (model_number, revision)}`` of every version of the project (one query)."""
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.model_number, ModelVersion.revision).where(
            ModelVersion.project_id == project_id
        )
    )
    return {version_id: LineageNumber(number, revision) for version_id, number, revision in rows}


def version_labels(session: Session, project_id: int) -> dict[int, str]:
    """``{version id: "v2.14"}`` of every version of the project (one query)."""
    return {
        version_id: version_label(*number)
        for version_id, number in model_numbers(session, project_id).items()
    }


def _revision(version: ModelVersion) -> Revision:
    metrics = read_metrics(version)
    return Revision(
        version_id=version.id,
        version=version.version,
        revision=version.revision,
        label=label_of(version),
        kind=version.kind,
        status=version.status,
        threshold=version.threshold,
        created_at=version.created_at,
        origin=RevisionOrigin.TRAINING
        if version.revision == 0
        else revision_origin(metrics.document),
        notes=version.notes or "",
        was_active=metrics.was_active,
        facts=metrics.summary(),
    )

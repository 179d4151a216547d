"""Model families: the slots of a project that each hold at most one active model version.

* ``detector``: the one-class anomaly detector that scores new parts
  (``Project.active_model_version_id``); kinds ``patchcore``, ``autoencoder`` and any future
  zero-shot kind: every kind not listed below.
* ``classifier``: the supervised defect classifier (kind ``classifier``).
* ``explainer``: an explanation adapter (kind ``explainer``).
* ``scorer``: a feedback scorer (kind ``feedback_scorer``): p(defect) learned from the
  inspectors' labels on the active detector's scores and per-image vectors
  (:mod:`adcore.feedback_scorer`). It is tied to the detector it was trained on
  (:func:`detector_lineage`).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.base import ModelStatus
from db.model_metrics import read_metrics
from db.models import ModelVersion, Project


class ModelFamily(StrEnum):
    """Which slot of a project a model version fills (one active version per family)."""

    DETECTOR = "detector"
    CLASSIFIER = "classifier"
    EXPLAINER = "explainer"
    SCORER = "scorer"


CLASSIFIER_KINDS: frozenset[str] = frozenset({"classifier"})
EXPLAINER_KINDS: frozenset[str] = frozenset({"explainer"})
SCORER_KINDS: frozenset[str] = frozenset({"feedback_scorer"})


def model_family(kind: str) -> ModelFamily:
    """Return the family of a model kind; unknown kinds are one-class detectors."""
    if kind in CLASSIFIER_KINDS:
        return ModelFamily.CLASSIFIER
    if kind in EXPLAINER_KINDS:
        return ModelFamily.EXPLAINER
    if kind in SCORER_KINDS:
        return ModelFamily.SCORER
    return ModelFamily.DETECTOR


def active_version(
    session: Session, project_id: int, family: ModelFamily | str = ModelFamily.DETECTOR
) -> ModelVersion | None:
    """Return the project's active version of a family, or ``None``.

    Args:
        session: The caller's session.
        project_id: The project.
        family: ``"detector"`` (``Project.active_model_version``), ``"classifier"``,
            ``"explainer"`` or ``"scorer"``.
    """
    family = ModelFamily(family)
    if family == ModelFamily.DETECTOR:
        project = session.get(Project, project_id)
        if project is None or project.active_model_version_id is None:
            return None
        return session.get(ModelVersion, project.active_model_version_id)
    active = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.project_id == project_id,
            ModelVersion.status == ModelStatus.ACTIVE.value,
        )
        .order_by(ModelVersion.version.desc())
    ).all()
    return next((v for v in active if model_family(v.kind) == family), None)


def active_version_id(session: Session, project_id: int) -> int | None:
    """Return the id of the project's active model version, or ``None``."""
    return session.scalar(select(Project.active_model_version_id).where(Project.id == project_id))


def detector_lineage(version: ModelVersion) -> list[int]:
    """A detector version's id and the ids of the versions whose scores it shares, newest first.

    An instant update (:mod:`db.instant_updates`) only adds confirmed-good patches to the
    parent's memory bank, and a recalibration only moves the threshold of the same model
    (recorded as :attr:`db.model_metrics.ModelMetrics.same_model_as`): same backbone, same
    score scale, so the scores and vectors of every version in the lineage are comparable (a
    feedback scorer trained on one fits the others). A refit or another kind starts a new
    lineage: a new model number (:mod:`db.model_lineages`).

    Args:
        version: A detector version.

    Returns:
        ``[version.id, parent id, grandparent id, ...]``.
    """
    lineage = [version.id]
    for parent in read_metrics(version).lineage_parents:
        if parent not in lineage:
            lineage.append(parent)
    return lineage

"""Candidates side by side with the active model: what the models page shows before a promotion.

The numbers come from the gate record a training job stored on the candidate
(:class:`db.model_metrics.GateRecord`): the candidate and the then active model on the same
held-out parts.
``refusals`` is re-evaluated now (:func:`db.model_versions.gate_refusals`), so a candidate
evaluated against a model that is no longer active is shown as needing a new evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.base import ModelStatus
from db.model_families import ModelFamily, active_version, model_family
from db.model_metrics import GateDecision, read_metrics
from db.model_versions import gate_refusals
from db.models import ModelVersion

NOT_EVALUATED = GateDecision(passed=False)
"""The decision shown for a candidate without a gate record (its refusals say why)."""


@dataclass(frozen=True)
class CandidateComparison:
    """One candidate version next to the active version of its family.

    Attributes:
        version_id: The candidate's id.
        version: Its version number.
        kind: Its model kind.
        created_at: When it was registered.
        threshold: Its decision threshold.
        candidate: Its rates on the held-out parts (``fnr``, ``fpr``, counts), or ``None``
            when it was never evaluated.
        active: The active model's rates on the same parts, with ``version_id`` and
            ``version`` (``None`` when there was no active model, or no evaluation).
        heldout: Facts about the held-out parts (counts).
        decision: The gate's stored verdict (:data:`NOT_EVALUATED` when there is none).
        refusals: Why promoting it now would be refused (empty: it may be promoted).
        active_version_id: The id of the family's active version now.
        baseline: The untuned model's numbers on the same held-out data, for candidates
            that adapt a fixed base model (explainer adapters); otherwise ``None``.
    """

    version_id: int
    version: int
    kind: str
    created_at: datetime
    threshold: float | None
    candidate: dict[str, Any] | None
    active: dict[str, Any] | None
    heldout: dict[str, Any]
    decision: GateDecision
    refusals: list[str]
    active_version_id: int | None
    baseline: dict[str, Any] | None = None

    @property
    def may_promote(self) -> bool:
        """Whether :func:`db.model_versions.promote_model_version` would accept it now."""
        return not self.refusals


def candidate_comparisons(
    session: Session, project_id: int, family: ModelFamily | str = ModelFamily.DETECTOR
) -> list[CandidateComparison]:
    """Return the project's candidate versions of a family, newest first, with their numbers.

    Args:
        session: The caller's session.
        project_id: The project.
        family: ``"detector"``, ``"classifier"`` or ``"explainer"``.

    Returns:
        One comparison per candidate.
    """
    family = ModelFamily(family)
    current = active_version(session, project_id, family)
    candidates = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.project_id == project_id,
            ModelVersion.status == ModelStatus.CANDIDATE.value,
        )
        .order_by(ModelVersion.version.desc())
    ).all()
    comparisons = []
    for version in candidates:
        if model_family(version.kind) != family:
            continue
        gate = read_metrics(version).gate
        comparisons.append(
            CandidateComparison(
                version_id=version.id,
                version=version.version,
                kind=version.kind,
                created_at=version.created_at,
                threshold=version.threshold,
                candidate=None if gate is None else gate.candidate,
                active=None if gate is None else gate.active,
                heldout={} if gate is None else gate.heldout,
                decision=NOT_EVALUATED if gate is None else gate.decision,
                refusals=gate_refusals(session, version),
                active_version_id=None if current is None else current.id,
                baseline=None if gate is None else gate.untuned,
            )
        )
    return comparisons

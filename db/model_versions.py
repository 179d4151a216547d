"""The life cycle of model versions: registration, activation, the gate, thresholds.

None of these functions commits: the caller owns the transaction. Role checks happen here,
not only in the UI. Each change first takes the project's write lock
(:func:`db.project_lock.locked_project`), so concurrent changes cannot leave two active versions,
two versions with the same number, or a lost entry in a threshold history.

Model families (:mod:`db.model_families`): a project has at most one active version per
family, and activating a version retires only the active version of its own family.

The gate: a training job stores its verdict on the candidate in its metrics
(:class:`db.model_metrics.GateRecord`, computed by :mod:`adcore.gate`: the candidate and the
active model evaluated on the same held-out labelled parts). :func:`promote_model_version`
activates a candidate only if that verdict passed and is still about the model that is active
now, or with a recorded override reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.base import ModelStatus, utcnow
from db.errors import StorageError
from db.model_families import ModelFamily, active_version, detector_lineage, model_family
from db.model_lineages import label_of, lineage_number
from db.model_metrics import (
    ROLLBACK,
    GateOverride,
    StatusChange,
    ThresholdChange,
    read_metrics,
    record_gate_override,
    record_status_change,
    record_threshold_change,
)
from db.models import ModelVersion, Project, User
from db.permissions import CAN_MANAGE_MODELS, require_session_role
from db.project_lock import locked_project

PROMOTE_MESSAGE = "Only managers can promote or roll back a model."


class GateRefusedError(StorageError):
    """The gate refused to promote a candidate; ``reasons`` says why (for the UI).

    Attributes:
        reasons: One sentence per failed check.
        gate: The stored gate record (candidate vs active numbers), possibly empty.
    """

    def __init__(self, reasons: Sequence[str], gate: dict[str, Any] | None = None) -> None:
        self.reasons = tuple(reasons)
        self.gate = dict(gate or {})
        super().__init__("The gate refused this model: " + " ".join(self.reasons))


def next_version_number(session: Session, project_id: int) -> int:
    """Return the number the project's next model version will get (max + 1, from 1)."""
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project_id)
    )
    return (latest or 0) + 1


def register_model_version(
    session: Session,
    *,
    project_id: int,
    kind: str,
    artifact_path: str,
    metrics: dict[str, Any],
    threshold: float | None,
    training_snapshot: dict[str, Any],
    created_by: User | int | None = None,
    notes: str = "",
    version: int | None = None,
) -> ModelVersion:
    """Record a trained model as a new *candidate* version of the project (flushed).

    Its place in a model lineage comes from ``metrics`` (:func:`db.model_lineages.lineage_number`):
    an instant update or a recalibration is the next revision of its parent's model, anything
    else the first revision of a new model.

    Args:
        session: The caller's session.
        project_id: The project.
        kind: Detector kind, e.g. ``"patchcore"``.
        artifact_path: Where the saved model directory is.
        metrics: Its metrics document, made with :func:`db.model_metrics.new_version_metrics`
            (copied).
        threshold: The decision threshold, or ``None`` if none was calibrated yet.
        training_snapshot: The training images' hashes and labels (copied).
        created_by: The user (or user id) who trained it; ``None`` for the system (demo).
        notes: Free text.
        version: An explicit version number (e.g. the one already used in the artifact's
            directory name); default :func:`next_version_number`.

    Returns:
        The new version, status ``candidate``.

    Raises:
        LookupError: If the project does not exist.
        ValueError: If ``version`` is already taken or the threshold is not finite.
    """
    locked_project(session, project_id)
    number = next_version_number(session, project_id) if version is None else int(version)
    taken = session.scalar(
        select(ModelVersion.id).where(
            ModelVersion.project_id == project_id, ModelVersion.version == number
        )
    )
    if taken is not None:
        raise ValueError(f"Version {number} of project {project_id} already exists.")
    creator_id = created_by.id if isinstance(created_by, User) else created_by
    lineage = lineage_number(session, project_id, kind=kind, metrics=metrics)
    model_version = ModelVersion(
        project_id=project_id,
        version=number,
        model_number=lineage.model_number,
        revision=lineage.revision,
        kind=kind,
        artifact_path=str(artifact_path),
        metrics=dict(metrics),
        threshold=None if threshold is None else _finite(threshold),
        training_snapshot=dict(training_snapshot),
        status=ModelStatus.CANDIDATE.value,
        notes=notes,
        created_by_id=creator_id,
    )
    session.add(model_version)
    session.flush()
    return model_version


def activate_model_version(
    session: Session, *, version_id: int, user: User | None, system: bool = False
) -> ModelVersion:
    """Make a version the project's active model; the previously active one is retired.

    Everything happens in the caller's transaction.

    Args:
        session: The caller's session.
        version_id: The version to activate (a candidate, or a retired one to roll back).
        user: The acting manager or admin.
        system: Skip the role check (``user`` may then be ``None``): for Loupe's own set-up
            code such as the demo, never for a UI action.

    Returns:
        The activated version.

    Raises:
        LookupError: If the version does not exist.
        PermissionDenied: If the user may not manage models.
    """
    actor = None
    if not system:
        actor = require_session_role(
            session, user, *CAN_MANAGE_MODELS, message="Only managers can activate a model."
        )
    model_version = _get_version(session, version_id)
    project = locked_project(session, model_version.project_id)
    session.refresh(model_version)  # the lock is held: read the latest status and metrics
    return _activate(session, project, model_version, actor)


def gate_refusals(session: Session, model_version: ModelVersion) -> list[str]:
    """Why the gate would refuse to promote this version now (empty: it would pass).

    The stored verdict (:attr:`db.model_metrics.GateRecord.decision`) must have passed, and it
    must have compared the candidate with the model that is active now. A version with no stored
    verdict passes only when its family has no active model (there is nothing to protect).

    Args:
        session: The caller's session.
        model_version: The candidate.

    Returns:
        One sentence per failed check.
    """
    current = active_version(session, model_version.project_id, model_family(model_version.kind))
    gate = read_metrics(model_version).gate
    if gate is None:
        if current is None or current.id == model_version.id:
            return []
        return [
            f"Version {label_of(model_version)} has no gate evaluation against the active "
            f"version {label_of(current)}: queue a refit or recalibration job to evaluate it."
        ]
    decision = gate.decision
    reasons = [] if decision.passed else list(decision.reasons)
    if not decision.passed and not reasons:
        reasons.append("The gate evaluation did not pass.")
    evaluated = gate.active_version_id
    current_id = None if current is None else current.id
    if evaluated != current_id:
        then = "no active model" if evaluated is None else f"version id {evaluated}"
        now = "no active model" if current is None else f"version {label_of(current)}"
        reasons.append(
            f"The active model changed since the evaluation ({then} then, {now} now): "
            "evaluate the candidate again."
        )
    return reasons + _scorer_detector_refusals(session, model_version)


def _scorer_detector_refusals(session: Session, model_version: ModelVersion) -> list[str]:
    """Refusals of a feedback scorer not trained on the active detector's lineage.

    Its input is the detector's scores and vectors: it must come from the active detector or
    an instant-update ancestor of it (:func:`db.model_families.detector_lineage`).
    """
    if model_family(model_version.kind) != ModelFamily.SCORER:
        return []
    trained_with = read_metrics(model_version).scorer_detector
    trained_on = None if trained_with is None else trained_with.version_id
    detector = active_version(session, model_version.project_id, ModelFamily.DETECTOR)
    if detector is None:
        return ["The project has no active detector, whose scores the scorer reads."]
    if trained_on not in detector_lineage(detector):
        return [
            f"The scorer was trained on the scores of detector version id {trained_on}, but "
            f"the active detector is version {label_of(detector)} (another lineage): train the "
            "scorer again."
        ]
    return []


def promote_model_version(
    session: Session,
    version_id: int,
    user: User,
    override_reason: str | None = None,
) -> ModelVersion:
    """Activate a candidate if the gate passes; a manager may override with a reason.

    An override is recorded in the version's gate overrides and in its status history entry
    (who, when, reason, the refusal reasons and the gate's numbers:
    :class:`db.model_metrics.GateOverride`).

    Args:
        session: The caller's session (the caller commits).
        version_id: The candidate to promote.
        user: The acting manager or admin.
        override_reason: Why the manager promotes despite the gate; blank means no override.

    Returns:
        The now active version.

    Raises:
        PermissionDenied: If the user may not manage models.
        LookupError: If the version does not exist.
        GateRefusedError: If the gate refuses and no override reason is given (nothing changes).
    """
    actor = require_session_role(session, user, *CAN_MANAGE_MODELS, message=PROMOTE_MESSAGE)
    model_version = _get_version(session, version_id)
    project = locked_project(session, model_version.project_id)
    session.refresh(model_version)
    if model_version.status == ModelStatus.ACTIVE:
        return model_version
    reasons = gate_refusals(session, model_version)
    reason = (override_reason or "").strip()
    stored = read_metrics(model_version).gate
    gate = {} if stored is None else stored.to_json()
    if reasons and not reason:
        raise GateRefusedError(reasons, gate)
    change = _Change(action="promote")
    if reasons:
        override = GateOverride(
            at=utcnow().isoformat(),
            by=actor.name,
            by_id=actor.id,
            reason=reason,
            refusals=tuple(reasons),
            gate=gate,
        )
        record_gate_override(model_version, override)
        change = _Change(action="promote", override={"reason": reason, "refusals": reasons})
    return _activate(session, project, model_version, actor, change)


def rollback_to(session: Session, version_id: int, user: User) -> ModelVersion:
    """Make an earlier, previously active version active again, in one call.

    Any version that was active before (status ``retired`` with an ``active`` entry in its
    history) can be restored, however many versions ago; the version active now in its
    family is retired. No gate applies: the version already served.

    Args:
        session: The caller's session (the caller commits).
        version_id: The version to restore.
        user: The acting manager or admin.

    Returns:
        The restored, now active version.

    Raises:
        PermissionDenied: If the user may not manage models.
        LookupError: If the version does not exist.
        ValueError: If the version never was active (promote candidates instead).
    """
    actor = require_session_role(session, user, *CAN_MANAGE_MODELS, message=PROMOTE_MESSAGE)
    model_version = _get_version(session, version_id)
    project = locked_project(session, model_version.project_id)
    session.refresh(model_version)
    if model_version.status == ModelStatus.ACTIVE:
        return model_version
    if not read_metrics(model_version).was_active:
        raise ValueError(
            f"Version {label_of(model_version)} was never active: promote it through the gate."
        )
    current = active_version(session, project.id, model_family(model_version.kind))
    change = _Change(action=ROLLBACK, from_version=None if current is None else current.version)
    return _activate(session, project, model_version, actor, change)


def set_threshold(
    session: Session, *, version_id: int, threshold: float, user: User
) -> ModelVersion:
    """Change a version's decision threshold, recording who changed it, when, from and to what.

    The change is appended to the version's threshold history
    (:class:`db.model_metrics.ThresholdChange`: when, who, from and to what). Predictions
    already stored keep the threshold they were made with.

    Args:
        session: The caller's session.
        version_id: The model version.
        threshold: The new threshold (finite); parts scoring at or above it are flagged.
        user: The acting manager or admin.

    Returns:
        The changed version.

    Raises:
        PermissionDenied: If the user may not manage models (nothing is changed).
        LookupError: If the version does not exist.
        ValueError: If the threshold is not a finite number.
    """
    actor = require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change thresholds."
    )
    new = _finite(threshold)
    model_version = _get_version(session, version_id)
    locked_project(session, model_version.project_id)
    session.refresh(model_version)  # the lock is held: read the latest metrics and threshold
    change = ThresholdChange(
        at=utcnow().isoformat(),
        by=actor.name,
        by_id=actor.id,
        old=model_version.threshold,
        new=new,
    )
    record_threshold_change(model_version, change)
    model_version.threshold = new
    session.flush()
    return model_version


def list_model_versions(session: Session, project_id: int) -> list[ModelVersion]:
    """Return the project's model versions, newest (highest version number) first."""
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version.desc())
        )
    )


def _activate(
    session: Session,
    project: Project,
    model_version: ModelVersion,
    actor: User | None,
    change: _Change | None = None,
) -> ModelVersion:
    """Activate a version, retiring the active version of its family (lock already held)."""
    family = model_family(model_version.kind)
    is_detector = family == ModelFamily.DETECTOR
    if model_version.status == ModelStatus.ACTIVE and (
        not is_detector or project.active_model_version_id == model_version.id
    ):
        return model_version
    previous = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.project_id == project.id,
            ModelVersion.status == ModelStatus.ACTIVE.value,
            ModelVersion.id != model_version.id,
        )
        .execution_options(populate_existing=True)
    ).all()
    for old in previous:
        if model_family(old.kind) == family:
            _set_status(old, ModelStatus.RETIRED, actor)
    _set_status(model_version, ModelStatus.ACTIVE, actor, change)
    if is_detector:
        project.active_model_version = model_version
    session.flush()
    return model_version


def _get_version(session: Session, version_id: int) -> ModelVersion:
    model_version = session.get(ModelVersion, version_id)
    if model_version is None:
        raise LookupError(f"There is no model version with id {version_id}.")
    return model_version


@dataclass(frozen=True)
class _Change:
    """How an activation came about (recorded with its status change)."""

    action: str
    from_version: int | None = None
    override: dict[str, Any] | None = None


def _set_status(
    model_version: ModelVersion,
    status: ModelStatus,
    actor: User | None,
    change: _Change | None = None,
) -> None:
    entry = StatusChange(
        at=utcnow().isoformat(),
        status=status.value,
        by=actor.name if actor is not None else "system",
        action=None if change is None else change.action,
        from_version=None if change is None else change.from_version,
        override=None if change is None else change.override,
    )
    record_status_change(model_version, entry)
    model_version.status = status.value


def _finite(value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"A threshold must be a finite number, got {value!r}.")
    return number

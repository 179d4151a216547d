"""The life cycle of model versions: registration, activation and threshold changes.

None of these functions commits: the caller owns the transaction. Role checks happen here,
not only in the UI. Each change first takes the project's write lock
(:func:`db.queries.locked_project`), so concurrent changes cannot leave two active versions,
two versions with the same number, or a lost entry in a threshold history.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.base import ModelStatus, utcnow
from db.models import ModelVersion, User
from db.permissions import CAN_MANAGE_MODELS, require_session_role
from db.queries import locked_project

THRESHOLD_HISTORY_KEY = "threshold_history"
STATUS_HISTORY_KEY = "status_history"


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

    Args:
        session: The caller's session.
        project_id: The project.
        kind: Detector kind, e.g. ``"patchcore"``.
        artifact_path: Where the saved model directory is.
        metrics: JSON-serialisable facts about the fit (copied).
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
    model_version = ModelVersion(
        project_id=project_id,
        version=number,
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
    if model_version.status == ModelStatus.ACTIVE and project.active_model_version_id == version_id:
        return model_version
    previous = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.project_id == project.id,
            ModelVersion.status == ModelStatus.ACTIVE.value,
            ModelVersion.id != version_id,
        )
        .execution_options(populate_existing=True)
    ).all()
    for old in previous:
        _set_status(old, ModelStatus.RETIRED, actor)
    _set_status(model_version, ModelStatus.ACTIVE, actor)
    project.active_model_version = model_version
    session.flush()
    return model_version


def set_threshold(
    session: Session, *, version_id: int, threshold: float, user: User
) -> ModelVersion:
    """Change a version's decision threshold, recording who changed it, when, from and to what.

    The change is appended to ``metrics["threshold_history"]`` as
    ``{"at": ISO time, "by": name, "by_id": id, "old": old, "new": new}``. Predictions already
    stored keep the threshold they were made with.

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
    entry = {
        "at": utcnow().isoformat(),
        "by": actor.name,
        "by_id": actor.id,
        "old": model_version.threshold,
        "new": new,
    }
    metrics = dict(model_version.metrics or {})
    metrics[THRESHOLD_HISTORY_KEY] = [*metrics.get(THRESHOLD_HISTORY_KEY, []), entry]
    model_version.metrics = metrics  # a new dict: JSON columns do not track in-place edits
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


def _get_version(session: Session, version_id: int) -> ModelVersion:
    model_version = session.get(ModelVersion, version_id)
    if model_version is None:
        raise LookupError(f"There is no model version with id {version_id}.")
    return model_version


def _set_status(model_version: ModelVersion, status: ModelStatus, actor: User | None) -> None:
    entry = {
        "at": utcnow().isoformat(),
        "status": status.value,
        "by": actor.name if actor is not None else "system",
    }
    metrics = dict(model_version.metrics or {})
    metrics[STATUS_HISTORY_KEY] = [*metrics.get(STATUS_HISTORY_KEY, []), entry]
    model_version.metrics = metrics
    model_version.status = status.value


def _finite(value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"A threshold must be a finite number, got {value!r}.")
    return number

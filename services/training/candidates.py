"""Registering candidates: the job's project and active detector, saving a candidate version.

Shared by every job kind that trains something (:mod:`services.training.detector_jobs`,
:mod:`services.training.classifier_jobs`, :mod:`services.training.clip_jobs`,
:mod:`services.training.explainer_jobs`, :mod:`services.training.scorer_jobs`). A candidate is
never activated here: a manager promotes it through the gate
(:func:`db.model_versions.promote_model_version`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adcore.errors import DatasetError
from db import CAN_MANAGE_MODELS, ModelVersion, Project, User
from db.model_families import ModelFamily, active_version
from db.model_lineages import label_of
from db.model_versions import next_version_number, register_model_version
from db.permissions import require_session_role
from services.model_management import free_version_directory, project_slug
from services.training.context import JobContext, JobOutcome


def project_and_active_detector(
    session: Any, ctx: JobContext
) -> tuple[Project, ModelVersion | None]:
    """The job's project and its active detector, after checking the queuer may train models.

    Shared by every job kind that trains (also :mod:`services.training.classifier_jobs`).
    """
    if ctx.project_id is None:
        raise DatasetError("This job needs a project.")
    if ctx.created_by_id is not None:
        require_session_role(
            session,
            session.get(User, ctx.created_by_id),
            *CAN_MANAGE_MODELS,
            message="Only managers can train models.",
        )
    project = session.get(Project, ctx.project_id)
    if project is None:
        raise LookupError(f"There is no project with id {ctx.project_id}.")
    return project, active_version(session, project.id, ModelFamily.DETECTOR)


def save_candidate(
    ctx: JobContext,
    project: Project,
    detector: Any,
    metrics: dict[str, Any],
    snapshot: dict[str, Any],
    what: str,
) -> ModelVersion:
    """Save the artifact (atomically, by the detector) and register a candidate version.

    Args:
        ctx: The running job.
        project: The job's project.
        detector: What to save: anything with ``save(directory)``, ``kind`` and ``threshold``.
        metrics: The version's metrics (:func:`db.model_metrics.new_version_metrics`).
        snapshot: Its training snapshot.
        what: What the job made, for the version's notes (e.g. ``"Refit"``).

    Returns:
        The registered candidate.
    """
    ctx.raise_if_cancelled()
    with ctx.session_factory() as session:
        number = next_version_number(session, project.id)
    directory = free_version_directory(Path(ctx.models_root) / project_slug(project.name), number)
    detector.save(directory)
    with ctx.session_factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project.id,
            kind=detector.kind,
            artifact_path=directory.as_posix(),
            metrics=metrics,
            threshold=detector.threshold,
            training_snapshot=snapshot,
            created_by=ctx.created_by_id,
            notes=f"{what} by job {ctx.job_id}; a candidate until promoted through the gate.",
        )
    ctx.log(f"Registered candidate {label_of(version)} at {directory.as_posix()}")
    return version


def candidate_outcome(version: ModelVersion, gate: dict[str, Any], what: str) -> JobOutcome:
    """The job's outcome for a registered candidate and its gate record (the JSON it stored)."""
    decision = gate["decision"]
    verdict = "passes the gate" if decision["passed"] else "does not pass the gate"
    return JobOutcome(
        f"{what}: candidate {label_of(version)} {verdict}",
        version.id,
        {"gate": decision},
    )

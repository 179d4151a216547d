"""What a saved review sets off by itself: the automatic jobs that learn from it.

Called by the review service (:mod:`services.reviewing`) after every saved review, in a
savepoint of the review's transaction (a refusal here rolls back the savepoint only and never
undoes the review). Two rules, each queuing a job that only makes a candidate (a manager, or
the gate's automatic promotion where a project allows it, decides what goes live):

* **A defect found by an audit** (a passed part drawn at random and labelled defect: a miss)
  queues a ``recalibrate_threshold`` job at once, so the threshold is chosen again with the
  missed defect among the labelled parts. Missed defects come first: this is the only path by
  which evidence below the threshold can pull it down, since inspectors never see the other
  passed parts. Not while a recalibration is queued or running (that one will see the label).
* **The feedback scorer's training** after N reviews or at the end of a batch
  (:func:`services.scorer_training.maybe_queue_scorer_training`).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from db.audits import drawn_for_audit
from db.base import Label
from db.jobs import enqueue_automatic_job, has_pending_job
from db.labels import current_label
from db.model_families import ModelFamily, active_version
from db.models import Job, User
from db.permissions import CAN_REVIEW, require_session_role
from services.scorer_training import maybe_queue_scorer_training
from services.training.job_kinds import JobKind

logger = logging.getLogger(__name__)


def follow_up_review(session: Session, project_id: int, image_id: int, user: User) -> list[Job]:
    """Queue the automatic jobs a just-saved review calls for (see the module doc).

    Args:
        session: The caller's session (the caller commits).
        project_id: The project of the reviewed part.
        image_id: The reviewed part.
        user: The reviewer.

    Returns:
        The jobs queued (none, one or two).

    Raises:
        PermissionDenied: If the user may not review.
    """
    queued = [
        maybe_queue_recalibration_after_miss(session, project_id, image_id, user),
        maybe_queue_scorer_training(session, project_id, user),
    ]
    return [job for job in queued if job is not None]


def maybe_queue_recalibration_after_miss(
    session: Session, project_id: int, image_id: int, user: User
) -> Job | None:
    """Queue a recalibration when an audited part's current label is defect (a missed defect).

    Returns:
        The queued job, or ``None`` (not an audit, not a defect, no active detector, or one
        already queued or running).
    """
    require_session_role(session, user, *CAN_REVIEW)
    review = current_label(session, image_id)
    if review is None or review.label != Label.DEFECT or not drawn_for_audit(session, image_id):
        return None
    if active_version(session, project_id, ModelFamily.DETECTOR) is None:
        return None
    if has_pending_job(session, project_id, JobKind.RECALIBRATE_THRESHOLD):
        return None
    trigger = f"an audit found a missed defect (image {image_id})"
    job = enqueue_automatic_job(
        session,
        kind=JobKind.RECALIBRATE_THRESHOLD,
        parameters={"trigger": trigger, "image_id": image_id},
        project_id=project_id,
    )
    logger.info("Queued job %s (%s) for project %s: %s", job.id, job.kind, project_id, trigger)
    return job

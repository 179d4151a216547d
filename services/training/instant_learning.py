"""Job kind ``instant_update``: confirmed-good parts join the active model at once.

When an inspector labels Good a part the model flagged (the rule:
:func:`services.review_learning.learns_instantly`), the review service
(:mod:`services.reviewing`) puts the part into the project's waiting ``instant_update`` job
(:func:`queue_instant_update`, in the review's transaction). The job worker runs it
(:func:`instant_update_job`):

1. It waits for the project's *learning turn* (:func:`db.instant_updates.learning_turn`): one
   instant update at a time per project, across every worker process and host, serialised by
   the database. A job claimed while another update of the project runs waits there (shown as
   such on the Models page) and can be cancelled meanwhile.
2. :func:`learn_and_rescore`: the parts still labelled Good are added to the active model
   without retraining (:func:`services.instant_update.learn_from_confirmed_good`: a new active
   version, the parent kept for a rollback), then the project's unreviewed parts that the
   previous version scored are re-scored by the new one, so similar parts leave the review
   queue at once.

Merging: at most one job *waits* (is queued) per project, and every Good confirmed meanwhile
joins it (:func:`db.instant_updates.queue_for_learning`). An inspector pressing G four times a
second while an update runs gets one more update for all those parts, not one new model
version and one re-scoring of the queue per press; and each Good is in one job only.

Expected refusals (no PatchCore, no Good label any more, a part kept aside to measure false
alarms) end the job with the reason as its message; errors (model files missing, a lost race
after retries) fail it with the reason.

Retry after a dead worker: safe. Running the job again from the start learns nothing twice
(the model records the digests of what it learned, and a part already learned adds no new
version), the turn's lock died with the worker, and re-scoring again only adds one more
prediction per part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from db import Label, ModelVersion, User, current_label
from db.instant_updates import learning_turn, queue_for_learning
from db.models import Job
from db.permissions import PermissionDenied
from db.predictions import pending_images
from services.training.context import JobContext, JobOutcome
from services.training.job_kinds import JobKind

if TYPE_CHECKING:  # torch: imported when a job runs, not with the review service
    from adcore.detectors.base import Progress
    from services.instant_update import InstantUpdateResult

__all__ = [
    "DEFAULT_RESCORE_LIMIT",
    "FeedbackResult",
    "instant_update_job",
    "learn_and_rescore",
    "queue_instant_update",
    "still_good",
]

#: At most this many pending parts are re-scored after an update (newest first).
DEFAULT_RESCORE_LIMIT = 500

WAITING_MESSAGE = "Waiting for the project's running instant update"


@dataclass(frozen=True)
class FeedbackResult:
    """The instant update and the re-scoring that followed it.

    Attributes:
        update: What the instant update did.
        n_rescored: Pending parts scored again by the new version.
        n_cleared: Of those, parts flagged before and passed now.
        n_failed: Parts that could not be re-scored (file gone, unreadable).
    """

    update: InstantUpdateResult
    n_rescored: int = 0
    n_cleared: int = 0
    n_failed: int = 0

    @property
    def message(self) -> str:
        """One or two sentences for the inspector."""
        text = self.update.message
        if self.n_rescored:
            text += (
                f" Re-scored {self.n_rescored} waiting part(s) with the new version: "
                f"{self.n_cleared} no longer flagged."
            )
        return text

    def facts(self) -> dict[str, Any]:
        """JSON-ready facts about the update and the re-scoring (a job's outcome details)."""
        return {
            "updated": self.update.updated,
            "image_ids": list(self.update.image_ids),
            "version_id": self.update.version_id if self.update.updated else None,
            "patches_added": self.update.patches_added,
            "n_rescored": self.n_rescored,
            "n_cleared": self.n_cleared,
            "n_failed": self.n_failed,
        }


def queue_instant_update(session: OrmSession, *, project_id: int, image_id: int, user: User) -> Job:
    """Put a part just labelled Good into the project's waiting instant-update job (or queue one).

    Args:
        session: The review's session (the caller commits).
        project_id: The project.
        image_id: The part (its Good review is recorded in the same transaction).
        user: The reviewer.

    Returns:
        The job that will learn the part (queued, flushed).
    """
    return queue_for_learning(
        session, kind=JobKind.INSTANT_UPDATE, project_id=project_id, image_id=image_id, user=user
    )


def instant_update_job(ctx: JobContext) -> JobOutcome:
    """Learn the job's confirmed-good parts in the project's turn, then re-score the queue.

    Parameters (``ctx.parameters``): ``image_ids`` (the parts, in the order they were
    labelled) and ``user_id`` (the reviewer in whose name the update is made).

    Returns:
        The message for the inspector and the Models page, with the facts of
        :meth:`FeedbackResult.facts` (the new active version's id among them).

    Raises:
        ValueError: If the job names no project, no part or no reviewer.
        JobCancelledError: If the job was cancelled while it waited for its turn or re-scored.
    """
    image_ids = list(dict.fromkeys(int(i) for i in ctx.parameters.get("image_ids") or []))
    user_id = ctx.parameters.get("user_id")
    if ctx.project_id is None or not image_ids or user_id is None:
        raise ValueError("An instant update needs a project, the parts and the reviewer.")
    waited = False

    def wait_for_turn() -> None:
        """Called only while another update holds the turn: say so once, obey a cancel."""
        nonlocal waited
        if not waited:
            waited = True
            ctx.progress(0.0, WAITING_MESSAGE)
        ctx.raise_if_cancelled()

    with learning_turn(ctx.session_factory, ctx.project_id, between_tries=wait_for_turn):
        ctx.progress(0.05, f"Adding {len(image_ids)} good part(s) to the model's memory")
        result = learn_and_rescore(
            ctx.session_factory,
            project_id=ctx.project_id,
            image_ids=image_ids,
            user_id=int(user_id),
            models_dir=ctx.models_root,
            data_dir=ctx.data_dir,
            device=ctx.device,
            progress=ctx.scaled_progress(0.05, 1.0),
        )
    facts = result.facts()
    ctx.log(
        f"parts {image_ids}: {'new version' if facts['updated'] else 'no new version'}, "
        f"{facts['patches_added']} patches added, {facts['n_rescored']} re-scored, "
        f"{facts['n_cleared']} cleared, {facts['n_failed']} failed"
    )
    # The new version is active at once, not a candidate: no ``result_model_version_id``.
    return JobOutcome(result.message, None, facts)


def still_good(Session: sessionmaker[OrmSession], image_ids: list[int]) -> list[int]:  # noqa: N803
    """The parts of ``image_ids`` whose current label is still Good (an Undo may have come)."""
    with Session() as session:
        labels = {image_id: current_label(session, image_id) for image_id in image_ids}
    return [i for i, review in labels.items() if review is not None and review.label == Label.GOOD]


def learn_and_rescore(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
    *,
    project_id: int,
    image_ids: list[int],
    user_id: int,
    models_dir: str | Path,
    data_dir: Path | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    rescore_limit: int = DEFAULT_RESCORE_LIMIT,
) -> FeedbackResult:
    """Learn the parts still labelled Good in one update, then re-score the waiting parts.

    Call it in the project's learning turn (:func:`instant_update_job` does).

    Args:
        Session: The application's session factory.
        project_id: The project.
        image_ids: The confirmed-good parts (those relabelled or undone since are skipped).
        user_id: The reviewer in whose name the update is made.
        models_dir: Models root for the new version's files.
        data_dir: The data directory; default :func:`db.data_dir`.
        device: Torch device; default CUDA when available.
        progress: Optional ``progress(fraction, message)`` callback.
        rescore_limit: At most this many pending parts are re-scored.

    Returns:
        A :class:`FeedbackResult`; refusals (no PatchCore, no Good label, no permission, a
        part kept aside) come back as an un-updated result with the reason.

    Raises:
        InstantUpdateConflict: If other changes kept winning the race for the active version.
        LoupeError: If the active model's files are missing or unreadable.
    """
    from adcore.detectors.base import report, scaled_progress
    from adcore.detectors.registry import load_detector
    from services.inspection import rescore_images
    from services.instant_update import InstantUpdateResult, learn_from_confirmed_good

    tell = report(progress)
    confirmed = still_good(Session, image_ids)
    if not confirmed:
        return FeedbackResult(
            InstantUpdateResult(
                True, False, "Not learned: the part has no current Good label.", tuple(image_ids)
            )
        )
    with Session() as session:
        user = session.get(User, user_id)
        if user is not None:
            session.expunge(user)
    try:
        update = learn_from_confirmed_good(
            Session,
            project_id=project_id,
            image_ids=confirmed,
            user=user,
            models_dir=models_dir,
            data_dir=data_dir,
            device=device,
        )
    except (PermissionDenied, LookupError, ValueError) as err:
        return FeedbackResult(
            InstantUpdateResult(True, False, f"Not learned: {err}", tuple(confirmed))
        )
    if not update.updated or update.version_id is None:
        tell(1.0, update.message)
        return FeedbackResult(update)
    with Session() as session:
        pending = pending_images(session, project_id, update.parent_version_id, rescore_limit)
        artifact = session.get(ModelVersion, update.version_id).artifact_path
    if not pending:
        tell(1.0, update.message)
        return FeedbackResult(update)
    tell(0.5, f"Re-scoring {len(pending)} waiting part(s)")
    detector = load_detector(artifact, device=device)
    results = rescore_images(
        Session,
        project_id=project_id,
        detector=detector,
        model_version_id=update.version_id,
        image_ids=[image for image, _ in pending],
        progress=scaled_progress(tell, 0.5, 1.0),
        data_dir=data_dir,
    )
    was_flagged = dict(pending)
    cleared = sum(
        1 for r in results if r.ok and was_flagged.get(r.image_id) and r.verdict == Label.GOOD
    )
    return FeedbackResult(
        update,
        n_rescored=sum(r.ok for r in results),
        n_cleared=cleared,
        n_failed=sum(not r.ok for r in results),
    )

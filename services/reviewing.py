"""Reviewing: "an inspector labels a part", and everything a label sets off.

The one owner of a review. The Review page's desk (:mod:`pages.review_desk`), the Inspect page
(:func:`pages.review_recording.save_review`) and the replay benchmark call it; they display what
it returns and hold no write transaction of their own for reviewing.

:func:`label_part` is one transaction, committed once:

1. Whether the model flags the part, read from its stored prediction as the review queue
   judges it (:func:`db.review_queue.flagged_by_model`), before the label is written.
2. The review (:func:`db.review_queue.record_review`: the role check, a new defect type joins
   the project's vocabulary, the defect box is checked), with its message in the outbox
   (:mod:`db.verdict_events`).
3. In a savepoint, the follow-ups (:func:`services.review_followups.follow_up_review`: a
   recalibration when an audit finds a missed defect, the feedback scorer's training rule).
4. In a savepoint, instant learning: a Good on a part the model flagged
   (:func:`services.review_learning.learns_instantly`) joins the project's waiting
   ``instant_update`` job (:func:`services.training.instant_learning.queue_instant_update`),
   which the job worker runs, unless the triage model finds the part defect-like: then it
   waits for a second inspector's Good (:func:`services.safe_teaching.teaching_hold`), and the
   result says so.

A refusal in step 3 or 4 rolls back its savepoint only: the review is saved whatever happens
there, and the result says why nothing was queued. :func:`undo_last` and :func:`accept_page`
are the desk's two other keys.

Refusals of the review itself (no permission, an unknown part or label, a box on a good part)
are raised: :class:`db.permissions.PermissionDenied` (a :class:`db.errors.StorageError`),
``LookupError`` or ``ValueError``; nothing is written then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.engine import transaction
from db.errors import StorageError
from db.models import Job, User
from db.review_queue import flagged_by_model, record_review
from db.review_queue import undo_last as undo_last_review
from services.review_followups import follow_up_review
from services.review_learning import learns_instantly
from services.review_options import accept_page_as_good
from services.safe_teaching import teaching_hold
from services.training.instant_learning import queue_instant_update

__all__ = [
    "Notice",
    "PageAccepted",
    "QueuedJob",
    "ReviewSaved",
    "UndoDone",
    "accept_page",
    "label_part",
    "undo_last",
]

logger = logging.getLogger(__name__)

#: What a follow-up may fail with: its savepoint is rolled back and the page is told.
FOLLOW_UP_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    PermissionError,
    ValueError,
    LookupError,
    IntegrityError,
)


@dataclass(frozen=True)
class Notice:
    """A message for the page to show (``kind`` names the Streamlit call: ``st.info``...)."""

    kind: Literal["success", "info", "warning", "error"]
    text: str


@dataclass(frozen=True)
class QueuedJob:
    """A job a review queued (or joined): its id and kind."""

    id: int
    kind: str

    @classmethod
    def of(cls, job: Job) -> QueuedJob:
        """The id and kind of a job row."""
        return cls(job.id, str(job.kind))


@dataclass(frozen=True)
class ReviewSaved:
    """What :func:`label_part` saved and set off.

    Attributes:
        review_id: The new review.
        image_id: The labelled part.
        project_id: Its project.
        label: ``"good"`` or ``"defect"``.
        flagged: Whether the model flagged the part (its stored prediction, as the queue
            judges it) when it was labelled.
        follow_up_jobs: The automatic jobs queued (a recalibration, the scorer's training).
        learning_job_id: The ``instant_update`` job that will learn the part, when the label
            teaches the model at once (the project's waiting one, or a new one).
        notices: Messages for the page (why a follow-up was not queued).
        learning_held: Why a Good on a flagged part does not teach the detector yet (the
            triage model finds it defect-like), else ``None``.
    """

    review_id: int
    image_id: int
    project_id: int
    label: str
    flagged: bool
    follow_up_jobs: tuple[QueuedJob, ...] = ()
    learning_job_id: int | None = None
    notices: tuple[Notice, ...] = ()
    learning_held: str | None = None


@dataclass(frozen=True)
class UndoDone:
    """What :func:`undo_last` appended: the undo row and the part it gave back to the queue."""

    undo_review_id: int
    image_id: int


@dataclass(frozen=True)
class PageAccepted:
    """What :func:`accept_page` did.

    Attributes:
        accepted: The parts labelled good, in the order given.
        skipped: ``(image id, why)`` for each part left alone.
        message: One sentence for the reviewer.
        follow_up_jobs: The automatic jobs queued (once for the page).
        notices: Messages for the page (why a follow-up was not queued).
    """

    accepted: tuple[int, ...]
    skipped: tuple[tuple[int, str], ...]
    message: str
    follow_up_jobs: tuple[QueuedJob, ...] = ()
    notices: tuple[Notice, ...] = ()


def label_part(
    sessions: sessionmaker[Session],
    *,
    user_id: int,
    image_id: int,
    label: str,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
    region: dict[str, Any] | None = None,
) -> ReviewSaved:
    """Record a user's label for a part, and queue what it calls for, in one transaction.

    Args:
        sessions: The application's session factory.
        user_id: The reviewer (inspector, manager or admin).
        image_id: The labelled part.
        label: ``"good"`` or ``"defect"``.
        defect_type: The kind of defect (only with ``"defect"``; blank means none).
        note: Free text (blank means none).
        seconds_spent: Time spent on the part, >= 0.
        region: The box drawn around the defect (only with ``"defect"``), see
            :func:`db.review_queue.defect_region`.

    Returns:
        The saved review, the jobs it queued and the messages for the page.

    Raises:
        PermissionDenied: If the user may not review (or is gone or deactivated).
        LookupError: If the part does not exist.
        ValueError: On an unknown label, a defect type or box on a good part, a box outside
            the part, or negative seconds.
        ConflictError: If the review broke an integrity rule.
    """
    with transaction(sessions) as session:
        user = session.get(User, user_id)
        flagged = flagged_by_model(session, image_id)
        review = record_review(
            session,
            image_id=image_id,
            user=user,
            label=label,
            defect_type=defect_type,
            note=note,
            seconds_spent=seconds_spent,
            region=region,
        )
        project_id = review.image.project_id
        notices: list[Notice] = []
        jobs = _follow_up(session, project_id, image_id, user, notices)
        learning_job_id = held = None
        if learns_instantly(label, flagged):
            held = teaching_hold(session, image_id)
            if held is None:
                learning_job_id = _queue_learning(session, project_id, image_id, user, notices)
            else:
                notices.append(Notice("info", held))
        return ReviewSaved(
            review_id=review.id,
            image_id=image_id,
            project_id=project_id,
            label=review.label,
            flagged=flagged,
            follow_up_jobs=jobs,
            learning_job_id=learning_job_id,
            notices=tuple(notices),
            learning_held=held,
        )


def undo_last(sessions: sessionmaker[Session], *, user_id: int) -> UndoDone | None:
    """Cancel the user's own latest counting review (an undo row; the outbox is told).

    Returns:
        The undo, or ``None`` when there is nothing left to undo.

    Raises:
        PermissionDenied: If the user may not review.
    """
    with transaction(sessions) as session:
        undo = undo_last_review(session, user=session.get(User, user_id))
        return None if undo is None else UndoDone(undo.id, undo.image_id)


def accept_page(
    sessions: sessionmaker[Session], *, user_id: int, project_id: int, image_ids: Sequence[int]
) -> PageAccepted:
    """Accept the passed parts of a reviewer's page as good, where a manager allows it.

    One review per part (:func:`services.review_options.accept_page_as_good`: never a flagged
    part or an audit sample, so none teaches the model at once), then the follow-ups once for
    the page, in a savepoint; one transaction.

    Returns:
        The parts accepted and skipped, and the follow-ups.

    Raises:
        PermissionDenied: If the user may not review, or the project does not allow it.
        LookupError: If the project does not exist.
        ValueError: If too many parts are given.
        TypeError: If the ids are not integers.
    """
    with transaction(sessions) as session:
        user = session.get(User, user_id)
        done = accept_page_as_good(session, project_id, image_ids, user=user)
        notices: list[Notice] = []
        jobs: tuple[QueuedJob, ...] = ()
        if done.accepted:
            jobs = _follow_up(session, project_id, done.accepted[-1], user, notices)
        return PageAccepted(done.accepted, done.skipped, done.message, jobs, tuple(notices))


def _follow_up(
    session: Session, project_id: int, image_id: int, user: User | None, notices: list[Notice]
) -> tuple[QueuedJob, ...]:
    """The follow-ups in a savepoint: a refusal rolls back only them, and becomes a notice."""
    try:
        with session.begin_nested():
            return tuple(
                QueuedJob.of(job) for job in follow_up_review(session, project_id, image_id, user)
            )
    except FOLLOW_UP_ERRORS as err:
        logger.warning("No automatic job after the review of image %s: %s", image_id, err)
        notices.append(Notice("info", f"The review is saved; no automatic job was queued: {err}"))
        return ()


def _queue_learning(
    session: Session, project_id: int, image_id: int, user: User | None, notices: list[Notice]
) -> int | None:
    """Instant learning's job in a savepoint: a refusal rolls back only it, and becomes a notice."""
    try:
        with session.begin_nested():
            job = queue_instant_update(session, project_id=project_id, image_id=image_id, user=user)
            return job.id
    except FOLLOW_UP_ERRORS as err:
        logger.warning("No instant update after the review of image %s: %s", image_id, err)
        notices.append(
            Notice("info", f"The review is saved; the model cannot learn from it at once: {err}")
        )
        return None

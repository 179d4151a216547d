"""The job queue: queue, claim, report progress, cancel and finish background jobs.

Two kinds of callers use it:

* The UI queues, lists, polls and cancels jobs with its own session
  (:func:`enqueue_job`, :func:`request_cancel`, :func:`get_job`, :func:`list_jobs`); these
  functions do not commit: the caller owns the transaction.
* A worker claims and runs jobs (:func:`claim_next_job`, :func:`update_progress`,
  :func:`finish_job`); these take the session factory and commit one short transaction each.

Every state change is a conditional ``UPDATE ... WHERE id = :id AND status = :expected`` whose
row count says whether it happened: portable SQL, atomic on SQLite and PostgreSQL alike. So two
workers never claim the same job, a job is never run twice, and a worker whose job was failed
in the meantime, or queued again (by :func:`db.job_workers.recover_orphaned_jobs`), cannot
overwrite that outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.base import JobStatus, utcnow
from db.models import Job, Project, User
from db.models.jobs import WORKER_ID_LENGTH
from db.permissions import CAN_MANAGE_MODELS, require_session_role

LOG_TAIL_LINES = 200
"""How many log lines a job keeps (the oldest are dropped)."""

KIND_LENGTH = 32
QUEUE_MESSAGE = "Only managers can queue training jobs."
CANCEL_MESSAGE = "Only managers can cancel jobs."
FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def enqueue_job(
    session: Session,
    *,
    kind: str,
    parameters: dict[str, Any] | None,
    project_id: int | None,
    user: User,
) -> Job:
    """Queue a job (flushed, so it has an id); a worker picks it up in arrival order.

    Args:
        session: The caller's session (the caller commits).
        kind: The job kind, e.g. ``"refit_detector"`` (see :mod:`workers`).
        parameters: JSON-serialisable settings for the job function (copied).
        project_id: The project the job works on, or ``None``.
        user: The acting manager or admin.

    Returns:
        The queued job.

    Raises:
        PermissionDenied: If the user may not manage models.
        LookupError: If the project does not exist.
        ValueError: On an empty or too long kind, or parameters that are not JSON.
    """
    actor = require_session_role(session, user, *CAN_MANAGE_MODELS, message=QUEUE_MESSAGE)
    return _add_job(session, kind, parameters, project_id, actor.id)


def enqueue_automatic_job(
    session: Session, *, kind: str, parameters: dict[str, Any] | None, project_id: int
) -> Job:
    """Queue a job Loupe starts by itself (no user: ``created_by`` stays empty).

    For rules a manager set up beforehand, such as "train the feedback scorer after every N
    reviews" (:mod:`services.scorer_training`), which any reviewer's action may trigger. The
    caller decides when; the job runs with the system's rights.

    Args:
        session: The caller's session (the caller commits).
        kind: The job kind.
        parameters: JSON-serialisable settings for the job function (copied).
        project_id: The project the job works on.

    Returns:
        The queued job (flushed).

    Raises:
        LookupError: If the project does not exist.
        ValueError: On an empty or too long kind, or parameters that are not JSON.
    """
    return _add_job(session, kind, parameters, project_id, None)


def has_pending_job(session: Session, project_id: int, kind: str) -> bool:
    """Whether a job of this kind is queued or running for the project."""
    pending = list_jobs(
        session,
        project_id=project_id,
        kinds=[kind],
        statuses=[JobStatus.QUEUED, JobStatus.RUNNING],
        limit=1,
    )
    return bool(pending)


def latest_job(session: Session, project_id: int, kind: str) -> Job | None:
    """The project's most recently queued job of a kind, whatever its status, or ``None``."""
    jobs = list_jobs(session, project_id=project_id, kinds=[kind], limit=1)
    return jobs[0] if jobs else None


def _add_job(
    session: Session,
    kind: str,
    parameters: dict[str, Any] | None,
    project_id: int | None,
    created_by_id: int | None,
) -> Job:
    kind = (kind or "").strip()
    if not kind or len(kind) > KIND_LENGTH:
        raise ValueError(f"A job kind must be 1 to {KIND_LENGTH} characters, got {kind!r}.")
    params = dict(parameters or {})
    try:
        json.dumps(params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Job parameters must be JSON-serialisable: {err}") from err
    if project_id is not None and session.get(Project, project_id) is None:
        raise LookupError(f"There is no project with id {project_id}.")
    job = Job(
        kind=kind,
        parameters=params,
        status=JobStatus.QUEUED.value,
        progress=0.0,
        message="Queued",
        log_tail="",
        project_id=project_id,
        created_by_id=created_by_id,
    )
    session.add(job)
    session.flush()
    return job


def claim_next_job(
    session_factory: sessionmaker[Session],
    worker_id: str,
    *,
    kinds: Iterable[str] | None = None,
    attempts: int = 20,
) -> Job | None:
    """Atomically take the oldest queued job for ``worker_id`` (status becomes ``running``).

    The oldest queued job is read, then taken with ``UPDATE ... WHERE id = :id AND status =
    'queued'``; if another worker was faster (row count 0) the next one is tried. On PostgreSQL
    the read also locks the row and skips rows other claimers hold (``FOR UPDATE SKIP
    LOCKED``), so concurrent workers take different jobs instead of queueing on one; SQLite has
    no row locks (the clause is not rendered) and serialises the writers on its database lock.

    Args:
        session_factory: The application's session factory.
        worker_id: The claiming worker (at most 64 characters).
        kinds: Only claim jobs of these kinds; ``None`` for any kind.
        attempts: How many lost races to tolerate before giving up for this poll.

    Returns:
        The claimed job (detached, already ``running``), or ``None`` when nothing is queued.
    """
    if not worker_id or len(worker_id) > WORKER_ID_LENGTH:
        raise ValueError(f"A worker id must be 1 to {WORKER_ID_LENGTH} characters.")
    allowed = None if kinds is None else sorted(set(kinds))
    for _ in range(max(1, attempts)):
        with session_factory() as session, session.begin():
            oldest = select(Job.id).where(Job.status == JobStatus.QUEUED.value)
            if allowed is not None:
                oldest = oldest.where(Job.kind.in_(allowed))
            oldest = oldest.order_by(Job.created_at, Job.id).limit(1)
            job_id = session.scalar(oldest.with_for_update(skip_locked=True))
            if job_id is None:
                return None
            now = utcnow()
            taken = _conditional_update(
                session,
                job_id,
                expected=JobStatus.QUEUED,
                status=JobStatus.RUNNING.value,
                worker_id=worker_id,
                started_at=now,
                heartbeat_at=now,
                message="Started",
            )
            if taken:
                return session.get(Job, job_id, populate_existing=True)
    return None


def update_progress(
    session_factory: sessionmaker[Session],
    job_id: int,
    worker_id: str,
    *,
    progress: float | None = None,
    message: str | None = None,
    log_lines: Sequence[str] = (),
) -> bool:
    """Record a running job's progress, message and new log lines (one transaction).

    Args:
        session_factory: The application's session factory.
        job_id: The job.
        worker_id: The worker running it; nothing is written if the job is no longer its own
            running job (e.g. it was failed as orphaned).
        progress: Fraction done, clamped to [0, 1]; ``None`` keeps the current value.
        message: The current step; ``None`` keeps the current message.
        log_lines: Lines appended to the log tail (which keeps the last
            :data:`LOG_TAIL_LINES`).

    Returns:
        Whether the job is still this worker's running job.
    """
    with session_factory() as session, session.begin():
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"] = _clamp(progress)
        if message is not None:
            values["message"] = str(message)
        if log_lines:
            current = session.scalar(select(Job.log_tail).where(Job.id == job_id)) or ""
            values["log_tail"] = append_log(current, log_lines)
        return _conditional_update(
            session, job_id, expected=JobStatus.RUNNING, worker_id_is=worker_id, **values
        )


def request_cancel(session: Session, *, job_id: int, user: User) -> Job:
    """Cancel a job: a queued job is cancelled at once, a running one is asked to stop.

    A running job's function sees the flag through its context's ``should_stop()`` and stops
    at its next check; the worker then marks it ``cancelled``. Finished jobs are unchanged.

    Args:
        session: The caller's session (the caller commits).
        job_id: The job.
        user: The acting manager or admin.

    Returns:
        The job as it is now.

    Raises:
        PermissionDenied: If the user may not manage models.
        LookupError: If the job does not exist.
    """
    require_session_role(session, user, *CAN_MANAGE_MODELS, message=CANCEL_MESSAGE)
    if session.get(Job, job_id) is None:
        raise LookupError(f"There is no job with id {job_id}.")
    now = utcnow()
    cancelled = _conditional_update(
        session,
        job_id,
        expected=JobStatus.QUEUED,
        status=JobStatus.CANCELLED.value,
        cancel_requested=True,
        finished_at=now,
        message="Cancelled before it started",
    )
    if not cancelled:
        _conditional_update(
            session,
            job_id,
            expected=JobStatus.RUNNING,
            cancel_requested=True,
            message="Cancelling...",
        )
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    return job


def cancel_requested(session_factory: sessionmaker[Session], job_id: int) -> bool:
    """Tell whether someone asked the job to stop (or it is no longer running)."""
    with session_factory() as session:
        row = session.execute(
            select(Job.cancel_requested, Job.status).where(Job.id == job_id)
        ).first()
    return row is None or bool(row.cancel_requested) or row.status != JobStatus.RUNNING


def finish_job(
    session_factory: sessionmaker[Session],
    job_id: int,
    worker_id: str,
    *,
    status: JobStatus | str,
    message: str,
    device: str | None = None,
    peak_memory_mb: float | None = None,
    result_model_version_id: int | None = None,
    log_lines: Sequence[str] = (),
) -> bool:
    """Record a job's outcome (one transaction); only the worker running it can.

    Args:
        session_factory: The application's session factory.
        job_id: The job.
        worker_id: The worker that ran it.
        status: ``succeeded``, ``failed`` or ``cancelled``.
        message: The final message shown to users.
        device: Where it ran, e.g. ``"cpu"`` or ``"cuda:0"``.
        peak_memory_mb: Peak memory used, in MiB.
        result_model_version_id: The model version the job produced, if any.
        log_lines: Last lines to append to the log tail.

    Returns:
        ``False`` if the job was no longer this worker's running job (nothing written).
    """
    final = JobStatus(status)
    if final not in FINAL_STATUSES:
        raise ValueError(f"A job finishes as succeeded, failed or cancelled, not {final.value}.")
    with session_factory() as session, session.begin():
        values: dict[str, Any] = {
            "status": final.value,
            "message": str(message),
            "finished_at": utcnow(),
            "device": device,
            "peak_memory_mb": peak_memory_mb,
            "result_model_version_id": result_model_version_id,
        }
        if final == JobStatus.SUCCEEDED:
            values["progress"] = 1.0
        if log_lines:
            current = session.scalar(select(Job.log_tail).where(Job.id == job_id)) or ""
            values["log_tail"] = append_log(current, log_lines)
        return _conditional_update(
            session, job_id, expected=JobStatus.RUNNING, worker_id_is=worker_id, **values
        )


def get_job(session: Session, job_id: int) -> Job | None:
    """Return the job as currently stored (for polling its progress), or ``None``."""
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(
    session: Session,
    *,
    project_id: int | None = None,
    statuses: Iterable[JobStatus | str] | None = None,
    kinds: Iterable[str] | None = None,
    limit: int = 50,
) -> list[Job]:
    """Return jobs, newest first.

    Args:
        session: The caller's session.
        project_id: Only this project's jobs.
        statuses: Only jobs in these statuses.
        kinds: Only jobs of these kinds.
        limit: At most this many.

    Returns:
        The jobs.
    """
    statement = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(max(0, limit))
    if project_id is not None:
        statement = statement.where(Job.project_id == project_id)
    if statuses is not None:
        statement = statement.where(Job.status.in_([JobStatus(s).value for s in statuses]))
    if kinds is not None:
        statement = statement.where(Job.kind.in_(list(kinds)))
    return list(session.scalars(statement.execution_options(populate_existing=True)))


def append_log(current: str, lines: Iterable[str], keep: int = LOG_TAIL_LINES) -> str:
    """Return ``current`` with ``lines`` appended, keeping only the last ``keep`` lines."""
    old = current.splitlines() if current else []
    new = [part for line in lines for part in str(line).splitlines() or [""]]
    return "\n".join([*old, *new][-keep:])


def _conditional_update(
    session: Session,
    job_id: int,
    *,
    expected: JobStatus,
    worker_id_is: str | None = None,
    **values: Any,
) -> bool:
    """``UPDATE jobs SET ... WHERE id = :id AND status = :expected [AND worker_id = :w]``."""
    statement = update(Job).where(Job.id == job_id, Job.status == expected.value)
    if worker_id_is is not None:
        statement = statement.where(Job.worker_id == worker_id_is)
    result = session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _clamp(fraction: float) -> float:
    value = float(fraction)
    if value != value:  # NaN
        return 0.0
    return min(1.0, max(0.0, value))

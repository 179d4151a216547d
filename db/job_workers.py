"""Worker processes: registration, heartbeats, liveness and the recovery of orphaned jobs.

A worker id is ``<host>:<pid>:<random>``. A worker is *dead* when its process is gone (checked
directly on the same host) or when its heartbeat is older than the stale timeout (any host).
:func:`recover_orphaned_jobs` (called by a starting worker and by the app's worker supervisor)
settles every running job of a dead worker: a job whose kind is safe to run again (the caller
says which, see :func:`workers.registry.retry_safe_kinds`) is queued again once; otherwise, or
when it already was, it is failed with :data:`WORKER_DIED_MESSAGE` as its reason, so a job that
keeps crashing its worker runs at most twice. The count of worker deaths lives in the job's
parameters under :data:`WORKER_DEATHS_KEY` (the worker hides it from the job function).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.base import JobStatus, utcnow
from db.jobs import append_log
from db.models.jobs import HOST_LENGTH, WORKER_ID_LENGTH, Job, Worker

WORKER_DIED_MESSAGE = "its worker stopped (killed or crashed) while it ran"
"""Why a job of a dead worker was failed (or queued again); part of the job's message."""
WORKER_DEATHS_KEY = "_worker_deaths"
"""Job parameter: how many times the job's worker died while it ran (absent: never)."""
MAX_AUTOMATIC_RETRIES = 1
"""How many times a job of a kind safe to retry is queued again after its worker died."""
DEFAULT_STALE_AFTER = timedelta(seconds=60)
"""A heartbeat older than this means the worker is gone (it beats every few seconds)."""


@dataclass(frozen=True)
class WorkerAddress:
    """Where a worker runs, parsed from its id."""

    host: str
    pid: int


def this_host() -> str:
    """The host name used in worker ids."""
    return socket.gethostname()[:HOST_LENGTH]


def new_worker_id(pid: int | None = None) -> str:
    """A fresh worker id ``<host>:<pid>:<random>`` for this process (at most 64 chars)."""
    pid = os.getpid() if pid is None else pid
    suffix = f":{pid}:{secrets.token_hex(4)}"
    return this_host()[: WORKER_ID_LENGTH - len(suffix)] + suffix


def parse_worker_id(worker_id: str) -> WorkerAddress | None:
    """Return the host and pid in a worker id, or ``None`` if it is not one of ours."""
    parts = worker_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return WorkerAddress(parts[0], int(parts[1]))


def pid_alive(pid: int) -> bool:
    """Tell whether a process with this id runs on this host (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in {"Z", "X"}


def register_worker(session_factory: sessionmaker[Session], worker_id: str) -> None:
    """Record a starting (or restarting) worker: host, pid, heartbeat now, not stopped."""
    address = parse_worker_id(worker_id)
    with session_factory() as session, session.begin():
        worker = session.get(Worker, worker_id)
        if worker is None:
            worker = Worker(
                id=worker_id,
                host=address.host if address else this_host(),
                pid=address.pid if address else os.getpid(),
            )
            session.add(worker)
        worker.heartbeat_at, worker.stopped_at, worker.current_job_id = utcnow(), None, None


def worker_heartbeat(
    session_factory: sessionmaker[Session], worker_id: str, job_id: int | None = None
) -> bool:
    """Say the worker (and its current job) is alive; one transaction.

    Returns:
        ``False`` if ``job_id`` is given and is no longer this worker's running job.
    """
    now = utcnow()
    with session_factory() as session, session.begin():
        session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(heartbeat_at=now, current_job_id=job_id)
            .execution_options(synchronize_session=False)
        )
        if job_id is None:
            return True
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.worker_id == worker_id,
                Job.status == JobStatus.RUNNING.value,
            )
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def stop_worker(session_factory: sessionmaker[Session], worker_id: str) -> None:
    """Record that a worker stopped cleanly."""
    with session_factory() as session, session.begin():
        session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(stopped_at=utcnow(), current_job_id=None)
            .execution_options(synchronize_session=False)
        )


def live_workers(session: Session, *, stale_after: timedelta = DEFAULT_STALE_AFTER) -> list[Worker]:
    """Return the workers that are alive: not stopped, fresh heartbeat, process present."""
    cutoff = utcnow() - stale_after
    candidates = session.scalars(
        select(Worker)
        .where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff)
        .order_by(Worker.heartbeat_at.desc())
    ).all()
    host = this_host()
    return [w for w in candidates if w.host != host or pid_alive(w.pid)]


@dataclass(frozen=True)
class RecoveredJobs:
    """What :func:`recover_orphaned_jobs` did with the running jobs of dead workers."""

    retried: tuple[int, ...] = ()
    """Queued again (their kind is safe to retry and they had not been retried yet)."""
    failed: tuple[int, ...] = ()
    """Failed with :data:`WORKER_DIED_MESSAGE` as the reason."""
    cancelled: tuple[int, ...] = ()
    """Someone had asked them to stop: now cancelled."""

    @property
    def ids(self) -> list[int]:
        """Every job settled, sorted."""
        return sorted((*self.retried, *self.failed, *self.cancelled))

    def __bool__(self) -> bool:
        return bool(self.retried or self.failed or self.cancelled)


def worker_deaths(parameters: Mapping[str, Any] | None) -> int:
    """How many times a job's worker died while running it (kept in its parameters)."""
    try:
        return max(0, int((parameters or {}).get(WORKER_DEATHS_KEY, 0)))
    except (TypeError, ValueError):
        return 0


def job_function_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """A job's parameters as its job function sees them: without the worker's bookkeeping."""
    return {key: value for key, value in (parameters or {}).items() if key != WORKER_DEATHS_KEY}


def recover_orphaned_jobs(
    session_factory: sessionmaker[Session],
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    current_worker_id: str | None = None,
    retry_kinds: Collection[str] = (),
) -> RecoveredJobs:
    """Settle every running job whose worker is dead (one transaction).

    A job's worker is dead when it ran on this host and its process is gone (or its pid now
    belongs to the caller), or when the job's last heartbeat (its start time if it never beat)
    is older than ``stale_after``. Such a job is

    * cancelled when someone had asked it to stop;
    * queued again (first in line, its worker cleared, the death counted under
      :data:`WORKER_DEATHS_KEY`) when its kind is in ``retry_kinds`` and its worker died fewer
      than :data:`MAX_AUTOMATIC_RETRIES` times before;
    * failed otherwise, with :data:`WORKER_DIED_MESSAGE` in its message.

    Every change is conditional on the job still being the dead worker's running job, so two
    callers never settle a job twice.

    Args:
        session_factory: The application's session factory.
        stale_after: The heartbeat timeout.
        current_worker_id: The calling worker, whose own jobs are never touched.
        retry_kinds: The job kinds that are safe to run again from the start.

    Returns:
        The ids of the jobs queued again, failed and cancelled.
    """
    now = utcnow()
    host, own_pid = this_host(), os.getpid()
    settled: dict[str, list[int]] = {"retried": [], "failed": [], "cancelled": []}
    with session_factory() as session, session.begin():
        running = session.execute(
            select(
                Job.id,
                Job.kind,
                Job.parameters,
                Job.cancel_requested,
                Job.worker_id,
                Job.heartbeat_at,
                Job.started_at,
                Job.log_tail,
            ).where(Job.status == JobStatus.RUNNING.value)
        ).all()
        dead_workers: set[str] = set()
        for row in running:
            if row.worker_id is not None and row.worker_id == current_worker_id:
                continue
            if not _is_orphan(row, host, own_pid, now - stale_after):
                continue
            outcome, values = _settlement(row, retry_kinds, now)
            result = session.execute(
                update(Job)
                .where(Job.id == row.id, Job.status == JobStatus.RUNNING.value)
                .where(
                    Job.worker_id == row.worker_id
                    if row.worker_id is not None
                    else Job.worker_id.is_(None)
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                settled[outcome].append(row.id)
                if row.worker_id is not None:
                    dead_workers.add(row.worker_id)
        if dead_workers:
            session.execute(
                update(Worker)
                .where(Worker.id.in_(sorted(dead_workers)), Worker.stopped_at.is_(None))
                .values(stopped_at=now, current_job_id=None)
                .execution_options(synchronize_session=False)
            )
        _stop_silent_workers(session, host, now - stale_after, current_worker_id)
    return RecoveredJobs(**{outcome: tuple(ids) for outcome, ids in settled.items()})


def _settlement(
    row: Any, retry_kinds: Collection[str], now: datetime
) -> tuple[str, dict[str, Any]]:
    """How to settle one orphaned job: ``(outcome, column values)``."""
    deaths = worker_deaths(row.parameters) + 1
    if row.cancel_requested:
        outcome, status = "cancelled", JobStatus.CANCELLED
        message = "Cancelled: its worker stopped (killed or crashed) while the job was stopping"
    elif row.kind in retry_kinds and deaths <= MAX_AUTOMATIC_RETRIES:
        outcome, status = "retried", JobStatus.QUEUED
        message = (
            f"Queued again: {WORKER_DIED_MESSAGE} "
            f"(automatic retry {deaths} of {MAX_AUTOMATIC_RETRIES})"
        )
    elif row.kind in retry_kinds:
        outcome, status = "failed", JobStatus.FAILED
        message = f"{WORKER_DIED_MESSAGE}, also on its automatic retry: not retried again"
    else:
        outcome, status = "failed", JobStatus.FAILED
        message = (
            f"{WORKER_DIED_MESSAGE}; jobs of this kind are not retried automatically: "
            "queue it again if it is still needed"
        )
    line = f"{now.isoformat()} worker {row.worker_id} is gone. {message}"
    values: dict[str, Any] = {
        "status": status.value,
        "message": message,
        "log_tail": append_log(row.log_tail or "", [line]),
        "parameters": {**(row.parameters or {}), WORKER_DEATHS_KEY: deaths},
    }
    if status == JobStatus.QUEUED:
        values |= {"worker_id": None, "started_at": None, "heartbeat_at": None, "progress": 0.0}
    else:
        values["finished_at"] = now
    return outcome, values


def _is_orphan(row: object, host: str, own_pid: int, cutoff: datetime) -> bool:
    worker_id = getattr(row, "worker_id", None)
    address = parse_worker_id(worker_id) if worker_id else None
    same_host = address is not None and address.host == host
    if same_host and (address.pid == own_pid or not pid_alive(address.pid)):
        return True
    last_sign = getattr(row, "heartbeat_at", None) or getattr(row, "started_at", None)
    return last_sign is None or last_sign < cutoff


def _stop_silent_workers(
    session: Session, host: str, cutoff: datetime, current_worker_id: str | None
) -> None:
    """Mark workers stopped: stale ones on other hosts, and those of this host that are gone."""
    rows = session.execute(
        select(Worker.id, Worker.host, Worker.pid).where(
            Worker.stopped_at.is_(None),
            or_(Worker.heartbeat_at < cutoff, Worker.host == host),
        )
    ).all()
    gone = [
        row.id
        for row in rows
        if row.id != current_worker_id
        and (row.host != host or row.pid == os.getpid() or not pid_alive(row.pid))
    ]
    if gone:
        session.execute(
            update(Worker)
            .where(Worker.id.in_(gone))
            .values(stopped_at=utcnow(), current_job_id=None)
            .execution_options(synchronize_session=False)
        )

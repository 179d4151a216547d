"""Worker processes: registration, heartbeats, liveness and the recovery of orphaned jobs.

A worker id is ``<host>:<pid>:<random>``. A worker is *dead* when its process is gone (checked
directly on the same host) or when its heartbeat is older than the stale timeout (any host).
When a worker starts it calls :func:`recover_orphaned_jobs`: every running job of a dead worker
is marked ``failed`` with the message :data:`WORKER_DIED_MESSAGE`. It is never queued again, so
a job that crashed its worker is not run twice.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.base import JobStatus, utcnow
from db.jobs import append_log
from db.models.jobs import HOST_LENGTH, WORKER_ID_LENGTH, Job, Worker

WORKER_DIED_MESSAGE = "worker died"
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


def recover_orphaned_jobs(
    session_factory: sessionmaker[Session],
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    current_worker_id: str | None = None,
) -> list[int]:
    """Fail every running job whose worker is dead; return their ids (one transaction).

    A job's worker is dead when it ran on this host and its process is gone (or its pid now
    belongs to the calling worker), or when the job's last heartbeat (its start time if it
    never beat) is older than ``stale_after``.

    Args:
        session_factory: The application's session factory.
        stale_after: The heartbeat timeout.
        current_worker_id: The calling worker, whose own jobs are never touched.

    Returns:
        The ids of the jobs marked ``failed``.
    """
    now = utcnow()
    host, own_pid = this_host(), os.getpid()
    recovered: list[int] = []
    with session_factory() as session, session.begin():
        running = session.execute(
            select(Job.id, Job.worker_id, Job.heartbeat_at, Job.started_at, Job.log_tail).where(
                Job.status == JobStatus.RUNNING.value
            )
        ).all()
        dead_workers: set[str] = set()
        for row in running:
            if row.worker_id is not None and row.worker_id == current_worker_id:
                continue
            if not _is_orphan(row, host, own_pid, now - stale_after):
                continue
            result = session.execute(
                update(Job)
                .where(Job.id == row.id, Job.status == JobStatus.RUNNING.value)
                .where(
                    Job.worker_id == row.worker_id
                    if row.worker_id is not None
                    else Job.worker_id.is_(None)
                )
                .values(
                    status=JobStatus.FAILED.value,
                    message=WORKER_DIED_MESSAGE,
                    finished_at=now,
                    log_tail=append_log(
                        row.log_tail or "",
                        [f"{now.isoformat()} {WORKER_DIED_MESSAGE} ({row.worker_id})"],
                    ),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                recovered.append(row.id)
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
    return recovered


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

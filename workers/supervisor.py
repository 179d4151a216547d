"""Keeping a job worker running: one supervisor thread per app server process.

:func:`start_supervisor` starts, once per database and data directory (whatever the number of
browser sessions and reruns), a daemon thread that every :data:`CHECK_SECONDS`:

1. asks the database whether a worker is alive (:func:`db.job_workers.live_workers`: a fresh
   heartbeat and, on this host, a running process);
2. if none is, settles the jobs the dead worker held
   (:func:`db.job_workers.recover_orphaned_jobs`: queued again once when their kind is safe to
   retry, :func:`workers.registry.retry_safe_kinds`, else failed with the reason), and
3. launches a worker with :func:`workers.launcher.ensure_worker_running`, which checks again
   under a file lock in the data directory: two server processes, or two supervisors, never
   start two workers.

So a worker killed with ``kill -9`` is replaced within about two seconds plus the new worker's
start (it registers before loading torch). When launched workers keep dying before they say
they are alive, the launches back off, up to :data:`MAX_BACKOFF_SECONDS` apart. The thread never
calls ``st.*``: the Models page reads :attr:`WorkerSupervisor.status`.

A launched worker stops with this server process (``SIGTERM``, ``SIGINT``, a crash or
``kill -9``; about a second later, see :mod:`workers.server_watch`): stopping ``make demo``
leaves no worker behind. When several servers share a database and data directory, the worker
stops with the one that launched it, and the other's supervisor launches a new one at its next
check (within seconds, once the old worker has exited).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

import workers.launcher
from db.base import utcnow
from db.engine import create_engine_for_url, make_session_factory
from db.job_workers import (
    DEFAULT_STALE_AFTER,
    live_workers,
    recover_orphaned_jobs,
    this_host,
)
from db.models.jobs import Worker
from workers.registry import retry_safe_kinds

log = logging.getLogger("loupe.supervisor")

CHECK_SECONDS = 2.0
"""How often the supervisor checks that a worker is alive."""
MAX_BACKOFF_SECONDS = 60.0
"""The longest wait between launches of workers that die before they register."""


@dataclass(frozen=True)
class SupervisorStatus:
    """What the supervisor saw at its last check."""

    checked_at: datetime | None = None
    worker_alive: bool = False
    launched_pid: int | None = None
    """The last worker process this supervisor launched."""
    launches: int = 0
    problem: str | None = None
    """Why the last check or launch failed (``None`` when it worked)."""


class WorkerSupervisor:
    """Checks every ``interval`` seconds that a job worker is alive, and launches one if not.

    Args:
        database_url: The database the workers serve.
        data_dir: The data directory (the launcher's pid file and lock, the worker's images).
        models_root: Where the worker saves models.
        interval: Seconds between checks.
        stale_after: A worker whose heartbeat is older is dead.
        job_modules: Modules that register more job kinds: imported here (so their retry
            declarations count when this supervisor settles their jobs) and by the worker.
        worker_args: More ``python -m loupe worker`` arguments.
    """

    def __init__(
        self,
        database_url: str,
        data_dir: str | Path,
        models_root: str | Path | None = None,
        *,
        interval: float = CHECK_SECONDS,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        job_modules: Sequence[str] = (),
        worker_args: Sequence[str] = (),
        first_check_delay: float = 0.0,
    ) -> None:
        self.database_url = database_url
        self.first_check_delay = max(0.0, float(first_check_delay))
        self.data_dir = Path(data_dir)
        self.models_root = None if models_root is None else Path(models_root)
        self.interval = float(interval)
        self.stale_after = stale_after
        self.job_modules = tuple(job_modules)
        self.worker_args = [
            *(arg for module in self.job_modules for arg in ("--job-module", module)),
            *worker_args,
        ]
        self._status = SupervisorStatus()
        self._launches_unseen = 0  # launches of workers that never registered
        self._last_launch = 0.0
        self._engine: Engine | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def status(self) -> SupervisorStatus:
        """What the last check saw."""
        return self._status

    @property
    def running(self) -> bool:
        """Whether the checking thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Check once now (a problem shows at once), then keep checking in a daemon thread.

        With ``first_check_delay``, the first check (and so the first launch) waits that long
        in the thread instead: a server's first page is drawn before a worker starts loading
        torch on the same cores.
        """
        for module in self.job_modules:
            importlib.import_module(module)
        if not self.first_check_delay:
            self.check()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="loupe-worker-supervisor", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop checking (the worker keeps running until this process exits)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def check(self) -> SupervisorStatus:
        """One round: is a worker alive? If not, settle its jobs and launch one.

        Returns:
            The new status (also in :attr:`status`); never raises.
        """
        try:
            self._status = self._check()
        except Exception as err:  # noqa: BLE001 - reported on the page, tried again next round
            log.exception("Checking the job worker failed")
            self._status = replace(
                self._status, checked_at=utcnow(), problem=f"{type(err).__name__}: {err}"
            )
        return self._status

    def _check(self) -> SupervisorStatus:
        factory = make_session_factory(self._database())
        with factory() as session:
            alive = bool(live_workers(session, stale_after=self.stale_after))
        status = replace(self._status, checked_at=utcnow(), worker_alive=alive, problem=None)
        if alive:
            self._launches_unseen = 0
            return status
        recovered = recover_orphaned_jobs(
            factory, stale_after=self.stale_after, retry_kinds=retry_safe_kinds()
        )
        if recovered:
            log.warning(
                "jobs of a dead worker: queued again %s, failed %s, cancelled %s",
                list(recovered.retried),
                list(recovered.failed),
                list(recovered.cancelled),
            )
        if self._launches_unseen and _registered(factory, status.launched_pid):
            self._launches_unseen = 0  # the last one came alive, then died: no crash loop
        if self._launches_unseen > 1:  # the launcher relaunches only when the last one exited
            status = replace(status, problem=self._crash_loop_problem())
        if self._launches_unseen and time.monotonic() - self._last_launch < self._backoff():
            return status
        pid = workers.launcher.ensure_worker_running(
            self.data_dir,
            self.database_url,
            models_root=self.models_root,
            stale_after=self.stale_after,
            extra_args=self.worker_args,
        )
        if pid is None:  # one is starting (here or in another server process)
            return status
        log.info("Started a job worker (pid %d)", pid)
        self._launches_unseen += 1
        self._last_launch = time.monotonic()
        return replace(status, launched_pid=pid, launches=status.launches + 1)

    def _crash_loop_problem(self) -> str:
        log_file = self.data_dir / workers.launcher.LOG_FILE
        return (
            f"{self._launches_unseen - 1} worker(s) in a row exited before they registered; "
            f"see {log_file}"
        )

    def _backoff(self) -> float:
        """Seconds to wait before launching again after workers that never came alive."""
        return min(MAX_BACKOFF_SECONDS, self.interval * 2 ** (self._launches_unseen - 1))

    def _database(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine_for_url(self.database_url)
        return self._engine

    def _loop(self) -> None:
        if self.first_check_delay and not self._stop.wait(self.first_check_delay):
            self.check()
        while not self._stop.wait(self.interval):
            self.check()


def _registered(factory: sessionmaker[Session], pid: int | None) -> bool:
    """Whether the worker process ``pid`` of this host ever registered (it came alive)."""
    if pid is None:
        return False
    with factory() as session:
        found = session.scalar(
            select(Worker.id).where(Worker.host == this_host(), Worker.pid == pid).limit(1)
        )
    return found is not None


_SUPERVISORS: dict[str, WorkerSupervisor] = {}
_SUPERVISORS_LOCK = threading.Lock()


def start_supervisor(
    database_url: str,
    data_dir: str | Path,
    models_root: str | Path | None = None,
    **options: Any,
) -> WorkerSupervisor:
    """The running supervisor of this database in this process, started if there is none.

    Args:
        database_url: The database the workers serve.
        data_dir: The data directory.
        models_root: Where the worker saves models.
        **options: More :class:`WorkerSupervisor` arguments.

    Returns:
        The supervisor (one per database URL and process).
    """
    with _SUPERVISORS_LOCK:
        current = _SUPERVISORS.get(database_url)
        if current is None or not current.running:
            current = WorkerSupervisor(database_url, data_dir, models_root, **options)
            current.start()
            _SUPERVISORS[database_url] = current
        return current


def supervisor_for(database_url: str) -> WorkerSupervisor | None:
    """This process's running supervisor of a database, or ``None``."""
    current = _SUPERVISORS.get(database_url)
    return current if current is not None and current.running else None


def stop_supervisors() -> None:
    """Stop every supervisor of this process (tests; the workers run until it exits)."""
    with _SUPERVISORS_LOCK:
        stopping = list(_SUPERVISORS.values())
        _SUPERVISORS.clear()
    for supervisor in stopping:
        supervisor.stop()

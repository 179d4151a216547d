"""The job worker: ``python -m loupe worker``.

One worker per process. At start (and every ``stale_after`` while idle) it settles the jobs of
dead workers (:func:`db.job_workers.recover_orphaned_jobs`: a job that was running when its
worker was killed is queued again once if its kind is safe to retry, see
:func:`workers.registry.retry_safe_kinds`, else failed with the reason), then registers itself
(before loading torch, so the app's supervisor sees it alive within a second or two) and polls
for queued jobs every ``poll_interval`` seconds (0.5 by default, so a queued job starts within
a second). Each job is claimed atomically and run with a
:class:`services.training.context.JobContext`; a heartbeat thread keeps the worker's and the job's
``heartbeat_at`` fresh. ``SIGTERM`` (or ``SIGINT``) stops it gracefully: no new job is taken,
the running job is asked to stop and marked failed ("worker stopped"), and the worker's row is
marked stopped.

A worker launched by the app (``--parent-pid``, given by :mod:`workers.launcher`) also stops so
when the server process that launched it is gone, however it ended (``kill -9`` included),
within about a second (:mod:`workers.server_watch`); its running job is marked failed with
:data:`SERVER_STOPPED_MESSAGE`. When several servers share a data directory, the worker stops
with the one that launched it, and another server's supervisor launches a new one within
seconds. A worker started by hand (no ``--parent-pid``) keeps running until it is stopped.

With ``$LOUPE_RAY_ADDRESS`` set, job functions run as Ray tasks (:mod:`workers.ray_backend`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from adcore.errors import LoupeError
from db.base import JobStatus
from db.errors import StorageError
from db.job_workers import (
    DEFAULT_STALE_AFTER,
    job_function_parameters,
    new_worker_id,
    recover_orphaned_jobs,
    register_worker,
    stop_worker,
    worker_heartbeat,
)
from db.jobs import cancel_requested, claim_next_job, finish_job
from db.models import Job
from services.training.context import JobCancelledError, JobContext, JobOutcome
from workers.context import job_context, peak_memory_mb, reset_peak_memory, select_device
from workers.registry import JobFunction, describe_outcome, job_function, retry_safe_kinds
from workers.reporting import DatabaseReporter
from workers.server_watch import ParentWatch

log = logging.getLogger("loupe.worker")

DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_HEARTBEAT_INTERVAL = 5.0
STOPPED_MESSAGE = "worker stopped before the job finished; queue it again"
"""Why a running job failed when its worker was stopped (``SIGTERM``, ``SIGINT``)."""
SERVER_STOPPED_MESSAGE = (
    "worker stopped: its server stopped before the job finished; queue it again"
)
"""Why a running job failed when the server that launched its worker stopped."""


class JobBackend(Protocol):
    """Runs a job function somewhere (in this process, or on a Ray cluster)."""

    name: str

    def run(self, function: JobFunction, ctx: JobContext) -> Any:
        """Run ``function(ctx)`` and return what it returned (or raise what it raised)."""


class LocalBackend:
    """Runs job functions in the worker process."""

    name = "local"

    def run(self, function: JobFunction, ctx: JobContext) -> Any:
        """Call ``function(ctx)``."""
        return function(ctx)


class JobWorker:
    """Polls the queue and runs jobs one at a time.

    Args:
        session_factory: The application's session factory.
        data_dir: The data directory (stored images).
        models_root: Where new model versions are saved.
        device: Torch device for jobs; default CUDA when available (resolved on first use,
            which imports torch).
        poll_interval: Seconds between polls of an empty queue (at most 1 s recommended).
        heartbeat_interval: Seconds between heartbeats.
        stale_after: Heartbeat timeout used when recovering orphaned jobs.
        backend: Where job functions run; default :func:`default_backend`.
        worker_id: This worker's id; default a fresh ``host:pid:random``.
        parent_pid: Stop (as on ``SIGTERM``) when this process is gone: the server that
            launched the worker (see :mod:`workers.server_watch`). ``None``: run until stopped.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        data_dir: Path,
        models_root: Path,
        device: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        backend: JobBackend | None = None,
        worker_id: str | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.data_dir = Path(data_dir)
        self.models_root = Path(models_root)
        self._requested_device = device
        self._device: str | None = None
        self.poll_interval = float(poll_interval)
        self.heartbeat_interval = float(heartbeat_interval)
        self.stale_after = stale_after
        self.backend = backend or default_backend()
        self.worker_id = worker_id or new_worker_id()
        self.parent_pid = parent_pid
        self.stopping = threading.Event()
        self._stop_message = STOPPED_MESSAGE
        self._current: tuple[int, threading.Event] | None = None

    @property
    def device(self) -> str:
        """The torch device jobs run on (chosen on first use: it imports torch)."""
        if self._device is None:
            self._device = select_device(self._requested_device)
        return self._device

    # ------------------------------------------------------------------ main loop
    def run(self, *, once: bool = False, max_jobs: int | None = None) -> int:
        """Recover orphans, register, then run jobs until stopped.

        Args:
            once: Run at most one job, and return at once when none is queued.
            max_jobs: Return after this many jobs.

        Returns:
            How many jobs were run.
        """
        self.stopping.clear()
        self._stop_message = STOPPED_MESSAGE
        self._install_signal_handlers()
        watch = None
        if self.parent_pid is not None:
            watch = ParentWatch(self.parent_pid, lambda: self.stop(message=SERVER_STOPPED_MESSAGE))
            watch.start()
        self._recover_orphans()
        register_worker(self.session_factory, self.worker_id)
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        log.info(
            "worker %s ready (device %s, %s backend)",
            self.worker_id,
            self.device,
            self.backend.name,
        )
        done = 0
        last_recovery = time.monotonic()
        try:
            while not self.stopping.is_set():
                job = claim_next_job(self.session_factory, self.worker_id)
                if job is None:
                    if once:
                        break
                    if time.monotonic() - last_recovery > self.stale_after.total_seconds():
                        self._recover_orphans()  # other workers (other hosts) may have died
                        last_recovery = time.monotonic()
                    self.stopping.wait(self.poll_interval)
                    continue
                self.run_job(job)
                done += 1
                if once or (max_jobs is not None and done >= max_jobs):
                    break
        finally:
            self.stopping.set()
            if watch is not None:
                watch.stop()
            beat.join(timeout=self.heartbeat_interval + 1)
            stop_worker(self.session_factory, self.worker_id)
            log.info("worker %s stopped after %d job(s)", self.worker_id, done)
        return done

    def stop(self, *, message: str = STOPPED_MESSAGE) -> None:
        """Ask the worker to stop (the running job is asked to stop too).

        Args:
            message: Why the running job failed, if it stops before it finishes (the first
                stop request's reason counts).
        """
        if not self.stopping.is_set():
            self._stop_message = message
        self.stopping.set()
        current = self._current
        if current is not None:
            current[1].set()

    # ------------------------------------------------------------------ one job
    def run_job(self, job: Job) -> JobStatus:
        """Run one claimed job and record its outcome.

        Returns:
            The job's final status.
        """
        stop_event = threading.Event()
        if self.stopping.is_set():
            stop_event.set()
        self._current = (job.id, stop_event)
        reporter = DatabaseReporter(self.session_factory, job.id, self.worker_id, stop_event)
        ctx = job_context(
            job,
            parameters=job_function_parameters(job.parameters),
            session_factory=self.session_factory,
            data_dir=self.data_dir,
            models_root=self.models_root,
            device=self.device,
            reporter=reporter,
        )
        log.info("job %d (%s) started", job.id, job.kind)
        reset_peak_memory(self.device)
        outcome: JobOutcome | None = None
        lines: list[str] = []
        try:
            outcome = describe_outcome(self.backend.run(job_function(job.kind), ctx))
            status, message = JobStatus.SUCCEEDED, outcome.message
        except JobCancelledError:
            if cancel_requested(self.session_factory, job.id) and not self.stopping.is_set():
                status, message = JobStatus.CANCELLED, "Cancelled"
            else:
                status, message = JobStatus.FAILED, self._stop_message
        except (LoupeError, StorageError) as err:  # a user-facing error: no traceback
            status, message = JobStatus.FAILED, f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - any failure of a job is recorded, not raised
            status, message = JobStatus.FAILED, f"{type(err).__name__}: {err}"
            lines = traceback.format_exc().strip().splitlines()[-12:]
            log.exception("job %d failed", job.id)
        finally:
            self._current = None
        lines = [*reporter.take_pending_lines(), *lines, message]
        recorded = finish_job(
            self.session_factory,
            job.id,
            self.worker_id,
            status=status,
            message=message,
            device=self.device if self.backend.name == "local" else f"ray:{self.device}",
            peak_memory_mb=round(peak_memory_mb(self.device), 1),
            result_model_version_id=None if outcome is None else outcome.model_version_id,
            log_lines=lines,
        )
        if not recorded:
            log.warning("job %d was no longer ours; its outcome (%s) was dropped", job.id, status)
        log.info("job %d %s: %s", job.id, status.value, message)
        return status

    # ------------------------------------------------------------------ plumbing
    def _recover_orphans(self) -> None:
        recovered = recover_orphaned_jobs(
            self.session_factory,
            stale_after=self.stale_after,
            current_worker_id=self.worker_id,
            retry_kinds=retry_safe_kinds(),
        )
        if recovered:
            log.warning(
                "jobs of dead workers: queued again %s, failed %s, cancelled %s",
                list(recovered.retried),
                list(recovered.failed),
                list(recovered.cancelled),
            )

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_interval):
            current = self._current
            try:
                ours = worker_heartbeat(
                    self.session_factory, self.worker_id, None if current is None else current[0]
                )
            except Exception:  # noqa: BLE001 - a missed beat is retried next time
                log.exception("heartbeat failed")
                continue
            if current is not None and not ours:
                current[1].set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())


def default_backend() -> JobBackend:
    """Ray when ``$LOUPE_RAY_ADDRESS`` is set, else the worker process itself."""
    from workers.ray_backend import RAY_ADDRESS_ENV

    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    if not address:
        return LocalBackend()
    from workers.ray_backend import RayBackend

    return RayBackend(address)


def run_worker(
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    models_dir: str | None = None,
    device: str | None = None,
    once: bool = False,
    max_jobs: int | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    job_modules: list[str] | None = None,
    parent_pid: int | None = None,
) -> int:
    """Configure from arguments and the environment, then run a :class:`JobWorker`.

    Args:
        database_url: Database URL (default ``$LOUPE_DATABASE_URL`` or the data dir's SQLite).
        data_dir: Data directory (default ``$LOUPE_DATA_DIR`` or ``./data``).
        models_dir: Where models are saved (default ``$LOUPE_MODELS_DIR`` or ``./models``).
        device: Torch device (default CUDA when available).
        once: Run at most one job.
        max_jobs: Stop after this many jobs.
        poll_interval: Seconds between polls of an empty queue.
        job_modules: Modules to import first (they may register more job kinds).
        parent_pid: Stop when this process (the server that launched the worker) is gone.

    Returns:
        The process exit code.
    """
    import importlib

    from db.engine import init_db, make_session_factory
    from db.settings import DATA_DIR_ENV, DATABASE_URL_ENV
    from db.settings import data_dir as configured_data_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if data_dir:
        os.environ[DATA_DIR_ENV] = str(Path(data_dir).expanduser().resolve())
    if database_url:
        os.environ[DATABASE_URL_ENV] = database_url
    for module in job_modules or []:
        importlib.import_module(module)
    engine = init_db(database_url)
    try:
        worker = JobWorker(
            make_session_factory(engine),
            data_dir=configured_data_dir(),
            models_root=Path(models_dir or os.environ.get("LOUPE_MODELS_DIR") or "models"),
            device=device,
            poll_interval=poll_interval,
            parent_pid=parent_pid,
        )
        worker.run(once=once, max_jobs=max_jobs)
    finally:
        engine.dispose()
    return 0

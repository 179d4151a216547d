"""Page tasks: short work a page runs in a server thread; following instant learning's jobs.

Not the job queue (:mod:`workers`, durable rows run by a worker process): a page task lives in
one browser session, e.g. a first training from a folder or an explanation rewrite. Not a page
(imported by ``pages/models.py``, ``pages/review.py``, ``pages/inspect.py`` and
``pages/explanation_panels.py``). Task threads never call ``st.*``: they update a
:class:`TaskProgress` under its lock, and a fragment with ``run_every`` polls it.

Instant learning is a job (:mod:`services.training.instant_learning`), run by the job worker;
:func:`show_instant_learning` follows the jobs this tab's reviews queued or joined (polling
their rows) and says when they end: its banner goes as soon as the last one has ended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import streamlit as st

import db
from db.jobs import get_job
from pages.action_feedback import flash
from pages.db_session import transaction
from pages.review_recording import LEARNING_JOBS_KEY
from pages.worker_status import WORKER_COMMAND, no_worker

log = logging.getLogger("loupe.app")

LEARNING_POLL_SECONDS = 1.0
ACTIVE = (db.JobStatus.QUEUED.value, db.JobStatus.RUNNING.value)
WAITING_FOR_WORKER = "queued for the job worker"
NO_WORKER = f"{WAITING_FOR_WORKER}, but none runs with this server (start one: `{WORKER_COMMAND}`)"


class TaskProgress:
    """Progress of a page task, written by its thread and read by the UI.

    The worker never calls ``st.*``; it only updates this object under its lock. A fragment
    with ``run_every`` polls :meth:`snapshot`.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self._lock = threading.Lock()
        self._fraction = 0.0
        self._message = "Starting…"
        self._done = False
        self._error: str | None = None
        self._result: object = None

    def update(self, fraction: float, message: str) -> None:
        """Progress callback (``progress(fraction, message)``)."""
        with self._lock:
            self._fraction = min(max(float(fraction), 0.0), 1.0)
            self._message = message

    def finish(self, result: object = None, error: str | None = None) -> None:
        """Mark the job as done, with a result or an error message."""
        with self._lock:
            self._done = True
            self._result = result
            self._error = error
            if error is None:
                self._fraction = 1.0

    def snapshot(self) -> dict:
        """``{"fraction", "message", "done", "error", "result"}`` at this moment."""
        with self._lock:
            return {
                "fraction": self._fraction,
                "message": self._message,
                "done": self._done,
                "error": self._error,
                "result": self._result,
            }


def start_task(description: str, work: Callable[[TaskProgress], object]) -> TaskProgress:
    """Run ``work(progress)`` in a daemon thread; return the progress object to poll."""
    progress = TaskProgress(description)

    def run() -> None:
        try:
            result = work(progress)
        except Exception as err:  # reported to the UI, never raised into Streamlit
            log.exception("%s failed", description)
            progress.finish(error=f"{type(err).__name__}: {err}")
        else:
            progress.finish(result=result)

    threading.Thread(target=run, name=f"loupe-{description}", daemon=True).start()
    return progress


def show_instant_learning() -> None:
    """Progress of the instant updates this tab's reviews queued; each outcome is flashed.

    The job rows are polled every :data:`LEARNING_POLL_SECONDS`; when one has ended, its
    message is flashed and the whole page re-runs (the queue and the active model changed),
    without the banner once no followed job is left. A queued job says when no worker runs.
    """
    if not st.session_state.get(LEARNING_JOBS_KEY):
        return

    @st.fragment(run_every=LEARNING_POLL_SECONDS)
    def poll() -> None:
        followed = list(st.session_state.get(LEARNING_JOBS_KEY) or [])
        if not followed:
            return
        with transaction() as session:
            jobs = [job for job in (get_job(session, job_id) for job_id in followed) if job]
        ended = [job for job in jobs if job.status not in ACTIVE]
        st.session_state[LEARNING_JOBS_KEY] = [job.id for job in jobs if job.status in ACTIVE]
        queued = NO_WORKER if no_worker() else WAITING_FOR_WORKER
        for job in jobs:
            if job.status in ACTIVE:
                text = job.message if job.status == db.JobStatus.RUNNING else queued
                st.progress(float(job.progress or 0.0), text=f"Learning from good parts: {text}")
        for job in ended:
            if job.status == db.JobStatus.SUCCEEDED:
                flash(job.message, "info")
            elif job.status == db.JobStatus.CANCELLED:
                flash("Instant learning was cancelled.", "info")
            else:
                flash(f"Instant learning failed: {job.message}", "warning")
        if ended:
            st.rerun()  # the whole page: the queue and the active model have changed

    poll()

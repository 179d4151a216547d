"""Background jobs: the job kinds, the context they run with, the worker and its launcher.

Public entry points (the queue itself is :mod:`db.jobs`)::

    from workers import JOB_KINDS, register_job_kind, job_function   # the registry
    from workers.worker import JobWorker                              # the worker
    from workers.launcher import ensure_worker_running                # for the app

Importing this package does not import torch or Ray.
"""

from workers.context import JobCancelledError, JobContext, JobOutcome
from workers.registry import (
    JOB_KINDS,
    RECALIBRATE_THRESHOLD,
    REFIT_DETECTOR,
    TRAIN_CLASSIFIER,
    job_function,
    known_kinds,
    register_job_kind,
)

__all__ = [
    "JOB_KINDS",
    "RECALIBRATE_THRESHOLD",
    "REFIT_DETECTOR",
    "TRAIN_CLASSIFIER",
    "JobCancelledError",
    "JobContext",
    "JobOutcome",
    "job_function",
    "known_kinds",
    "register_job_kind",
]

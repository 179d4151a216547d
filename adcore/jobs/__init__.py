"""Background jobs: the job kinds, the context they run with, the worker and its launcher.

Public entry points (the queue itself is :mod:`db.jobs`)::

    from adcore.jobs import JOB_KINDS, register_job_kind, job_function   # the registry
    from adcore.jobs.worker import JobWorker                              # the worker
    from adcore.jobs.launcher import ensure_worker_running                # for the app

Importing this package does not import torch or Ray.
"""

from adcore.jobs.context import JobCancelledError, JobContext, JobOutcome
from adcore.jobs.registry import (
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

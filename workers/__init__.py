"""The job runtime: the worker, its supervisor and launcher, the registry, progress, the outbox.

Workers run jobs; they do not define them. The job kinds are use cases in
:mod:`services.training` (their names: :class:`services.training.job_kinds.JobKind`); this
package claims queued jobs (:mod:`db.jobs`), maps a job's kind to its function
(:mod:`workers.registry`), runs it in this process or on Ray (:mod:`workers.ray_backend`),
reports its progress (:mod:`workers.reporting`) and delivers the outbox
(:mod:`workers.outbound_delivery`).

Public entry points::

    from workers import JOB_KINDS, register_job_kind, job_function   # the registry
    from workers import JobContext, JobOutcome                       # what a job function gets
    from workers.worker import JobWorker                              # the worker
    from workers.launcher import ensure_worker_running                # for the app

Importing this package does not import torch or Ray.
"""

from services.training.context import JobCancelledError, JobContext, JobOutcome
from workers.registry import JOB_KINDS, job_function, known_kinds, register_job_kind

__all__ = [
    "JOB_KINDS",
    "JobCancelledError",
    "JobContext",
    "JobOutcome",
    "job_function",
    "known_kinds",
    "register_job_kind",
]

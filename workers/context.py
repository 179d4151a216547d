"""The runtime's side of a job's context: the device it runs on, its peak memory, its context.

The context type itself belongs to the job kinds (:class:`services.training.context.JobContext`,
with :class:`~services.training.context.JobOutcome` and the
:class:`~services.training.context.Reporter` protocol): the runtime builds one for each claimed
job (:func:`job_context`) with a reporter that writes into the job row
(:class:`workers.reporting.DatabaseReporter`) or relays through a Ray actor
(:mod:`workers.ray_backend`), and measures what the job used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.models import Job
from services.training.context import JobContext, Reporter

DEVICE_ENV = "LOUPE_DEVICE"


def job_context(
    job: Job,
    *,
    parameters: dict[str, Any],
    session_factory: sessionmaker[Session],
    data_dir: Path,
    models_root: Path,
    device: str,
    reporter: Reporter,
) -> JobContext:
    """The context a claimed job's function runs with.

    Args:
        job: The claimed job row (its id, kind, project and creator are copied).
        parameters: The parameters the function gets (a copy of the job's).
        session_factory: The worker's session factory.
        data_dir: The data directory (stored images).
        models_root: Where new model versions are saved.
        device: The torch device the job runs on.
        reporter: Where its progress, log lines and stop requests travel.
    """
    return JobContext(
        job_id=job.id,
        kind=job.kind,
        parameters=parameters,
        project_id=job.project_id,
        created_by_id=job.created_by_id,
        session_factory=session_factory,
        data_dir=data_dir,
        models_root=models_root,
        device=device,
        reporter=reporter,
    )


def select_device(requested: str | None = None) -> str:
    """The device jobs run on: ``requested``, ``$LOUPE_DEVICE``, else CUDA when available."""
    choice = requested or os.environ.get(DEVICE_ENV)
    if choice:
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def reset_peak_memory(device: str) -> None:
    """Start measuring the peak GPU memory of one job (no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    """Peak memory in MiB.

    On CUDA, the GPU memory allocated since :func:`reset_peak_memory`; else this process's peak
    resident set size (``getrusage``, over the process's lifetime).
    """
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.max_memory_allocated()) / 2**20
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0

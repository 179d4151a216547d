"""What a job function gets and returns: the contract between the job kinds and the runtime.

A job function has the signature ``fn(ctx: JobContext) -> JobOutcome | None``. It reports with
``ctx.progress(fraction, message)`` and ``ctx.log(line)``, and checks ``ctx.should_stop()``
(or calls ``ctx.raise_if_cancelled()``) between steps: a manager's cancel request, or a
worker shutting down, sets that flag.

The job kinds (:mod:`services.training`) are written against these types; the runtime
(:mod:`workers`) builds the context for a claimed job and gives it a :class:`Reporter`: one
that writes straight into the job row (:class:`workers.reporting.DatabaseReporter`) or one
that relays through a Ray actor (:mod:`workers.ray_backend`). Nothing here imports the runtime.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from adcore.errors import JobCancelled

__all__ = ["JobCancelledError", "JobContext", "JobOutcome", "Reporter"]

JobCancelledError = JobCancelled
"""Raised inside a job function when it was asked to stop (:class:`adcore.errors.JobCancelled`,
which library code such as :func:`adcore.classifier.classifier.train_classifier` raises when
its ``should_stop`` callback returns True: pass it ``ctx.should_stop``)."""


class Reporter(Protocol):
    """Where a running job's progress, log lines and stop requests travel."""

    def progress(self, fraction: float, message: str) -> None:
        """Record the fraction done and the current step."""

    def log(self, line: str) -> None:
        """Append a line to the job's log."""

    def should_stop(self) -> bool:
        """Tell whether the job was asked to stop."""


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job reports back.

    Attributes:
        message: A one-line summary for the job list.
        model_version_id: The model version the job registered, if any.
        details: JSON-ready facts (shown in the log).
    """

    message: str
    model_version_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobContext:
    """Everything a job function may use.

    Attributes:
        job_id: The job's id.
        kind: The job kind.
        parameters: The job's parameters (a copy).
        project_id: The project it works on, if any.
        created_by_id: The user who queued it.
        session_factory: A session factory on the Loupe database.
        data_dir: The data directory (stored images).
        models_root: Where new model versions are saved.
        device: Torch device name, e.g. ``"cuda"`` or ``"cpu"``.
        reporter: Where progress goes.
    """

    job_id: int
    kind: str
    parameters: dict[str, Any]
    project_id: int | None
    created_by_id: int | None
    session_factory: sessionmaker[Session]
    data_dir: Path
    models_root: Path
    device: str
    reporter: Reporter

    @property
    def mixed_precision(self) -> bool:
        """Whether the job should use mixed precision (only on CUDA)."""
        return self.device.startswith("cuda")

    def progress(self, fraction: float, message: str = "") -> None:
        """Report the fraction done (0 to 1) and the current step."""
        self.reporter.progress(min(1.0, max(0.0, float(fraction))), message)

    def log(self, line: str) -> None:
        """Append a line to the job's log tail."""
        self.reporter.log(line)

    def should_stop(self) -> bool:
        """Whether the job was asked to stop (cancel, or worker shutdown)."""
        return self.reporter.should_stop()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelledError` if the job was asked to stop."""
        if self.should_stop():
            raise JobCancelledError("Cancelled on request")

    def scaled_progress(self, lo: float, hi: float) -> Callable[[float, str], None]:
        """A ``progress(fraction, message)`` callback for one step (mapped onto [lo, hi]).

        The callback also stops the step when the job was asked to stop, so long loops in
        detectors honour a cancel request between batches.
        """

        def tell(fraction: float, message: str) -> None:
            self.progress(lo + (hi - lo) * float(fraction), message)
            self.raise_if_cancelled()

        return tell

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision (float16 autocast) on CUDA; nothing on the CPU."""
        if not self.mixed_precision:
            yield
            return
        import torch

        with torch.autocast("cuda", dtype=torch.float16):
            yield

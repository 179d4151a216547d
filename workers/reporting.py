"""Writing a running job's progress and log into its row, and reading its cancel flag.

Writes are throttled (at most one every :data:`MIN_WRITE_INTERVAL` seconds, except the final
100 %) so a fast loop of progress calls does not hammer the database; buffered log lines go
out with the next write and at the end (:meth:`DatabaseReporter.flush`).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from db.jobs import cancel_requested, update_progress

MIN_WRITE_INTERVAL = 0.5
MIN_CANCEL_CHECK_INTERVAL = 0.5


class DatabaseReporter:
    """A :class:`services.training.context.Reporter` that writes to the job's row.

    Args:
        session_factory: The application's session factory.
        job_id: The running job.
        worker_id: The worker running it (writes are conditional on it).
        stop_event: Set by the worker to stop the job (shutdown, or the job was lost).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        job_id: int,
        worker_id: str,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.job_id = job_id
        self.worker_id = worker_id
        self.stop_event = stop_event or threading.Event()
        self._lock = threading.Lock()
        self._pending_lines: list[str] = []
        self._fraction: float | None = None
        self._message: str | None = None
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False

    def progress(self, fraction: float, message: str) -> None:
        """Record progress; written now or with the next write."""
        with self._lock:
            self._fraction, self._message = fraction, message
        if fraction >= 1.0 or time.monotonic() - self._last_write >= MIN_WRITE_INTERVAL:
            self.flush()

    def log(self, line: str) -> None:
        """Append a time-stamped line to the log (buffered)."""
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        with self._lock:
            self._pending_lines.append(f"{stamp} {line}")
        if time.monotonic() - self._last_write >= MIN_WRITE_INTERVAL:
            self.flush()

    def should_stop(self) -> bool:
        """Whether a manager cancelled the job or the worker wants it to stop."""
        if self.stop_event.is_set() or self._cancelled:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= MIN_CANCEL_CHECK_INTERVAL:
            self._last_cancel_check = now
            self._cancelled = cancel_requested(self.session_factory, self.job_id)
        return self._cancelled

    def flush(self) -> bool:
        """Write what is pending; return whether the job is still this worker's.

        A job that is no longer this worker's running job (failed as orphaned, say) sets the
        stop event, so the job function stops at its next check.
        """
        with self._lock:
            lines, self._pending_lines = self._pending_lines, []
            fraction, message = self._fraction, self._message
            self._last_write = time.monotonic()
        still_ours = update_progress(
            self.session_factory,
            self.job_id,
            self.worker_id,
            progress=fraction,
            message=message,
            log_lines=lines,
        )
        if not still_ours:
            self.stop_event.set()
        return still_ours

    def take_pending_lines(self) -> list[str]:
        """Return and forget the buffered log lines (the worker writes them with the outcome)."""
        with self._lock:
            lines, self._pending_lines = self._pending_lines, []
        return lines

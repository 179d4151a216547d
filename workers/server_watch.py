"""A launched worker stops with the server that launched it: watching that process.

The app's launcher (:func:`workers.launcher.ensure_worker_running`) starts ``loupe worker
--parent-pid PID`` with its own pid; the worker then runs a :class:`ParentWatch`, which checks
about once a second whether that process is still there and, when it is gone, stops the worker
as ``SIGTERM`` would. A process counts as gone when:

* no process has its pid any more (or only a zombie);
* the worker was its child and has been handed to another parent (``os.getppid()`` changed:
  what happens to every child when its parent dies, ``kill -9`` included);
* its pid now names another process: the start time in ``/proc/PID/stat`` (Linux) differs from
  the one seen when the watch started, or is later than the worker's own start (a parent
  cannot start after its child: the server died and its pid was reused before the watch began).

Without ``/proc`` only the first two rules apply. A worker started by hand (no ``--parent-pid``)
runs no watch and keeps running until it is stopped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from db.job_workers import pid_alive

log = logging.getLogger("loupe.worker")

WATCH_SECONDS = 1.0
"""How often a worker checks that the server that launched it is still running."""


def process_start_time(pid: int) -> int | None:
    """When a process started, in clock ticks after boot (``/proc/PID/stat``, field 22).

    Args:
        pid: The process id.

    Returns:
        The start time, or ``None`` when it cannot be read (no such process, not Linux).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may itself hold spaces and ")".
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # fields 3.. follow the command: field 22 is the 20th of them
    except (IndexError, ValueError):
        return None


class ParentWatch:
    """Calls ``on_gone`` once, from a daemon thread, when the process ``pid`` is gone.

    Args:
        pid: The process to watch: the server that launched this worker.
        on_gone: What to do then (the worker's graceful stop); called at most once.
        interval: Seconds between checks.
    """

    def __init__(
        self, pid: int, on_gone: Callable[[], None], *, interval: float = WATCH_SECONDS
    ) -> None:
        self.pid = int(pid)
        self.on_gone = on_gone
        self.interval = float(interval)
        self._start_time = process_start_time(self.pid)
        self._our_start_time = process_start_time(os.getpid())
        self._was_our_parent = os.getppid() == self.pid
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def gone(self) -> bool:
        """Whether the watched process is gone (exited, or its pid reused by another one)."""
        if self._was_our_parent and os.getppid() != self.pid:
            return True
        if not pid_alive(self.pid):
            return True
        if self._start_time is None:
            return False  # no /proc: a live pid is all we can tell
        if self._our_start_time is not None and self._start_time > self._our_start_time:
            return True  # started after us: not the process that launched us
        return process_start_time(self.pid) not in (None, self._start_time)

    def start(self) -> None:
        """Check now, then every ``interval`` seconds in a daemon thread, until gone or stopped."""
        self._done.clear()
        self._thread = threading.Thread(target=self._loop, name="parent-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (``on_gone`` is not called after this returns)."""
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.interval + 1)

    def _loop(self) -> None:
        while not self._done.is_set():
            if self.gone():
                log.warning("the server that launched this worker (pid %d) stopped", self.pid)
                self._done.set()
                self.on_gone()
                return
            self._done.wait(self.interval)

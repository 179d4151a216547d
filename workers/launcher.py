"""Starting the app's job worker, which stops with the server that launched it.

:func:`ensure_worker_running` is cheap to call on every page load: under a file lock in the
data directory it looks for a live worker (a fresh heartbeat in the ``workers`` table, or the
process named in ``<data dir>/worker.pid``) and only spawns ``python -m loupe worker`` when
there is none. It logs to ``<data dir>/logs/worker.log``.

The worker is given the calling process's pid (``--parent-pid``) and stops, as on ``SIGTERM``,
within about a second of that process ending, however it ended (``kill -9`` included; see
:mod:`workers.server_watch`): a worker outlives the server that supervised it only as long
as its running job takes to stop. Jobs are database rows, so queued ones wait for the next
server's worker. When several servers share a
data directory, the worker stops with the one that launched it, and another server's
supervisor launches a new one within seconds. The worker still runs in its own session
(``start_new_session``): a Ctrl-C in the server's terminal is not delivered to it, so a job is
asked to stop between steps instead of being interrupted mid-write.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from db.base import utcnow
from db.engine import create_engine_for_url, make_session_factory
from db.job_workers import DEFAULT_STALE_AFTER, live_workers, pid_alive, this_host
from db.models.jobs import Worker
from db.settings import DATA_DIR_ENV, DATABASE_URL_ENV

PID_FILE = "worker.pid"
LOCK_FILE = "worker.lock"
LOG_FILE = Path("logs") / "worker.log"

log = logging.getLogger("loupe.launcher")


def ensure_worker_running(
    data_dir: str | os.PathLike[str],
    database_url: str,
    *,
    models_root: str | os.PathLike[str] | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    stop_with_caller: bool = True,
) -> int | None:
    """Spawn a worker unless one is alive.

    Args:
        data_dir: The data directory (pid file, lock, log; the worker's images).
        database_url: The database the worker serves.
        models_root: Where the worker saves models (default: its ``$LOUPE_MODELS_DIR`` or
            ``./models``, relative to the current directory, like the app).
        stale_after: A worker whose heartbeat is older is considered dead.
        extra_args: More ``python -m loupe worker`` arguments.
        python: The interpreter to run the worker with.
        stop_with_caller: Whether the worker stops when the calling process (the server)
            is gone; ``False`` starts one that runs until stopped, like ``loupe worker`` by
            hand.

    Returns:
        The new worker's pid, or ``None`` when a worker was already alive.
    """
    directory = Path(data_dir).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(directory / LOCK_FILE):
        pidfile = directory / PID_FILE
        state = _database_state(database_url, stale_after, _read_pid(pidfile))
        if state.any_alive:
            return None
        if _pidfile_worker_alive(pidfile):
            if not state.pidfile_worker_hung:
                return None  # starting (not registered yet), or the database cannot tell
            _kill_hung_worker(_read_pid(pidfile))
        command = [python, "-m", "loupe", "worker", "--data-dir", str(directory)]
        command += ["--database-url", database_url]
        if models_root is not None:
            command += ["--models-dir", str(Path(models_root).resolve())]
        if stop_with_caller:
            command += ["--parent-pid", str(os.getpid())]
        command += list(extra_args)
        env = {**os.environ, DATA_DIR_ENV: str(directory), DATABASE_URL_ENV: database_url}
        log_path = directory / LOG_FILE
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=os.getcwd(),
                start_new_session=True,
                close_fds=True,
            )
        _write_pidfile(directory / PID_FILE, process.pid)
        return process.pid


def worker_pid(data_dir: str | os.PathLike[str]) -> int | None:
    """The pid in the data directory's pid file if that worker process is alive."""
    path = Path(data_dir).expanduser().resolve() / PID_FILE
    return _read_pid(path) if _pidfile_worker_alive(path) else None


def _pidfile_worker_alive(path: Path) -> bool:
    pid = _read_pid(path)
    if pid is None or not pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # not Linux: trust the pid
        return True
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"loupe" in words and b"worker" in words


@dataclass(frozen=True)
class _DatabaseState:
    """What the ``workers`` table says (both false when it cannot say, e.g. no table yet)."""

    any_alive: bool = False
    pidfile_worker_hung: bool = False


def _database_state(database_url: str, stale_after: timedelta, pid: int | None) -> _DatabaseState:
    """Whether a worker is alive, and whether the pid-file worker registered but went silent."""
    engine = create_engine_for_url(database_url)
    try:
        with make_session_factory(engine)() as session:
            if live_workers(session, stale_after=stale_after):
                return _DatabaseState(any_alive=True)
            if pid is None:
                return _DatabaseState()
            silent = session.scalar(
                select(Worker.id).where(
                    Worker.host == this_host(),
                    Worker.pid == pid,
                    Worker.stopped_at.is_(None),
                    Worker.heartbeat_at < utcnow() - stale_after,
                )
            )
            return _DatabaseState(pidfile_worker_hung=silent is not None)
    except OperationalError:
        return _DatabaseState()
    finally:
        engine.dispose()


def _kill_hung_worker(pid: int | None) -> None:
    """Kill a worker process that stopped sending heartbeats; its jobs become orphans."""
    if pid is None:
        return
    log.warning("job worker %d sent no heartbeat for too long: killing it", pid)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pidfile(path: Path, pid: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(f"{pid}\n")
    os.replace(temporary, path)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

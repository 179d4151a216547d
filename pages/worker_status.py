"""Whether this server runs a job worker, and why it could not start one (not a page).

Light on purpose: ``app.py`` reads it on every run, including the first one that draws the
sign-in page, so it must not import the job kinds (torch) that the Models page needs.
"""

from __future__ import annotations

import os

NO_WORKER_ENV = "LOUPE_NO_WORKER"
WORKER_COMMAND = "python -m loupe worker"


def no_worker() -> bool:
    """Whether ``$LOUPE_NO_WORKER`` asks the app not to start a job worker."""
    return os.environ.get(NO_WORKER_ENV, "").strip() not in ("", "0")


def worker_problem(database_url: str) -> str | None:
    """Why this server's worker supervisor could not check or start a worker, or ``None``."""
    from workers.supervisor import supervisor_for

    supervisor = supervisor_for(database_url)
    return None if supervisor is None else supervisor.status.problem

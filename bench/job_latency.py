"""How long a queued job waits before a running worker starts it (issue 4: <= 2 s).

Starts ``python -m loupe worker`` (default poll interval) on a fresh SQLite database, queues
``--jobs`` no-op jobs one at a time, and measures ``started_at - created_at`` from the job rows
(both stamped by the database clock of this machine), plus the wall time until the row says
``succeeded``. The no-op kind is registered by this module, which the worker imports with
``--job-module bench.job_latency``.

    .venv/bin/python bench/job_latency.py [--jobs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.registry import register_job_kind  # noqa: E402

NOOP = "bench_noop"


def noop(ctx: object) -> None:
    """A job that does nothing: what is measured is the queue, not the work."""
    ctx.progress(1.0, "nothing to do")


register_job_kind(NOOP, noop, replace=True)


def main() -> int:
    """Queue ``--jobs`` no-op jobs for a real worker and print the wait and total times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()

    import db
    from db.jobs import enqueue_job

    work = Path(tempfile.mkdtemp(prefix="loupe-jobs-"))
    url = f"sqlite:///{work / 'loupe.db'}"
    engine = db.init_db(url)
    factory = db.make_session_factory(engine)
    with factory() as session, session.begin():
        manager = db.create_user(session, "bench-manager", "bench-password-42", "manager")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "loupe", "worker",
            "--database-url", url, "--data-dir", str(work), "--models-dir", str(work / "m"),
            "--job-module", "bench.job_latency", "--device", "cpu",
        ],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(work / "worker.log").open("wb"),
    )  # fmt: skip
    waits, totals = [], []
    try:
        time.sleep(5)  # let the worker import torch and register before the first job
        for _ in range(args.jobs):
            with factory() as session, session.begin():
                job_id = enqueue_job(
                    session, kind=NOOP, parameters={}, project_id=None, user=manager
                ).id
            queued = time.perf_counter()
            while True:
                with factory() as session:
                    job = session.get(db.Job, job_id)
                    if job.status in ("succeeded", "failed", "cancelled"):
                        break
                time.sleep(0.02)
            totals.append(time.perf_counter() - queued)
            assert job.status == "succeeded", (job.status, job.message)
            waits.append((job.started_at - job.created_at).total_seconds())
            time.sleep(0.3)  # queue the next one at a random point of the poll cycle
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        engine.dispose()
    print(f"jobs: {len(waits)}; load average {os.getloadavg()[0]:.1f}")
    for name, values in (("queued -> started (s)", waits), ("queued -> succeeded (s)", totals)):
        print(
            f"{name}: median {statistics.median(values):.3f}, "
            f"max {max(values):.3f}, min {min(values):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

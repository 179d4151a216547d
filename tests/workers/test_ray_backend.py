"""The Ray backend on a local one-CPU Ray instance: progress relayed, cancel, failures."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import Job, Project, User, init_db, make_session_factory
from db.jobs import enqueue_job, request_cancel
from workers import JobContext, JobOutcome, register_job_kind
from workers.registry import JOB_KINDS
from workers.worker import JobWorker

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
WAIT_SECONDS = 120.0


def relayed_job(ctx: JobContext) -> JobOutcome:
    import os

    ctx.progress(0.25, "a quarter")
    ctx.log(f"running in process {os.getpid()} on {ctx.device}")
    ctx.progress(0.75, "three quarters")
    return JobOutcome("done on ray", None, {"pid": os.getpid()})


def waiting_job(ctx: JobContext) -> None:
    ctx.progress(0.1, "waiting")
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        ctx.raise_if_cancelled()
        time.sleep(0.05)


def failing_job(ctx: JobContext) -> None:
    raise ValueError("bad parameter")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def setup(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[sessionmaker[Session], User, int, JobWorker]]:
    monkeypatch.setenv("LOUPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    monkeypatch.setenv("LOUPE_RAY_ADDRESS", "auto")  # the worker picks the Ray backend
    for kind, function in {
        "r_ok": relayed_job,
        "r_wait": waiting_job,
        "r_fail": failing_job,
    }.items():
        register_job_kind(kind, function, replace=True)
    engine = init_db()
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        project = Project(name="widgets")
        session.add_all([manager, project])
        session.flush()
        project_id = project.id
    worker = JobWorker(
        factory, data_dir=tmp_path / "data", models_root=tmp_path / "models", device="cpu"
    )
    yield factory, manager, project_id, worker
    engine.dispose()
    for kind in ("r_ok", "r_wait", "r_fail"):
        JOB_KINDS.pop(kind, None)


def enqueue(setup: tuple, kind: str) -> int:
    factory, manager, project_id, _ = setup
    with factory() as session, session.begin():
        return enqueue_job(
            session, kind=kind, parameters={}, project_id=project_id, user=manager
        ).id


def job(setup: tuple, job_id: int) -> Job:
    with setup[0]() as session:
        return session.get(Job, job_id)


def test_a_job_runs_as_a_ray_task_and_its_progress_is_relayed(setup: tuple) -> None:
    import os

    worker: JobWorker = setup[3]
    assert worker.backend.name == "ray"
    job_id = enqueue(setup, "r_ok")
    assert worker.run(once=True) == 1
    row = job(setup, job_id)
    assert row.status == "succeeded" and row.message == "done on ray"
    assert "running in process" in row.log_tail
    assert f"process {os.getpid()} " not in row.log_tail  # it ran in a Ray worker process
    assert row.device == "ray:cpu"


def test_a_cancel_request_reaches_the_ray_task(setup: tuple) -> None:
    import threading

    factory, manager, _, worker = setup
    job_id = enqueue(setup, "r_wait")
    thread = threading.Thread(target=worker.run, kwargs={"once": True})
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while job(setup, job_id).message != "waiting":  # relayed from the task
            assert time.monotonic() < deadline, "the task never reported progress"
            time.sleep(0.1)
        with factory() as session, session.begin():
            request_cancel(session, job_id=job_id, user=manager)
        thread.join(WAIT_SECONDS)
    finally:
        worker.stop()
        thread.join(WAIT_SECONDS)
    assert job(setup, job_id).status == "cancelled"


def test_a_failing_ray_task_fails_the_job(setup: tuple) -> None:
    job_id = enqueue(setup, "r_fail")
    assert setup[3].run(once=True) == 1
    row = job(setup, job_id)
    assert row.status == "failed" and "bad parameter" in row.message

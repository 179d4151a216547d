"""The job worker in process: runs, records progress, fails, cancels, stops gracefully."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adcore.errors import JobCancelled
from db import Job, Project, User
from db.jobs import enqueue_job, request_cancel
from db.models.jobs import Worker
from workers import JobCancelledError, JobContext, JobOutcome, register_job_kind
from workers.context import select_device
from workers.registry import JOB_KINDS, describe_outcome
from workers.worker import STOPPED_MESSAGE, JobWorker, LocalBackend

WAIT_SECONDS = 60.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition()`` holds; fail after a generous deadline (no timing claim)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def good_job(ctx: JobContext) -> JobOutcome:
    ctx.progress(0.5, "half way")
    ctx.log("hello from the job")
    return JobOutcome("all good", None, {"n": ctx.parameters["n"]})


def broken_job(ctx: JobContext) -> None:
    raise RuntimeError("boom")


def patient_job(ctx: JobContext) -> None:
    ctx.progress(0.1, "waiting to be cancelled")
    while True:
        ctx.raise_if_cancelled()
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def test_kinds() -> Iterator[None]:
    kinds = {"t_good": good_job, "t_broken": broken_job, "t_patient": patient_job}
    for kind, function in kinds.items():
        register_job_kind(kind, function, replace=True)
    yield
    for kind in kinds:
        JOB_KINDS.pop(kind, None)


@pytest.fixture
def setup(factory: sessionmaker[Session]) -> tuple[User, int]:
    with factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        project = Project(name="widgets")
        session.add_all([manager, project])
        session.flush()
        return manager, project.id


def make_worker(factory: sessionmaker[Session], tmp_path: Path) -> JobWorker:
    return JobWorker(
        factory,
        data_dir=tmp_path / "data",
        models_root=tmp_path / "models",
        device="cpu",
        poll_interval=0.05,
        heartbeat_interval=0.2,
    )


def enqueue(factory: sessionmaker[Session], setup: tuple[User, int], kind: str) -> int:
    manager, project_id = setup
    with factory() as session, session.begin():
        return enqueue_job(
            session, kind=kind, parameters={"n": 3}, project_id=project_id, user=manager
        ).id


def job_row(factory: sessionmaker[Session], job_id: int) -> Job:
    with factory() as session:
        return session.get(Job, job_id)


def test_a_job_runs_to_success_with_progress_log_and_resources(
    factory: sessionmaker[Session], setup: tuple[User, int], tmp_path: Path
) -> None:
    job_id = enqueue(factory, setup, "t_good")
    worker = make_worker(factory, tmp_path)
    assert isinstance(worker.backend, LocalBackend)
    assert worker.run(once=True) == 1
    job = job_row(factory, job_id)
    assert job.status == "succeeded" and job.message == "all good" and job.progress == 1.0
    assert "hello from the job" in job.log_tail
    assert job.device == "cpu" and job.peak_memory_mb > 0
    assert job.worker_id == worker.worker_id and job.finished_at >= job.started_at
    with factory() as session:
        assert session.get(Worker, worker.worker_id).stopped_at is not None
    assert worker.run(once=True) == 0  # nothing queued: returns at once


def test_failures_are_recorded_not_raised(
    factory: sessionmaker[Session], setup: tuple[User, int], tmp_path: Path
) -> None:
    broken = enqueue(factory, setup, "t_broken")
    unknown = enqueue(factory, setup, "t_no_such_kind")
    after = enqueue(factory, setup, "t_good")
    assert make_worker(factory, tmp_path).run(max_jobs=3) == 3
    job = job_row(factory, broken)
    assert job.status == "failed" and job.message == "RuntimeError: boom"
    assert "Traceback" in job.log_tail
    job = job_row(factory, unknown)
    assert job.status == "failed" and "Unknown job kind 't_no_such_kind'" in job.message
    assert job_row(factory, after).status == "succeeded"


def test_cancelling_a_running_job_stops_it(
    factory: sessionmaker[Session], setup: tuple[User, int], tmp_path: Path
) -> None:
    job_id = enqueue(factory, setup, "t_patient")
    worker = make_worker(factory, tmp_path)
    thread = threading.Thread(target=worker.run, kwargs={"once": True})
    thread.start()
    try:
        wait_for(lambda: job_row(factory, job_id).status == "running", "the job to start")
        with factory() as session, session.begin():
            request_cancel(session, job_id=job_id, user=setup[0])
        thread.join(WAIT_SECONDS)
    finally:
        worker.stop()
        thread.join(WAIT_SECONDS)
    job = job_row(factory, job_id)
    assert job.status == "cancelled" and job.message == "Cancelled"
    assert job.cancel_requested


def test_stopping_the_worker_fails_the_running_job_and_takes_no_more(
    factory: sessionmaker[Session], setup: tuple[User, int], tmp_path: Path
) -> None:
    running = enqueue(factory, setup, "t_patient")
    waiting = enqueue(factory, setup, "t_good")
    worker = make_worker(factory, tmp_path)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_for(lambda: job_row(factory, running).status == "running", "the job to start")
        worker.stop()  # what SIGTERM does
        thread.join(WAIT_SECONDS)
    finally:
        worker.stop()
        thread.join(WAIT_SECONDS)
    assert not thread.is_alive()
    job = job_row(factory, running)
    assert job.status == "failed" and job.message == STOPPED_MESSAGE
    assert job_row(factory, waiting).status == "queued"


def test_outcomes_and_device_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert describe_outcome(None).message == "Done"
    assert describe_outcome({"message": "m", "model_version_id": 4, "x": 1}) == JobOutcome(
        "m", 4, {"x": 1}
    )
    monkeypatch.setenv("LOUPE_DEVICE", "cpu")
    assert select_device() == "cpu" and select_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="already registered"):
        register_job_kind("t_good", broken_job)
    assert JobCancelledError is JobCancelled  # what library code (the classifier) raises

"""The worker supervisor's rules, with a stand-in launcher (real processes: test_worker_process)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

import workers.launcher
from db import Job, Project, User
from db.job_workers import WORKER_DIED_MESSAGE, register_worker, this_host
from db.jobs import claim_next_job, enqueue_job
from services.training.job_kinds import JobKind
from workers.supervisor import (
    WorkerSupervisor,
    start_supervisor,
    stop_supervisors,
    supervisor_for,
)


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Launches of the stand-in launcher: each 'starts' a worker that never registers."""
    started: list[int] = []

    def launch(data_dir, database_url, **options) -> int:
        started.append(90_000 + len(started))
        return started[-1]

    monkeypatch.setattr(workers.launcher, "ensure_worker_running", launch)
    return started


@pytest.fixture
def supervisor(engine, data_dir: Path) -> Iterator[WorkerSupervisor]:
    supervisor = WorkerSupervisor(
        engine.url.render_as_string(hide_password=False), data_dir, interval=2.0
    )
    yield supervisor
    supervisor.stop()


def dead_worker_id() -> str:
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{this_host()}:{process.pid}:gone"


def test_no_live_worker_settles_the_dead_ones_jobs_then_launches(
    supervisor: WorkerSupervisor, session_factory: sessionmaker[Session], launches: list[int]
) -> None:
    with session_factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        project = Project(name="widgets")
        session.add_all([manager, project])
        session.flush()
        job_ids = [
            enqueue_job(session, kind=kind, parameters={}, project_id=project.id, user=manager).id
            for kind in (JobKind.REFIT_DETECTOR, JobKind.TUNE_EXPLAINER)
        ]
    dead = dead_worker_id()
    register_worker(session_factory, dead)
    for _ in job_ids:
        claim_next_job(session_factory, dead)

    status = supervisor.check()

    assert launches == [90_000] and status.launched_pid == 90_000 and not status.worker_alive
    assert status.problem is None
    with session_factory() as session:
        refit, tune = (session.get(Job, job_id) for job_id in job_ids)
        assert refit.status == "queued" and WORKER_DIED_MESSAGE in refit.message  # safe kind
        assert tune.status == "failed" and WORKER_DIED_MESSAGE in tune.message  # not safe


def test_a_live_worker_means_no_launch(
    supervisor: WorkerSupervisor, session_factory: sessionmaker[Session], launches: list[int]
) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        register_worker(session_factory, f"{this_host()}:{sleeper.pid}:live")
        status = supervisor.check()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert status.worker_alive and launches == []


def test_workers_that_never_come_alive_are_launched_less_and_less_often(
    supervisor: WorkerSupervisor, launches: list[int]
) -> None:
    supervisor.check()
    supervisor.check()  # at once: within the back-off after a worker that never registered
    assert launches == [90_000]


def test_a_crash_loop_is_reported_with_the_workers_log(
    supervisor: WorkerSupervisor, launches: list[int]
) -> None:
    supervisor.check()
    supervisor._last_launch -= 3600  # the back-off has passed
    supervisor.check()
    problem = supervisor.check().problem
    assert launches == [90_000, 90_001]
    assert problem is not None and "exited before they registered" in problem
    assert "worker.log" in problem


def test_a_failing_launch_is_reported_and_tried_again(
    supervisor: WorkerSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise OSError("read-only data directory")

    monkeypatch.setattr(workers.launcher, "ensure_worker_running", broken)
    assert supervisor.check().problem == "OSError: read-only data directory"
    monkeypatch.setattr(workers.launcher, "ensure_worker_running", lambda *a, **k: None)
    assert supervisor.check().problem is None


def test_one_supervisor_per_database_per_process(
    engine, data_dir: Path, launches: list[int]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    try:
        first = start_supervisor(url, data_dir)
        assert start_supervisor(url, data_dir) is first and first.running
        assert supervisor_for(url) is first
    finally:
        stop_supervisors()
    assert supervisor_for(url) is None and not first.running


def test_a_first_check_delay_holds_the_first_launch(tmp_path) -> None:
    """The server's first page is drawn before a worker loads torch: the first check waits."""
    from workers.supervisor import WorkerSupervisor

    supervisor = WorkerSupervisor(
        f"sqlite:///{tmp_path / 'loupe.db'}", tmp_path, first_check_delay=30.0
    )
    checks = []
    supervisor.check = lambda: checks.append(1)  # type: ignore[method-assign]
    supervisor.start()
    try:
        assert checks == [] and supervisor.running
    finally:
        supervisor.stop()
    assert checks == []  # stopped during the delay: never checked, never launched

"""Which job kinds are retried after their worker died, and what a retried job sees."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import Job, Project, User
from db.job_workers import WORKER_DEATHS_KEY, register_worker, this_host
from db.jobs import claim_next_job, enqueue_job
from services.training.job_kinds import JobKind
from workers import JobContext, JobOutcome, register_job_kind
from workers.registry import (
    BUILTIN_RETRY_SAFETY,
    JOB_KINDS,
    RETRY_SAFETY,
    known_kinds,
    retry_safe_kinds,
)
from workers.worker import JobWorker


def echo_parameters(ctx: JobContext) -> JobOutcome:
    return JobOutcome("echoed")


@pytest.fixture(autouse=True)
def test_kinds() -> Iterator[None]:
    register_job_kind("t_echo_safe", echo_parameters, replace=True, retry_safe=True)
    register_job_kind("t_echo_unsafe", echo_parameters, replace=True)
    yield
    for kind in ("t_echo_safe", "t_echo_unsafe"):
        JOB_KINDS.pop(kind, None)
        RETRY_SAFETY.pop(kind, None)


def test_every_built_in_kind_declares_whether_it_is_retried() -> None:
    built_in = set(known_kinds()) - {"t_echo_safe", "t_echo_unsafe"}
    assert set(BUILTIN_RETRY_SAFETY) == built_in
    safe = retry_safe_kinds()
    assert {JobKind.REFIT_DETECTOR, JobKind.RECALIBRATE_THRESHOLD, JobKind.TRAIN_CLASSIFIER} <= safe
    assert JobKind.TRAIN_FEEDBACK_SCORER in safe and JobKind.TRAIN_CLIP in safe
    # see the registry's reasons
    assert JobKind.TUNE_EXPLAINER not in safe and JobKind.TUNE_CLIP not in safe


def test_a_kind_is_retried_only_when_it_says_so() -> None:
    assert "t_echo_safe" in retry_safe_kinds()
    assert "t_echo_unsafe" not in retry_safe_kinds()
    register_job_kind("t_echo_unsafe", echo_parameters, replace=True, retry_safe=True)
    assert "t_echo_unsafe" in retry_safe_kinds()


def test_a_retried_job_runs_with_its_own_parameters_only(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        project = Project(name="widgets")
        session.add_all([manager, project])
        session.flush()
        safe = enqueue_job(
            session, kind="t_echo_safe", parameters={"n": 3}, project_id=project.id, user=manager
        ).id
        unsafe = enqueue_job(
            session, kind="t_echo_unsafe", parameters={"n": 3}, project_id=project.id, user=manager
        ).id
    process = subprocess.Popen(["true"])
    process.wait()
    dead = f"{this_host()}:{process.pid}:gone"  # a worker whose process has exited
    register_worker(factory, dead)
    assert claim_next_job(factory, dead).id == safe
    assert claim_next_job(factory, dead).id == unsafe

    worker = JobWorker(
        factory, data_dir=tmp_path / "data", models_root=tmp_path / "models", device="cpu"
    )
    assert worker.run(max_jobs=1) == 1  # its start settles the dead worker's jobs

    with factory() as session:
        retried, failed = session.get(Job, safe), session.get(Job, unsafe)
        assert retried.status == "succeeded" and retried.worker_id == worker.worker_id
        assert retried.parameters[WORKER_DEATHS_KEY] == 1
        assert "Queued again" in retried.log_tail
        assert failed.status == "failed" and "not retried automatically" in failed.message


def test_the_worker_hides_the_death_count_from_the_job_function(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    seen: list[dict] = []

    def record(ctx: JobContext) -> None:
        seen.append(dict(ctx.parameters))

    register_job_kind("t_record", record, replace=True, retry_safe=True)
    try:
        with factory() as session, session.begin():
            manager = User(name="manager-1", role="manager", password_hash="x")
            session.add(manager)
            session.flush()
            enqueue_job(
                session,
                kind="t_record",
                parameters={"n": 3, WORKER_DEATHS_KEY: 1},
                project_id=None,
                user=manager,
            )
        worker = JobWorker(
            factory, data_dir=tmp_path / "data", models_root=tmp_path / "models", device="cpu"
        )
        assert worker.run(once=True) == 1
    finally:
        JOB_KINDS.pop("t_record", None)
        RETRY_SAFETY.pop("t_record", None)
    assert seen == [{"n": 3}]

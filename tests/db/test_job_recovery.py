"""Jobs of a dead worker: retried once when their kind is safe, else failed with the reason."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import Job, User
from db.job_workers import (
    MAX_AUTOMATIC_RETRIES,
    WORKER_DEATHS_KEY,
    WORKER_DIED_MESSAGE,
    job_function_parameters,
    recover_orphaned_jobs,
    register_worker,
    this_host,
    worker_deaths,
)
from db.jobs import claim_next_job, enqueue_job, finish_job, request_cancel

SAFE, UNSAFE = "safe_kind", "unsafe_kind"


@pytest.fixture
def manager(session_factory: sessionmaker[Session], make_user: Callable[..., int]) -> User:
    user_id = make_user("manager-1", "manager")
    with session_factory() as session:
        return session.get(User, user_id)


def queue(factory: sessionmaker[Session], user: User, project_id: int, kind: str) -> int:
    with factory() as session, session.begin():
        job = enqueue_job(session, kind=kind, parameters={"n": 3}, project_id=project_id, user=user)
        return job.id


def dead_worker_id() -> str:
    """The id of a worker on this host whose process has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{this_host()}:{process.pid}:gone"


def run_and_kill(factory: sessionmaker[Session], job_id: int) -> str:
    """A worker claims the job, then dies (its process is gone) with the job running."""
    worker = dead_worker_id()
    register_worker(factory, worker)
    claimed = claim_next_job(factory, worker)
    assert claimed is not None and claimed.id == job_id
    return worker


def stored(factory: sessionmaker[Session], job_id: int) -> Job:
    with factory() as session:
        return session.get(Job, job_id)


def test_a_safe_kind_is_queued_again_once_then_failed_with_the_reason(
    session_factory: sessionmaker[Session], manager: User, project_id: int
) -> None:
    job_id = queue(session_factory, manager, project_id, SAFE)
    first_worker = run_and_kill(session_factory, job_id)

    recovered = recover_orphaned_jobs(session_factory, retry_kinds={SAFE})

    assert recovered.retried == (job_id,) and not recovered.failed
    job = stored(session_factory, job_id)
    assert job.status == "queued" and job.worker_id is None
    assert job.started_at is None and job.finished_at is None and job.progress == 0.0
    assert WORKER_DIED_MESSAGE in job.message and "retry 1 of 1" in job.message
    assert first_worker in job.log_tail and WORKER_DIED_MESSAGE in job.log_tail
    assert job.parameters == {"n": 3, WORKER_DEATHS_KEY: 1}
    assert job_function_parameters(job.parameters) == {"n": 3}  # what the job function sees
    # the dead worker can no longer record anything for it
    assert not finish_job(session_factory, job_id, first_worker, status="succeeded", message="x")

    run_and_kill(session_factory, job_id)  # the retry's worker dies too
    recovered = recover_orphaned_jobs(session_factory, retry_kinds={SAFE})

    assert recovered.failed == (job_id,) and not recovered.retried
    job = stored(session_factory, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert WORKER_DIED_MESSAGE in job.message and "not retried again" in job.message
    assert worker_deaths(job.parameters) == MAX_AUTOMATIC_RETRIES + 1
    assert not recover_orphaned_jobs(session_factory, retry_kinds={SAFE})  # nothing left


def test_a_kind_not_declared_safe_is_failed_at_once_with_the_reason(
    session_factory: sessionmaker[Session], manager: User, project_id: int
) -> None:
    unsafe = queue(session_factory, manager, project_id, UNSAFE)
    run_and_kill(session_factory, unsafe)

    recovered = recover_orphaned_jobs(session_factory, retry_kinds={SAFE})

    assert recovered.failed == (unsafe,) and not recovered.retried
    job = stored(session_factory, unsafe)
    assert job.status == "failed" and job.finished_at is not None
    assert WORKER_DIED_MESSAGE in job.message and "not retried automatically" in job.message
    assert worker_deaths(job.parameters) == 1


def test_a_job_being_cancelled_is_cancelled_not_retried(
    session_factory: sessionmaker[Session], manager: User, project_id: int
) -> None:
    job_id = queue(session_factory, manager, project_id, SAFE)
    run_and_kill(session_factory, job_id)
    with session_factory() as session, session.begin():
        request_cancel(session, job_id=job_id, user=session.get(User, manager.id))

    recovered = recover_orphaned_jobs(session_factory, retry_kinds={SAFE})

    assert recovered.cancelled == (job_id,)
    job = stored(session_factory, job_id)
    assert job.status == "cancelled" and WORKER_DIED_MESSAGE.split(" while")[0] in job.message


def test_a_live_workers_job_is_left_alone(
    session_factory: sessionmaker[Session], manager: User, project_id: int
) -> None:
    job_id = queue(session_factory, manager, project_id, SAFE)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = f"{this_host()}:{sleeper.pid}:live"
        register_worker(session_factory, live)
        assert claim_next_job(session_factory, live).id == job_id

        assert not recover_orphaned_jobs(session_factory, retry_kinds={SAFE})

        job = stored(session_factory, job_id)
        assert job.status == "running" and job.worker_id == live
        assert WORKER_DEATHS_KEY not in job.parameters
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_second_recovery_never_settles_a_job_twice(
    session_factory: sessionmaker[Session], manager: User, project_id: int
) -> None:
    job_id = queue(session_factory, manager, project_id, SAFE)
    run_and_kill(session_factory, job_id)

    first = recover_orphaned_jobs(session_factory, retry_kinds={SAFE})
    second = recover_orphaned_jobs(session_factory, retry_kinds={SAFE})

    assert first.retried == (job_id,) and not second
    assert worker_deaths(stored(session_factory, job_id).parameters) == 1


@pytest.mark.parametrize("stored_value", ["x", None, -2, [1]])
def test_worker_deaths_reads_a_damaged_count_as_none(stored_value: object) -> None:
    assert worker_deaths({WORKER_DEATHS_KEY: stored_value}) == 0

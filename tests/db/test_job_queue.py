"""The job queue: enqueue, atomic claims, progress, cancel, finish, orphan recovery, migration."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, update
from sqlalchemy.orm import Session, sessionmaker

from db import Base, Job, PermissionDenied, User, current_revision, downgrade, upgrade, utcnow
from db.engine import create_engine_for_url, make_session_factory
from db.job_workers import (
    WORKER_DIED_MESSAGE,
    live_workers,
    new_worker_id,
    parse_worker_id,
    recover_orphaned_jobs,
    register_worker,
    this_host,
    worker_heartbeat,
)
from db.jobs import (
    LOG_TAIL_LINES,
    append_log,
    cancel_requested,
    claim_next_job,
    enqueue_job,
    finish_job,
    get_job,
    list_jobs,
    request_cancel,
    update_progress,
)
from db.migrate import head_revision
from db.models.jobs import Worker


@pytest.fixture
def people(session_factory: sessionmaker[Session], make_user: Callable[..., int]) -> dict:
    ids = {role: make_user(f"{role}-1", role) for role in ("inspector", "manager", "admin")}
    with session_factory() as session:
        return {role: session.get(User, user_id) for role, user_id in ids.items()}


def queue(factory: sessionmaker[Session], user: User, project_id: int, kind="refit_detector"):
    with factory() as session, session.begin():
        return enqueue_job(
            session, kind=kind, parameters={"n": 1}, project_id=project_id, user=user
        ).id


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_migration_0002_goes_down_and_up(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    downgrade(engine, "0001")
    inspector = inspect(engine)
    assert "workers" not in inspector.get_table_names()
    columns = {column["name"] for column in inspector.get_columns("jobs")}
    assert not columns & {"cancel_requested", "heartbeat_at", "result_model_version_id"}
    assert {c["name"] for c in inspector.get_check_constraints("jobs")} == {
        "ck_jobs_status",
        "ck_jobs_progress_range",
    }
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert len(inspect(engine).get_check_constraints("jobs")) == 2


def test_only_managers_queue_jobs(
    session_factory: sessionmaker[Session], people: dict, project_id: int
) -> None:
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        enqueue_job(
            session,
            kind="refit_detector",
            parameters={},
            project_id=project_id,
            user=people["inspector"],
        )
    with session_factory() as session, session.begin(), pytest.raises(ValueError, match="JSON"):
        enqueue_job(
            session,
            kind="x",
            parameters={"bad": object()},
            project_id=project_id,
            user=people["manager"],
        )
    with session_factory() as session, session.begin(), pytest.raises(LookupError):
        enqueue_job(session, kind="x", parameters={}, project_id=999, user=people["manager"])
    job_id = queue(session_factory, people["admin"], project_id)
    with session_factory() as session:
        job = get_job(session, job_id)
        assert job.status == "queued" and job.created_by_id == people["admin"].id
        assert job.cancel_requested is False


def test_lifecycle_enqueue_claim_progress_succeed(
    session_factory: sessionmaker[Session], people: dict, project_id: int
) -> None:
    first = queue(session_factory, people["manager"], project_id)
    second = queue(session_factory, people["manager"], project_id)
    worker = new_worker_id()
    claimed = claim_next_job(session_factory, worker)
    assert claimed.id == first and claimed.status == "running" and claimed.worker_id == worker
    assert update_progress(
        session_factory, first, worker, progress=0.4, message="Fitting", log_lines=["a", "b"]
    )
    assert not update_progress(session_factory, first, "someone-else:1:x", progress=0.9)
    assert update_progress(session_factory, first, worker, progress=7.0, log_lines=["c"])
    with session_factory() as session:
        job = get_job(session, first)
        assert job.progress == 1.0 and job.message == "Fitting"
        assert job.log_tail == "a\nb\nc" and job.heartbeat_at is not None
    assert finish_job(
        session_factory,
        first,
        worker,
        status="succeeded",
        message="ok",
        device="cpu",
        peak_memory_mb=12.5,
    )
    assert not finish_job(session_factory, first, worker, status="failed", message="again")
    with session_factory() as session:
        job = get_job(session, first)
        assert (job.status, job.message, job.device, job.peak_memory_mb) == (
            "succeeded",
            "ok",
            "cpu",
            12.5,
        )
        assert job.finished_at is not None and job.progress == 1.0
        assert [j.id for j in list_jobs(session, project_id=project_id)] == [second, first]
        assert [j.id for j in list_jobs(session, statuses=["queued"])] == [second]
    assert claim_next_job(session_factory, worker).id == second
    assert claim_next_job(session_factory, worker) is None


def test_log_tail_keeps_the_last_lines() -> None:
    text = append_log("", [f"line {i}" for i in range(LOG_TAIL_LINES + 50)])
    lines = text.splitlines()
    assert len(lines) == LOG_TAIL_LINES and lines[-1] == f"line {LOG_TAIL_LINES + 49}"
    assert append_log("x", ["two\nlines"]) == "x\ntwo\nlines"


def test_cancel_a_queued_job_at_once(
    session_factory: sessionmaker[Session], people: dict, project_id: int
) -> None:
    job_id = queue(session_factory, people["manager"], project_id)
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        request_cancel(session, job_id=job_id, user=people["inspector"])
    with session_factory() as session, session.begin():
        job = request_cancel(session, job_id=job_id, user=people["manager"])
        assert job.status == "cancelled" and job.finished_at is not None
    assert claim_next_job(session_factory, new_worker_id()) is None


def test_cancel_a_running_job_sets_the_flag(
    session_factory: sessionmaker[Session], people: dict, project_id: int
) -> None:
    job_id = queue(session_factory, people["manager"], project_id)
    worker = new_worker_id()
    claim_next_job(session_factory, worker)
    assert not cancel_requested(session_factory, job_id)
    with session_factory() as session, session.begin():
        job = request_cancel(session, job_id=job_id, user=people["admin"])
        assert job.status == "running" and job.cancel_requested
    assert cancel_requested(session_factory, job_id)
    assert finish_job(session_factory, job_id, worker, status="cancelled", message="Cancelled")
    with session_factory() as session, session.begin():  # finished jobs stay as they are
        assert request_cancel(session, job_id=job_id, user=people["admin"]).status == "cancelled"


def test_two_concurrent_claimers_never_get_the_same_job(
    engine: Engine, session_factory: sessionmaker[Session], people: dict, project_id: int
) -> None:
    queued = {queue(session_factory, people["manager"], project_id) for _ in range(40)}
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claimer(name: str) -> None:
        own_engine = create_engine_for_url(engine.url)
        factory = make_session_factory(own_engine)
        mine: list[int] = []
        try:
            start.wait()
            while (job := claim_next_job(factory, name)) is not None:
                mine.append(job.id)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            own_engine.dispose()
            claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"host:{i}:t",)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    everything = claimed["host:1:t"] + claimed["host:2:t"]
    assert sorted(everything) == sorted(queued)  # each job exactly once
    with session_factory() as session:
        for job_id in queued:
            job = session.get(Job, job_id)
            owner = "host:1:t" if job_id in claimed["host:1:t"] else "host:2:t"
            assert job.status == "running" and job.worker_id == owner


def test_recover_orphaned_jobs(
    session_factory: sessionmaker[Session], people: dict, project_id: int
) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead_worker = f"{this_host()}:{dead_pid()}:dead"
        live_worker = f"{this_host()}:{sleeper.pid}:live"
        far_stale, far_fresh = "elsewhere:1:stale", "elsewhere:2:fresh"
        ids = {}
        for name in (dead_worker, live_worker, far_stale, far_fresh):
            ids[name] = queue(session_factory, people["manager"], project_id)
            assert claim_next_job(session_factory, name).id == ids[name]
            register_worker(session_factory, name)
        old = utcnow() - timedelta(minutes=10)
        with session_factory() as session, session.begin():
            session.execute(update(Job).where(Job.id == ids[far_stale]).values(heartbeat_at=old))
            session.execute(update(Worker).where(Worker.id == far_stale).values(heartbeat_at=old))
        with session_factory() as session:
            alive = {worker.id for worker in live_workers(session)}
        assert alive == {live_worker, far_fresh}
        recovered = recover_orphaned_jobs(session_factory, stale_after=timedelta(minutes=1))
        assert recovered.ids == sorted([ids[dead_worker], ids[far_stale]])
        assert recovered.failed and not recovered.retried  # no kind is declared safe to retry
        with session_factory() as session:
            for name, job_id in ids.items():
                job = session.get(Job, job_id)
                if job_id in recovered.ids:
                    assert job.status == "failed" and WORKER_DIED_MESSAGE in job.message
                    assert WORKER_DIED_MESSAGE in job.log_tail
                else:
                    assert job.status == "running", name
            assert session.get(Worker, dead_worker).stopped_at is not None
        # the dead worker cannot record an outcome any more; the live one still beats
        assert not finish_job(
            session_factory, ids[dead_worker], dead_worker, status="succeeded", message="late"
        )
        assert worker_heartbeat(session_factory, live_worker, ids[live_worker])
        assert not worker_heartbeat(session_factory, dead_worker, ids[dead_worker])
        assert not recover_orphaned_jobs(session_factory)  # nothing else to do
    finally:
        sleeper.kill()
        sleeper.wait()


def test_worker_ids_carry_host_and_pid() -> None:
    worker_id = new_worker_id()
    address = parse_worker_id(worker_id)
    assert address.host == this_host()[: len(address.host)] and address.pid == os.getpid()
    assert len(worker_id) <= 64 and worker_id != new_worker_id()
    assert parse_worker_id("not-a-worker") is None

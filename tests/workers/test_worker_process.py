"""The worker as a real process: kill -9 mid-job, SIGTERM, the app's launcher and supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from db import Job, ModelVersion, Project, User, init_db, make_session_factory, utcnow
from db.job_workers import WORKER_DEATHS_KEY, WORKER_DIED_MESSAGE, live_workers, pid_alive
from db.jobs import enqueue_job
from db.model_versions import activate_model_version, register_model_version
from db.models.jobs import Worker
from workers.launcher import PID_FILE, ensure_worker_running, worker_pid
from workers.registry import JOB_KINDS, RETRY_SAFETY
from workers.supervisor import WorkerSupervisor
from workers.worker import STOPPED_MESSAGE

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120.0
TEST_KINDS = """
import os, time
from pathlib import Path
from workers import register_job_kind

def slow(ctx):
    with Path(ctx.parameters["marker"]).open("a") as handle:
        handle.write(f"{os.getpid()}\\n")
    ctx.progress(0.3, "sleeping")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ctx.raise_if_cancelled()
        time.sleep(0.05)
    return {"message": "slept"}

def quick(ctx):
    return {"message": "quick done"}

register_job_kind("test_slow", slow, replace=True)
register_job_kind("test_slow_safe", slow, replace=True, retry_safe=True)
register_job_kind("test_quick", quick, replace=True)
"""
RESTART_SECONDS = 10.0
"""The requirement: a new worker is alive this long after the old one was killed."""


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "loupe_test_kinds.py").write_text(TEST_KINDS)
    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir / 'loupe.db'}"
    monkeypatch.setenv("LOUPE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LOUPE_DATABASE_URL", url)
    monkeypatch.delenv("LOUPE_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "plugins"), str(REPO_ROOT)]))
    engine = init_db(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        project = Project(name="widgets")
        session.add_all([manager, project])
        session.flush()
        version = register_model_version(
            session,
            project_id=project.id,
            kind="patchcore",
            artifact_path="models/widgets/v1",
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=manager)
    yield {
        "factory": factory,
        "url": url,
        "data_dir": data_dir,
        "manager": manager,
        "project_id": project.id,
        "version_id": version.id,
        "marker": tmp_path / "runs.txt",
        "models": tmp_path / "models",
    }
    engine.dispose()


def worker_command(env: dict, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "loupe", "worker",
        "--database-url", env["url"],
        "--data-dir", str(env["data_dir"]),
        "--models-dir", str(env["models"]),
        "--job-module", "loupe_test_kinds",
        "--poll-interval", "0.2",
        *extra,
    ]  # fmt: skip


def enqueue(env: dict, kind: str) -> int:
    factory: sessionmaker[Session] = env["factory"]
    with factory() as session, session.begin():
        return enqueue_job(
            session,
            kind=kind,
            parameters={"marker": str(env["marker"])},
            project_id=env["project_id"],
            user=env["manager"],
        ).id


def job(env: dict, job_id: int) -> Job:
    with env["factory"]() as session:
        return session.get(Job, job_id)


def marker_lines(env: dict) -> list[str]:
    marker: Path = env["marker"]
    return marker.read_text().splitlines() if marker.exists() else []


def test_kill_9_mid_job_fails_it_at_next_start_and_never_reruns_it(env: dict) -> None:
    slow = enqueue(env, "test_slow")
    worker = subprocess.Popen(worker_command(env), cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: marker_lines(env) and job(env, slow).status == "running", "the job")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert job(env, slow).status == "running"  # nobody could record anything
    quick = enqueue(env, "test_quick")
    restarted = subprocess.run(
        worker_command(env, "--once"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert restarted.returncode == 0, restarted.stderr
    crashed = job(env, slow)
    assert crashed.status == "failed" and WORKER_DIED_MESSAGE in crashed.message
    assert "not retried automatically" in crashed.message  # a kind that declares nothing
    assert crashed.finished_at is not None
    assert len(marker_lines(env)) == 1  # the slow job ran once, in the killed worker
    assert job(env, quick).status == "succeeded"
    with env["factory"]() as session:
        assert session.get(Project, env["project_id"]).active_model_version_id == env["version_id"]
        assert session.get(ModelVersion, env["version_id"]).status == "active"
        assert session.scalar(select(func.count(ModelVersion.id))) == 1
        killed = session.get(Worker, crashed.worker_id)
        assert killed is not None and killed.stopped_at is not None


def test_sigterm_stops_gracefully(env: dict) -> None:
    slow = enqueue(env, "test_slow")
    waiting = enqueue(env, "test_quick")
    worker = subprocess.Popen(worker_command(env), cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: job(env, slow).status == "running", "the job to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=WAIT_SECONDS) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    stopped = job(env, slow)
    assert stopped.status == "failed" and stopped.message == STOPPED_MESSAGE
    assert job(env, waiting).status == "queued"
    with env["factory"]() as session:
        assert session.get(Worker, stopped.worker_id).stopped_at is not None


def test_ensure_worker_running_spawns_one_detached_worker(env: dict) -> None:
    launch = {
        "data_dir": env["data_dir"],
        "database_url": env["url"],
        "models_root": env["models"],
        "extra_args": ["--job-module", "loupe_test_kinds", "--poll-interval", "0.2"],
    }
    pid = ensure_worker_running(**launch)
    assert pid is not None
    try:
        assert ensure_worker_running(**launch) is None  # alive: not a second one
        assert worker_pid(env["data_dir"]) == pid
        assert (env["data_dir"] / PID_FILE).read_text().strip() == str(pid)
        quick = enqueue(env, "test_quick")
        wait_for(lambda: job(env, quick).status == "succeeded", "the queued job to run")
        assert job(env, quick).worker_id.split(":")[1] == str(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    assert not pid_alive(pid) and worker_pid(env["data_dir"]) is None
    again = ensure_worker_running(**launch)  # the worker is gone: a new one starts
    try:
        assert again is not None and again != pid
    finally:
        os.kill(again, signal.SIGTERM)
        os.waitpid(again, 0)


# --------------------------------------------------------------------------- the supervisor


@pytest.fixture
def supervised(env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """The app's supervisor, in this process, keeping a worker (with the test kinds) running."""
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    supervisor = WorkerSupervisor(
        env["url"],
        env["data_dir"],
        env["models"],
        job_modules=["loupe_test_kinds"],
        worker_args=["--poll-interval", "0.2"],
    )
    supervisor.start()
    try:
        yield env
    finally:
        supervisor.stop()
        pid = worker_pid(env["data_dir"])
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            reap(pid)
        for kind in ("test_slow", "test_slow_safe", "test_quick"):
            JOB_KINDS.pop(kind, None)
            RETRY_SAFETY.pop(kind, None)
        sys.modules.pop("loupe_test_kinds", None)


def reap(pid: int) -> None:
    """Wait for a worker this process launched (unless subprocess reaped it already)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def live_worker_pids(env: dict) -> set[int]:
    with env["factory"]() as session:
        return {worker.pid for worker in live_workers(session)}


def kill_and_expect_a_new_worker(env: dict, pid: int) -> int:
    """SIGKILL the worker; a new one must be alive (a fresh heartbeat) within 10 s."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + RESTART_SECONDS
    while not (others := live_worker_pids(env) - {pid}):
        if time.monotonic() > deadline:
            pytest.fail(f"no new worker was alive {RESTART_SECONDS:.0f} s after the kill")
        time.sleep(0.1)
    [new_pid] = others
    return new_pid


def test_a_killed_worker_is_replaced_and_its_safe_job_retried_once(supervised: dict) -> None:
    env = supervised
    job_id = enqueue(env, "test_slow_safe")
    wait_for(lambda: len(marker_lines(env)) == 1 and job(env, job_id).status == "running", "job")
    first = int(marker_lines(env)[0])

    second = kill_and_expect_a_new_worker(env, first)

    wait_for(lambda: len(marker_lines(env)) == 2, "the job's automatic retry")
    assert int(marker_lines(env)[1]) == second != first
    retried = job(env, job_id)
    assert retried.status == "running" and retried.parameters[WORKER_DEATHS_KEY] == 1
    assert "Queued again" in retried.log_tail and WORKER_DIED_MESSAGE in retried.log_tail

    kill_and_expect_a_new_worker(env, second)

    wait_for(lambda: job(env, job_id).status != "running", "the job to be settled")
    failed = job(env, job_id)
    assert failed.status == "failed" and WORKER_DIED_MESSAGE in failed.message
    assert "not retried again" in failed.message and failed.finished_at is not None
    assert len(marker_lines(env)) == 2  # run twice: never a third time


def test_a_killed_workers_unsafe_job_fails_with_its_reason_and_the_queue_goes_on(
    supervised: dict,
) -> None:
    env = supervised
    slow = enqueue(env, "test_slow")
    wait_for(lambda: marker_lines(env) and job(env, slow).status == "running", "the job")

    kill_and_expect_a_new_worker(env, int(marker_lines(env)[0]))

    wait_for(lambda: job(env, slow).status != "running", "the job to be settled")
    crashed = job(env, slow)
    assert crashed.status == "failed" and WORKER_DIED_MESSAGE in crashed.message
    assert "not retried automatically" in crashed.message
    quick = enqueue(env, "test_quick")
    wait_for(lambda: job(env, quick).status == "succeeded", "the next job on the new worker")
    assert len(marker_lines(env)) == 1


def test_a_worker_that_stops_beating_is_killed_and_replaced(env: dict) -> None:
    launch = {
        "data_dir": env["data_dir"],
        "database_url": env["url"],
        "models_root": env["models"],
        "extra_args": ["--job-module", "loupe_test_kinds", "--poll-interval", "0.2"],
    }
    hung = ensure_worker_running(**launch)
    assert hung is not None
    replacement = None
    try:
        wait_for(lambda: hung in live_worker_pids(env), "the worker to register")
        os.kill(hung, signal.SIGSTOP)  # alive, but silent
        assert ensure_worker_running(**launch) is None  # its heartbeat is still fresh
        with env["factory"]() as session, session.begin():
            session.execute(
                update(Worker)
                .where(Worker.pid == hung)
                .values(heartbeat_at=utcnow() - timedelta(minutes=5))
            )

        replacement = ensure_worker_running(**launch)

        assert replacement is not None and replacement != hung
        wait_for(lambda: not pid_alive(hung), "the silent worker to be killed")
        wait_for(lambda: replacement in live_worker_pids(env), "the new worker to register")
    finally:
        for pid in (hung, replacement):
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            if pid is not None:
                reap(pid)

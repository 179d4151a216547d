"""A launched worker stops with the server that launched it; a hand-started one does not.

The servers here are small Python processes that call the app's launcher or start its
supervisor, as ``serve.py`` does, and are then killed (``SIGKILL``) or stopped (``SIGTERM``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_worker_process as worker_process
from sqlalchemy import select
from test_worker_process import REPO_ROOT, enqueue, job, live_worker_pids, worker_command

import workers.server_watch
from db.job_workers import pid_alive
from db.models.jobs import Worker
from workers.launcher import PID_FILE, worker_pid
from workers.server_watch import ParentWatch, process_start_time
from workers.worker import SERVER_STOPPED_MESSAGE

env = worker_process.env  # the same fixture: a data dir, a store, the test job kinds

START_SECONDS = 120.0
"""How long a worker may take to start (it imports torch) on a busy machine."""
STOP_SECONDS = 10.0
"""The requirement: no worker is left this long after its server stopped."""
HAS_PROC = Path("/proc/self/stat").exists()

LAUNCHING_SERVER = """
import sys, time
from workers.launcher import ensure_worker_running

data_dir, url, models = sys.argv[1:4]
ensure_worker_running(
    data_dir, url, models_root=models,
    extra_args=["--job-module", "loupe_test_kinds", "--poll-interval", "0.2"],
)
time.sleep(600)
"""
SUPERVISING_SERVER = """
import sys, time
from workers.supervisor import start_supervisor

data_dir, url, models = sys.argv[1:4]
start_supervisor(
    url, data_dir, models,
    job_modules=["loupe_test_kinds"], worker_args=["--poll-interval", "0.2"],
)
time.sleep(600)
"""
HAND_STARTER = """
import json, subprocess, sys

worker = subprocess.Popen(
    json.loads(sys.argv[1]),
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    start_new_session=True,
)
print(worker.pid, flush=True)
"""


def wait_for(condition: Callable[[], bool], what: str, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting {seconds:.0f} s for {what}")
        time.sleep(0.1)


def worker_row(env: dict, pid: int) -> Worker:
    with env["factory"]() as session:
        return session.scalars(select(Worker).where(Worker.pid == pid)).one()


def kill_if_alive(pid: int | None) -> None:
    """Kill a worker the test could not stop otherwise (it is not our child: nothing to reap)."""
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), f"process {pid} to die", STOP_SECONDS)


@pytest.fixture
def server(env: dict) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Start a stand-in server (a script above); killed, and its worker too, at the end."""
    started: list[subprocess.Popen] = []

    def start(script: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [
                sys.executable, "-c", script,
                str(env["data_dir"]), env["url"], str(env["models"]),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=STOP_SECONDS)
        kill_if_alive(worker_pid(env["data_dir"]))


def launched_worker(env: dict) -> int:
    """The pid of the worker a stand-in server launched, once it registered."""
    wait_for(lambda: worker_pid(env["data_dir"]) is not None, "the server to launch a worker")
    pid = worker_pid(env["data_dir"])
    assert pid is not None
    wait_for(lambda: pid in live_worker_pids(env), "the worker to register")
    return pid


def expect_no_worker_left(env: dict, pid: int) -> None:
    """Within :data:`STOP_SECONDS`: the process is gone, and its pid file names no worker."""
    deadline = time.monotonic() + STOP_SECONDS
    while pid_alive(pid) or worker_pid(env["data_dir"]) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"worker {pid} still ran {STOP_SECONDS:.0f} s after its server stopped")
        time.sleep(0.1)
    assert worker_row(env, pid).stopped_at is not None  # it stopped itself, cleanly


def test_a_server_killed_with_sigkill_takes_its_worker_and_running_job_down(
    env: dict, server: Callable[[str], subprocess.Popen]
) -> None:
    app = server(LAUNCHING_SERVER)
    pid = launched_worker(env)
    assert (env["data_dir"] / PID_FILE).read_text().strip() == str(pid)
    slow = enqueue(env, "test_slow")
    wait_for(lambda: job(env, slow).status == "running", "the job to start")

    app.send_signal(signal.SIGKILL)
    app.wait(timeout=STOP_SECONDS)

    expect_no_worker_left(env, pid)
    stopped = job(env, slow)
    assert stopped.status == "failed" and stopped.message == SERVER_STOPPED_MESSAGE
    assert stopped.finished_at is not None


def test_a_supervising_server_stopped_with_sigterm_takes_its_worker_down(
    env: dict, server: Callable[[str], subprocess.Popen]
) -> None:
    app = server(SUPERVISING_SERVER)
    pid = launched_worker(env)

    app.send_signal(signal.SIGTERM)
    app.wait(timeout=STOP_SECONDS)

    expect_no_worker_left(env, pid)
    queued = enqueue(env, "test_quick")
    time.sleep(1.0)
    assert job(env, queued).status == "queued"  # it waits for the next server's worker


def test_a_hand_started_worker_keeps_running_when_its_starter_exits(env: dict) -> None:
    starter = subprocess.run(
        [sys.executable, "-c", HAND_STARTER, json.dumps(worker_command(env))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=True,
    )
    pid = int(starter.stdout.strip())
    try:
        wait_for(lambda: pid in live_worker_pids(env), "the worker to register")
        assert "--parent-pid" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        time.sleep(3 * workers.server_watch.WATCH_SECONDS)  # a watch would have fired by now
        assert pid_alive(pid) and pid in live_worker_pids(env)
        quick = enqueue(env, "test_quick")
        wait_for(lambda: job(env, quick).status == "succeeded", "the job", STOP_SECONDS)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), "the worker to stop on SIGTERM", STOP_SECONDS)
    finally:
        kill_if_alive(pid)
    assert worker_row(env, pid).stopped_at is not None


# --------------------------------------------------------------------------- the watch itself


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_watch_sees_a_live_older_process_as_there() -> None:
    watch = ParentWatch(os.getppid(), lambda: None)  # whoever started pytest: still running
    assert not watch.gone()


def test_the_watch_calls_on_gone_once_when_the_process_exited() -> None:
    called: list[int] = []
    fired = threading.Event()

    def on_gone() -> None:
        called.append(1)
        fired.set()

    watch = ParentWatch(dead_pid(), on_gone, interval=0.05)
    watch.start()
    try:
        assert fired.wait(timeout=STOP_SECONDS)
        time.sleep(0.2)
    finally:
        watch.stop()
    assert called == [1]


@pytest.mark.skipif(not HAS_PROC, reason="process start times come from /proc")
def test_the_watch_sees_a_reused_pid_as_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    older = os.getppid()
    watch = ParentWatch(older, lambda: None)
    assert not watch.gone()
    real = process_start_time(older)
    assert real is not None
    monkeypatch.setattr(
        workers.server_watch,
        "process_start_time",
        lambda pid: real + 1 if pid == older else process_start_time(pid),
    )
    assert watch.gone()  # the same pid, another process


@pytest.mark.skipif(not HAS_PROC, reason="process start times come from /proc")
def test_the_watch_sees_a_process_younger_than_the_worker_as_not_its_server() -> None:
    younger = subprocess.Popen(["sleep", "30"])
    try:
        assert ParentWatch(younger.pid, lambda: None).gone()
    finally:
        younger.kill()
        younger.wait()


@pytest.mark.skipif(not HAS_PROC, reason="process start times come from /proc")
def test_process_start_time_reads_proc() -> None:
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(dead_pid()) is None

"""Instant updates with two worker processes: one update at a time per project, each Good once.

Ten parts the model flagged are labelled Good through the review service, as the workbench
does. Two real worker processes (``python -m loupe worker``) run the ``instant_update`` jobs;
the model's work is a stand-in (a plugin module loaded with ``--job-module``) that records
when it starts and ends, sleeps, and registers the new version through the product's own
:func:`db.instant_updates.record_instant_update`, so the test stays quick and needs no model
files. The first update is made to run on one worker while the second job is claimed by the
other: the second must wait for the project's turn. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_image, add_prediction, add_version

from db import Job, ModelVersion, Project, User, init_db, make_session_factory
from db.job_workers import live_workers
from services.reviewing import label_part
from services.training.instant_learning import WAITING_MESSAGE
from services.training.job_kinds import JobKind

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 90.0
N_GOODS = 10
LEARNING_SECONDS = 0.2
"""How long the stand-in "learns" (the first update waits for the test's go as well)."""
LOG_ENV = "LOUPE_TEST_LEARNING_LOG"
RELEASE_ENV = "LOUPE_TEST_LEARNING_RELEASE"
STAND_IN = f'''
import json, os, time
from pathlib import Path

from db import Image, Project, User
from db.instant_updates import record_instant_update
from db.labels import current_label
from services.instant_update import InstantUpdateResult
from services.training import instant_learning
from workers.registry import known_kinds

LOG = Path(os.environ["{LOG_ENV}"])
RELEASE = Path(os.environ["{RELEASE_ENV}"])


def note(event, image_ids):
    with LOG.open("a") as handle:
        handle.write(json.dumps({{"event": event, "pid": os.getpid(), "at": time.time(),
                                  "image_ids": image_ids}}) + "\\n")


def stand_in(Session, *, project_id, image_ids, user_id, **_):
    note("start", image_ids)
    deadline = time.monotonic() + 60
    while not RELEASE.exists() and time.monotonic() < deadline:  # the test says when
        time.sleep(0.02)
    time.sleep({LEARNING_SECONDS})
    with Session() as session, session.begin():
        parent = session.get(Project, project_id).active_model_version_id
        images = [session.get(Image, i) for i in image_ids]
        version = record_instant_update(
            session,
            parent_version_id=parent,
            artifact_path=f"models/stand-in/{{time.time()}}",
            added_sha256=[image.sha256 for image in images],
            review_id=[current_label(session, i).id for i in image_ids],
            user=session.get(User, user_id),
        )
        result = InstantUpdateResult(
            True, True, f"learned {{len(image_ids)}}", tuple(image_ids), version_id=version.id
        )
    note("end", image_ids)
    return instant_learning.FeedbackResult(result)


instant_learning.learn_and_rescore = stand_in
known_kinds()  # the job modules load now, before the worker says it is alive
'''


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
def lab(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict]:
    """A project whose active (stand-in) version flagged ten parts, and an inspector."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "loupe_test_learning.py").write_text(STAND_IN)
    data_dir = tmp_path / "data"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database_url")
    else:
        url = f"sqlite:///{data_dir / 'loupe.db'}"
    log = tmp_path / "learning.jsonl"
    monkeypatch.setenv("LOUPE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LOUPE_DATABASE_URL", url)
    monkeypatch.setenv("LOUPE_INSTANT_LEARNING", "1")
    monkeypatch.setenv(LOG_ENV, str(log))
    monkeypatch.setenv(RELEASE_ENV, str(tmp_path / "release"))
    monkeypatch.delenv("LOUPE_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "plugins"), str(REPO_ROOT)]))
    engine = init_db(url)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        inspector = User(name="ines", role="inspector", password_hash="x")
        project = Project(name="widgets")
        session.add_all([inspector, project])
        session.flush()
        ids = {"inspector": inspector.id, "project": project.id}
    version = add_version(factory, ids["project"])
    goods = [add_image(factory, ids["project"], n) for n in range(N_GOODS)]
    for image_id in goods:
        add_prediction(factory, image_id, version, 1.5)  # flagged at the threshold 1.0
    yield {
        "factory": factory,
        "url": url,
        "data_dir": data_dir,
        "log": log,
        "release": tmp_path / "release",
        "goods": goods,
        **ids,
    }
    engine.dispose()


def worker(lab: dict, tmp_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "loupe", "worker",
        "--database-url", lab["url"],
        "--data-dir", str(lab["data_dir"]),
        "--models-dir", str(tmp_path / "models"),
        "--device", "cpu",
        "--job-module", "loupe_test_learning",
        "--poll-interval", "0.1",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)


def events(lab: dict) -> list[dict]:
    log: Path = lab["log"]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def jobs(factory: sessionmaker[Session]) -> list[Job]:
    with factory() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def job(factory: sessionmaker[Session], job_id: int) -> Job:
    return next(j for j in jobs(factory) if j.id == job_id)


def n_workers(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return len(live_workers(session))


def good(lab: dict, image_id: int) -> int:
    saved = label_part(lab["factory"], user_id=lab["inspector"], image_id=image_id, label="good")
    assert saved.learning_job_id is not None
    return saved.learning_job_id


def test_two_workers_run_one_update_at_a_time_and_learn_each_good_once(
    lab: dict, tmp_path: Path
) -> None:
    factory: sessionmaker[Session] = lab["factory"]
    workers = [worker(lab, tmp_path) for _ in range(2)]
    try:
        wait_for(lambda: n_workers(factory) == 2, "two workers")
        first = good(lab, lab["goods"][0])
        wait_for(lambda: [e["event"] for e in events(lab)] == ["start"], "the first update")
        second = good(lab, lab["goods"][1])  # the first update runs: a job of its own
        wait_for(
            lambda: job(factory, second).message == WAITING_MESSAGE,
            "the other worker to claim the second job and wait for the turn",
        )
        later = {good(lab, image_id) for image_id in lab["goods"][2:]}  # both workers busy
        time.sleep(0.5)
        assert [e["event"] for e in events(lab)] == ["start"], "the second must wait its turn"
        lab["release"].touch()
        wait_for(
            lambda: all(j.status not in ("queued", "running") for j in jobs(factory)),
            "every job to end",
        )
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=30)

    assert second != first and later.isdisjoint({first, second}) and len(later) == 1
    finished = jobs(factory)
    assert [(j.kind, j.status) for j in finished] == [(JobKind.INSTANT_UPDATE, "succeeded")] * 3
    one, two = finished[0], finished[1]
    assert one.worker_id != two.worker_id and two.started_at < one.finished_at  # both ran
    log = events(lab)
    spans = [(start["at"], end["at"]) for start, end in zip(log[::2], log[1::2], strict=True)]
    assert [e["event"] for e in log] == ["start", "end"] * 3, log
    assert all(s2 >= e1 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False)), spans
    learned = [image_id for e in log[::2] for image_id in e["image_ids"]]
    assert sorted(learned) == sorted(lab["goods"]), "each Good learned once"
    with factory() as session:
        active = session.get(Project, lab["project"]).active_model_version
        entries = active.metrics["instant_updates"]
        newest = session.scalar(select(ModelVersion.id).order_by(ModelVersion.id.desc()))
    assert [e["image_ids"] for e in entries] == [e["image_ids"] for e in log[::2]]
    assert newest == active.id

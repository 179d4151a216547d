"""Review: a Good on a flagged part teaches the active model at once (a new model version).

The press queues an ``instant_update`` job; the page shows it waiting, the job worker runs it
(here in process, ``run(once=True)``: the app starts no worker in these tests) and the page
says what it learned.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apptest_support import INSPECTOR, Workbench, signed_in_app
from desk_presses import desk_payload, label_press, send
from sqlalchemy import select

import db
from pages.review_recording import LEARNING_JOBS_KEY
from services.training.job_kinds import JobKind
from workers.worker import JobWorker


def test_good_on_a_flagged_part_adds_an_active_version_and_says_so(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOUPE_INSTANT_LEARNING", "1")
    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()
    first = desk_payload(at)["parts"][0]
    assert first["verdict"] == "defect", "the first queued part must be flagged"

    send(at, [label_press(1, first["id"], "good")])

    assert not at.exception, at.exception
    [job_id] = at.session_state[LEARNING_JOBS_KEY]
    with workbench.factory() as session:
        job = session.get(db.Job, job_id)
        assert (job.kind, job.status) == (JobKind.INSTANT_UPDATE, "queued")
        assert job.parameters["image_ids"] == [first["id"]]
    at.run()  # (a browser records the press in a callback, before the page is drawn)
    waiting = [p.proto.text for p in at.get("progress")]
    assert any("queued for the job worker" in text for text in waiting), waiting

    worker = JobWorker(
        workbench.factory,
        data_dir=db.data_dir(),
        models_root=Path(os.environ["LOUPE_MODELS_DIR"]),
        device="cpu",
    )
    assert worker.run(once=True) == 1
    at.run()  # the polling fragment notices the end, flashes the outcome and reruns the page

    assert not at.exception, at.exception
    assert any("version" in i.value.lower() for i in at.info), [i.value for i in at.info]
    assert first["id"] not in [p["id"] for p in desk_payload(at)["parts"]]  # it left the queue
    assert not at.session_state[LEARNING_JOBS_KEY]
    with workbench.factory() as session:
        assert session.get(db.Job, job_id).status == "succeeded"
        project = session.get(db.Project, workbench.project_id)
        active = project.active_model_version
        assert active.id != workbench.version_id and active.status == "active"
        assert session.get(db.ModelVersion, workbench.version_id).status == "retired"
        reviewed = session.scalars(select(db.Review)).one()
        assert reviewed.label == "good"
        updates = active.metrics["instant_updates"]
        assert [u["review_ids"] for u in updates] == [[reviewed.id]]

    models = signed_in_app("manager")  # the job is listed like any job, under a readable name
    models.switch_page("pages/models.py").run()
    assert not models.exception, models.exception
    rows = [m.value for m in models.markdown if f"#{job_id} " in m.value]
    assert rows and "Instant update (learn confirmed good parts)" in rows[0], rows
    assert "succeeded" in rows[0]


def test_instant_learning_off_queues_no_job(workbench: Workbench) -> None:
    at = signed_in_app("inspector")  # the app tests run with LOUPE_INSTANT_LEARNING=0
    at.switch_page("pages/review.py").run()
    first = desk_payload(at)["parts"][0]
    send(at, [label_press(1, first["id"], "good")])
    assert not at.exception, at.exception
    assert LEARNING_JOBS_KEY not in at.session_state
    with workbench.factory() as session:
        assert session.scalars(select(db.Job)).all() == []


@pytest.mark.parametrize("page", ["pages/review.py", "pages/inspect.py"])
def test_the_learning_banner_goes_when_the_job_ends(workbench: Workbench, page: str) -> None:
    def set_job(**fields: object) -> None:
        with workbench.factory() as session, session.begin():
            for name, value in fields.items():
                setattr(session.get(db.Job, job_id), name, value)

    def banner() -> list[str]:
        texts = [p.proto.text for p in at.get("progress")]
        return [text for text in texts if text.startswith("Learning from good parts")]

    with workbench.factory() as session, session.begin():
        job = db.Job(
            kind=JobKind.INSTANT_UPDATE,
            parameters={"image_ids": [1]},
            project_id=workbench.project_id,
            created_by_id=workbench.users[INSPECTOR],
        )
        session.add(job)
        session.flush()
        job_id = job.id
    at = signed_in_app("inspector")
    at.session_state[LEARNING_JOBS_KEY] = [job_id]  # as a review on this tab queued it
    at.switch_page(page).run()
    assert not at.exception, at.exception
    [queued] = banner()
    assert "none runs with this server" in queued  # the app tests run no worker

    set_job(status="running", progress=0.4, message="Adding 1 good part(s)")
    at.run()
    assert banner() == ["Learning from good parts: Adding 1 good part(s)"]

    set_job(status="succeeded", progress=1.0, message="Version 2 learned 1 part(s).")
    at.run()  # the polling fragment sees the end, flashes it and reruns the page without it
    assert not at.exception, at.exception
    assert banner() == []
    assert "Version 2 learned 1 part(s)." in [i.value for i in at.info]
    assert at.session_state[LEARNING_JOBS_KEY] == []

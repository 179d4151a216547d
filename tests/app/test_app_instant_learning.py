"""Review: a Good on a flagged part teaches the active model at once (a new model version)."""

from __future__ import annotations

import time

import pytest
from apptest_support import Workbench, signed_in_app
from desk_presses import desk_payload, label_press, send
from sqlalchemy import select

import db
from pages.page_tasks import LEARNING_KEY


def test_good_on_a_flagged_part_adds_an_active_version_and_says_so(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOUPE_INSTANT_LEARNING", "1")
    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()
    first = desk_payload(at)["parts"][0]
    assert first["verdict"] == "defect", "the first queued part must be flagged"

    send(at, [label_press(1, first["id"], "good")])

    job = at.session_state[LEARNING_KEY]
    deadline = time.monotonic() + 120
    while not job.snapshot()["done"] and time.monotonic() < deadline:
        time.sleep(0.2)
    state = job.snapshot()
    assert state["done"] and state["error"] is None, state
    assert state["result"].update.updated, state["result"].message
    at.run()  # the polling fragment notices the end, flashes the outcome and reruns the page
    assert not at.exception, at.exception
    assert any("version" in i.value.lower() for i in at.info), [i.value for i in at.info]
    assert first["id"] not in [p["id"] for p in desk_payload(at)["parts"]]  # it left the queue

    with workbench.factory() as session:
        project = session.get(db.Project, workbench.project_id)
        active = project.active_model_version
        assert active.id != workbench.version_id and active.status == "active"
        assert session.get(db.ModelVersion, workbench.version_id).status == "retired"
        reviewed = session.scalars(select(db.Review)).one()
        assert reviewed.label == "good"
        updates = active.metrics["instant_updates"]
        assert [u["review_ids"] for u in updates] == [[reviewed.id]]

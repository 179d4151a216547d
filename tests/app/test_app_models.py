"""The models page: models and revisions, thresholds, promotion and roll-back, training."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from apptest_support import MANAGER, Workbench, add_gated_version, signed_in_app
from streamlit.testing.v1 import AppTest

import db
import services.model_management
from adcore.gate import Rates, gate_record
from db.projects import get_project, list_projects
from db.review_queue import record_review


def open_models(role: str = "manager") -> AppTest:
    at = signed_in_app(role)
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def test_manager_saves_a_threshold_with_a_live_preview(workbench: Workbench) -> None:
    at = open_models()
    slider = at.slider(key=f"threshold-{workbench.version_id}")
    new = round((slider.min + slider.max) / 2, 4)

    slider.set_value(new).run()
    assert any(m.label == "Miss rate (FNR)" for m in at.metric)
    at.button(key="save_threshold").click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        version = session.get(db.ModelVersion, workbench.version_id)
        assert version.threshold == pytest.approx(new)
        assert version.metrics["threshold_history"][-1]["by"] == MANAGER


def test_recommended_threshold_from_labelled_parts_can_be_used_and_saved(
    workbench: Workbench,
) -> None:
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        for name, image_id in workbench.image_ids.items():
            label = "defect" if name.startswith("scratch") else "good"
            record_review(session, image_id=image_id, user=manager, label=label)
    at = open_models()
    assert [m.value for m in at.metric if m.label == "Labelled defects"] == ["3"]

    at.button(key="use_recommended").click().run()
    chosen = at.slider(key=f"threshold-{workbench.version_id}").value
    assert any(f"Recommended: **{chosen:.4f}**" in m.value for m in at.markdown)
    at.button(key="save_threshold").click().run()

    assert not at.exception, at.exception
    fnr = next(m.value for m in at.metric if m.label == "Miss rate (FNR)")
    assert fnr == "0.0%"  # the 1% target with three labelled defects allows no miss
    with workbench.factory() as session:
        assert session.get(db.ModelVersion, workbench.version_id).threshold == chosen


def test_promote_a_passing_candidate_then_roll_back(workbench: Workbench) -> None:
    gate = gate_record(
        candidate=Rates(threshold=1.0, fnr=0.0, fpr=0.0, tp=2, tn=2),
        active=Rates(threshold=0.5, fnr=0.5, fpr=0.0, tp=1, fn=1, tn=2),
        active_version_id=workbench.version_id,
        active_version=1,
        heldout={"n_good": 2, "n_defect": 2},
    )
    v2 = add_gated_version(workbench, gate, threshold=1.0)
    at = open_models()

    promote = at.button(key=f"promote-{v2}")
    assert promote.label == "Promote v2.0" and not promote.disabled  # a refit: a new model
    promote.click().run()
    with workbench.factory() as session:
        assert get_project(session, workbench.project_id).active_model_version_id == v2
    assert at.selectbox(key="revision-1").options == ["v1.0 (retired, " + _created(workbench) + ")"]
    rollback = at.button(key="revision-action-1")
    assert rollback.label == "Roll back to v1.0"
    rollback.click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        assert get_project(session, workbench.project_id).active_model_version_id == (
            workbench.version_id
        )
        assert session.get(db.ModelVersion, v2).status == "retired"
    assert at.button(key="revision-action-2").label == "Re-activate v2.0"


def _created(workbench: Workbench, version_id: int | None = None) -> str:
    with workbench.factory() as session:
        version = session.get(db.ModelVersion, version_id or workbench.version_id)
        return version.created_at.strftime("%Y-%m-%d %H:%M:%S")


def test_training_runs_in_a_background_thread_and_reports_back(
    workbench: Workbench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_train(session_factory, *, project_id, folder_or_paths, user, progress, **kwargs):
        calls.append((project_id, folder_or_paths, user.id, kwargs["detector_kind"]))
        progress(0.5, "halfway")
        return SimpleNamespace(id=123, version=2, model_number=2, revision=0, status="candidate")

    monkeypatch.setattr(services.model_management, "train_first_model", fake_train)
    at = open_models()
    at.text_input(key="train_folder").input(str(tmp_path))
    at.button(key="train").click().run()

    job = at.session_state["training_job"]
    deadline = time.monotonic() + 10
    while not job.snapshot()["done"] and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()

    assert not at.exception, at.exception
    assert calls == [(workbench.project_id, str(tmp_path), workbench.users[MANAGER], "patchcore")]
    assert any("Trained v2.0: a candidate" in s.value for s in at.success)


def test_a_training_failure_is_shown(
    workbench: Workbench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_train(*args, **kwargs):
        raise ValueError("no images in folder")

    monkeypatch.setattr(services.model_management, "train_first_model", failing_train)
    at = open_models()
    at.text_input(key="train_folder").input(str(tmp_path))
    at.button(key="train").click().run()
    job = at.session_state["training_job"]
    deadline = time.monotonic() + 10
    while not job.snapshot()["done"] and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()

    assert not at.exception
    assert [e.value for e in at.error] == ["Training failed: ValueError: no images in folder"]


def test_manager_creates_a_project_and_it_becomes_the_current_one(workbench: Workbench) -> None:
    at = open_models()
    at.text_input(key="new_project_name").input("gaskets")
    at.text_input(key="new_project_types").input("tear, bubble")
    at.button[[b.label for b in at.button].index("Create project")].click().run()

    assert not at.exception, at.exception
    with workbench.factory() as session:
        project = next(p for p in list_projects(session) if p.name == "gaskets")
        assert project.defect_types == ["tear", "bubble"]
    assert at.session_state["project_id"] == project.id
    assert at.selectbox(key="sidebar_project").value == project.id

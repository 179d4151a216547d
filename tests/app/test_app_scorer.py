"""The feedback scorer on the Models page: the button, its job, the candidate; reviews queue it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from apptest_support import MANAGER, Workbench, signed_in_app
from stored_rows import image_row
from streamlit.testing.v1 import AppTest

import db
from adcore.explain.neighbours import embedding_to_bytes
from db.jobs import list_jobs
from db.model_versions import activate_model_version, register_model_version
from db.review_queue import record_review
from workers.worker import JobWorker


def open_models() -> AppTest:
    at = signed_in_app("manager")
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


FLAGGED = 20.0  # above the workbench detector's threshold


def add_labelled_parts(workbench: Workbench, n: int = 60) -> None:
    """``n`` parts the active detector flags, with a vector, labelled (a third defects)."""
    rng = np.random.default_rng(0)
    with workbench.factory() as session, session.begin():
        manager = session.get(db.User, workbench.users[MANAGER])
        for i in range(n):
            defect = i % 3 == 0
            image = image_row(workbench.project_id, f"scorer-{i}")
            session.add(image)
            session.flush()
            vector = rng.normal(size=8)
            vector[0] += 3.0 * defect
            session.add(
                db.Prediction(
                    image_id=image.id,
                    model_version_id=workbench.version_id,
                    score=float(FLAGGED + abs(rng.normal())),  # the screen flags every one
                    threshold=FLAGGED,
                    verdict="defect",
                    embedding=embedding_to_bytes(vector),
                )
            )
            label = "defect" if defect else "good"
            record_review(session, image_id=image.id, user=manager, label=label)


def test_a_manager_trains_a_feedback_scorer_and_sees_the_candidate(
    workbench: Workbench, app_env: Path, tmp_path: Path
) -> None:
    add_labelled_parts(workbench)
    at = open_models()
    button = at.button(key="queue-train_feedback_scorer")
    assert button.label == "Train triage model" and not button.disabled
    assert any("calibrated p(defect)" in c.value for c in at.caption)

    button.click().run()
    assert not at.exception, at.exception
    with workbench.factory() as session:
        [job] = list_jobs(session, project_id=workbench.project_id)
        assert job.kind == "train_feedback_scorer"
    worker = JobWorker(
        workbench.factory, data_dir=app_env, models_root=tmp_path / "models", device="cpu"
    )
    assert worker.run(once=True) == 1
    with workbench.factory() as session:
        job = session.get(db.Job, job.id)
        assert job.status == "succeeded", (job.message, job.log_tail)
        version_id = job.result_model_version_id

    at = open_models()
    assert any(c.value == "Triage model (stage 2) candidate" for c in at.caption)
    table = next(d.value for d in at.dataframe if "Candidate v2.0" in d.value.columns)
    assert list(table.columns) == ["", "Candidate v2.0"]
    assert "Flagged defects (labelled)" in list(table[""])
    assert at.button(key=f"promote-{version_id}").label == "Promote v2.0"


def test_a_detector_without_vectors_says_why_the_scorer_cannot_train(
    workbench: Workbench,
) -> None:
    with workbench.factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=workbench.project_id,
            kind="autoencoder",
            artifact_path=str(workbench.model_dir),
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
    at = open_models()
    assert at.button(key="queue-train_feedback_scorer").disabled
    assert any("gives no per-image vectors" in c.value for c in at.caption)


def test_the_scorer_option_is_saved_from_the_page(workbench: Workbench) -> None:
    at = open_models()
    at.number_input(key="scorer_every_n_reviews").set_value(10).run()
    assert not at.exception, at.exception
    with workbench.factory() as session:
        project = session.get(db.Project, workbench.project_id)
        assert project.settings["scorer"]["every_n_reviews"] == 10

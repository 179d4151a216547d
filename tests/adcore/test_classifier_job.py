"""The ``train_classifier`` job kind: a gated classifier candidate from the inspectors' labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.classifier import Classifier
from adcore.detectors.registry import load_any_model
from adcore.jobs.training_data import in_evaluation_share
from adcore.jobs.worker import JobWorker
from db import Job, ModelVersion, Project, User, get_or_create_image, init_db, make_session_factory
from db.jobs import enqueue_job
from db.model_families import ModelFamily, active_version
from db.model_versions import promote_model_version
from db.review_queue import record_review

pytestmark = pytest.mark.slow
HOLDOUT = 0.25
SMALL = {"image_size": 64, "max_epochs": 2, "batch_size": 8, "holdout_fraction": HOLDOUT}


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A project (no model yet) with 20 parts labelled good and 20 labelled 'scratch'."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LOUPE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("LOUPE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LOUPE_RAY_ADDRESS", raising=False)
    engine = init_db()
    factory = make_session_factory(engine)
    digests: dict[str, str] = {}
    with factory() as session, session.begin():
        manager = User(name="manager-1", role="manager", password_hash="x")
        inspector = User(name="inspector-1", role="inspector", password_hash="x")
        project = Project(name="widgets", defect_types=["scratch"])
        session.add_all([manager, inspector, project])
        session.flush()
        for i in range(40):
            defect = i % 2 == 1
            image, _ = get_or_create_image(
                session,
                data=png(make_part(500 + i, defect=defect)),
                original_name=f"part-{i}.png",
                project_id=project.id,
                source="upload",
                width=64,
                height=64,
            )
            label = "defect" if defect else "good"
            record_review(
                session,
                image_id=image.id,
                user=inspector,
                label=label,
                defect_type="scratch" if defect else None,
            )
            digests[image.sha256] = label
        project_id = project.id
    yield {
        "factory": factory,
        "project_id": project_id,
        "manager": manager,
        "digests": digests,
        "worker": JobWorker(
            factory, data_dir=data_dir, models_root=tmp_path / "models", device="cpu"
        ),
    }
    engine.dispose()


def run(lab: dict, parameters: dict) -> Job:
    factory: sessionmaker[Session] = lab["factory"]
    with factory() as session, session.begin():
        job_id = enqueue_job(
            session,
            kind="train_classifier",
            parameters=parameters,
            project_id=lab["project_id"],
            user=lab["manager"],
        ).id
    assert lab["worker"].run(once=True) == 1
    with factory() as session:
        return session.get(Job, job_id)


def test_a_classifier_candidate_is_trained_gated_and_promoted_in_its_own_family(
    lab: dict,
) -> None:
    job = run(lab, SMALL)
    assert job.status == "succeeded", (job.message, job.log_tail)
    factory = lab["factory"]
    with factory() as session:
        first = session.get(ModelVersion, job.result_model_version_id)
        assert first.kind == "classifier" and first.status == "candidate"
        trained = {entry["sha256"] for entry in first.training_snapshot["images"]}
        heldout = {entry["sha256"] for entry in first.training_snapshot["heldout"]}
        expected_heldout = {d for d in lab["digests"] if in_evaluation_share(d, HOLDOUT)}
        assert heldout == expected_heldout and heldout  # the data must exercise the split
        assert trained == set(lab["digests"]) - heldout
        gate = first.metrics["gate"]
        assert gate["active"] is None and gate["decision"]["passed"]  # no classifier yet
        n_defect = sum(lab["digests"][d] == "defect" for d in heldout)
        assert gate["candidate"]["n_defect"] == n_defect
        assert gate["candidate"]["n_good"] == len(heldout) - n_defect

    model = load_any_model(first.artifact_path, device="cpu")
    assert isinstance(model, Classifier) and model.threshold == pytest.approx(first.threshold)

    with factory() as session, session.begin():
        promote_model_version(session, first.id, session.get(User, lab["manager"].id))
    with factory() as session:
        assert active_version(session, lab["project_id"], ModelFamily.CLASSIFIER).id == first.id
        assert session.get(Project, lab["project_id"]).active_model_version_id is None

    second_job = run(lab, SMALL)
    assert second_job.status == "succeeded", (second_job.message, second_job.log_tail)
    with factory() as session:
        second = session.get(ModelVersion, second_job.result_model_version_id)
        assert second.metrics["gate"]["active"]["version_id"] == first.id


def test_too_few_labelled_parts_fail_the_job_with_a_reason(lab: dict) -> None:
    job = run(lab, {**SMALL, "holdout_fraction": 0.95})  # almost everything held out
    assert job.status == "failed"
    assert "at least 4 labelled good and 4 labelled defective" in job.message

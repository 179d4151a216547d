"""The ``train_classifier`` job kind: a gated classifier candidate from the inspectors' labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from job_support import job_lab, label_parts, run_job
from sqlalchemy.orm import Session, sessionmaker

from adcore.classifier import Classifier
from adcore.detectors.registry import load_any_model
from adcore.holdout import in_evaluation_share
from db import Job, ModelVersion, Project, User
from db.model_families import ModelFamily, active_version
from db.model_versions import promote_model_version
from services.training.job_kinds import JobKind

pytestmark = pytest.mark.slow
HOLDOUT = 0.25
SMALL = {"image_size": 64, "max_epochs": 2, "batch_size": 8, "holdout_fraction": HOLDOUT}


@pytest.fixture
def lab(session_factory: sessionmaker[Session], tmp_path: Path) -> dict:
    """A project (no model yet) with 20 parts labelled good and 20 labelled 'scratch'."""
    lab = job_lab(session_factory, tmp_path, name="widgets", defect_types=["scratch"])
    digests = label_parts(lab, [i % 2 == 1 for i in range(40)], first_seed=500)
    return {**lab, "digests": digests}


def run(lab: dict, parameters: dict) -> Job:
    return run_job(lab, JobKind.TRAIN_CLASSIFIER, parameters)


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

"""The ``train_feedback_scorer`` job on stored synthetic scores and vectors (no image is read)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from job_support import job_lab, run_job
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import image_row

from adcore.explain.neighbours import embedding_to_bytes
from adcore.feedback_scorer import FeedbackScorer
from adcore.holdout import in_evaluation_share
from db import ModelVersion, Prediction, Project, User
from db.model_families import ModelFamily, active_version
from db.model_versions import (
    GateRefusedError,
    activate_model_version,
    promote_model_version,
    register_model_version,
    rollback_to,
)
from db.review_queue import record_review
from services.training.job_kinds import JobKind
from services.training.scorer_jobs import require_lower_fpr

DIM = 12
HOLDOUT = 0.25
KIND = JobKind.TRAIN_FEEDBACK_SCORER


def add_detector(lab: dict, kind: str = "patchcore", **metrics: object) -> int:
    """Register and activate a detector version (threshold 1.0) without files; its id."""
    with lab["factory"]() as session, session.begin():
        version = register_model_version(
            session,
            project_id=lab["project_id"],
            kind=kind,
            artifact_path="unused",
            metrics=dict(metrics),
            threshold=1.0,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def add_parts(
    lab: dict, version_id: int, defects: list[bool], *, seed: int, vectors: bool = True
) -> dict[str, str]:
    """Labelled parts with a stored prediction each: a weak score, a vector whose dim 0 tells.

    Returns:
        sha256 -> label.
    """
    rng = np.random.default_rng(seed)
    labels = {}
    with lab["factory"]() as session, session.begin():
        inspector = session.get(User, lab["inspector_id"])
        for i, defect in enumerate(defects):
            digest = hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()
            image = image_row(
                lab["project_id"],
                i,
                sha256=digest,
                stored_path=f"images/{digest[:12]}.png",
                original_name=f"part-{i}.png",
            )
            session.add(image)
            session.flush()
            vector = rng.normal(size=DIM)
            vector[0] += 3.0 * defect
            score = 1.0 + 0.3 * defect + rng.normal(scale=0.5)  # the detector alone is poor
            session.add(
                Prediction(
                    image_id=image.id,
                    model_version_id=version_id,
                    score=score,
                    threshold=1.0,
                    verdict="defect" if score >= 1.0 else "good",
                    embedding=embedding_to_bytes(vector) if vectors else None,
                )
            )
            label = "defect" if defect else "good"
            record_review(session, image_id=image.id, user=inspector, label=label)
            labels[digest] = label
    return labels


@pytest.fixture
def lab(session_factory: sessionmaker[Session], tmp_path: Path) -> dict:
    """A project with an active PatchCore detector and 120 labelled parts (a third defective)."""
    lab = job_lab(session_factory, tmp_path, name="tiles", target_fnr=0.05)
    lab["detector_id"] = add_detector(lab)
    lab["labels"] = add_parts(lab, lab["detector_id"], [i % 3 == 0 for i in range(120)], seed=1)
    return lab


def run(lab: dict, **parameters: object) -> object:
    return run_job(lab, KIND, {"holdout_fraction": HOLDOUT, **parameters})


def scorer_versions(lab: dict) -> list[ModelVersion]:
    with lab["factory"]() as session:
        return list(
            session.scalars(select(ModelVersion).where(ModelVersion.kind == "feedback_scorer"))
        )


def test_a_scorer_candidate_is_trained_gated_against_the_detector_and_promoted(lab: dict) -> None:
    job = run(lab)
    assert job.status == "succeeded", (job.message, job.log_tail)
    assert "passes the gate" in job.message
    factory = lab["factory"]
    with factory() as session:
        first = session.get(ModelVersion, job.result_model_version_id)
        assert first.kind == "feedback_scorer" and first.status == "candidate"
        assert first.metrics["detector"]["version_id"] == lab["detector_id"]
        heldout = {entry["sha256"] for entry in first.training_snapshot["heldout"]}
        trained = {entry["sha256"] for entry in first.training_snapshot["images"]}
        assert heldout == {d for d in lab["labels"] if in_evaluation_share(d, HOLDOUT)}
        assert trained == set(lab["labels"]) - heldout and heldout
        gate = first.metrics["gate"]
        assert gate["active"]["version_id"] is None  # the detector's own verdicts
        assert any("own verdicts" in note for note in gate["decision"]["notes"])
        assert gate["candidate"]["fpr"] < gate["active"]["fpr"]
        assert gate["candidate"]["fnr"] <= gate["active"]["fnr"]
        assert 0.0 < first.threshold < 1.0  # a probability

    scorer = FeedbackScorer.load(first.artifact_path)
    assert scorer.threshold == pytest.approx(first.threshold) and scorer.vector_dim == DIM

    manager = lab["manager_id"]
    with factory() as session, session.begin():
        promote_model_version(session, first.id, session.get(User, manager))
    with factory() as session:
        assert active_version(session, lab["project_id"], ModelFamily.SCORER).id == first.id
        project = session.get(Project, lab["project_id"])
        assert project.active_model_version_id == lab["detector_id"]  # its own family

    second_job = run(lab)
    assert second_job.status == "succeeded", (second_job.message, second_job.log_tail)
    with factory() as session, session.begin():
        second = session.get(ModelVersion, second_job.result_model_version_id)
        assert second.metrics["gate"]["active"]["version_id"] == first.id
        # Same data, same model: it does not lower the FPR of the active scorer, so it is
        # refused unless the active one raised no false alarm at all.
        if second.metrics["gate"]["active"]["fpr"]:
            assert not second.metrics["gate"]["decision"]["passed"]
        promote_model_version(
            session, second.id, session.get(User, manager), override_reason="test override"
        )
    with factory() as session, session.begin():
        rollback_to(session, first.id, session.get(User, manager))
    with factory() as session:
        assert active_version(session, lab["project_id"], ModelFamily.SCORER).id == first.id


def test_a_scorer_of_another_detector_lineage_cannot_be_promoted(lab: dict) -> None:
    job = run(lab)
    assert job.status == "succeeded", (job.message, job.log_tail)
    add_detector(lab)  # a refit: a new lineage, other scores
    with (
        lab["factory"]() as session,
        session.begin(),
        pytest.raises(GateRefusedError, match="train the scorer again"),
    ):
        promote_model_version(
            session, job.result_model_version_id, session.get(User, lab["manager_id"])
        )


def test_an_instant_update_keeps_the_parents_predictions_usable(lab: dict) -> None:
    parent = lab["detector_id"]
    entry = {"parent_version_id": parent, "parent_version": 1}
    child = add_detector(lab, instant_updates=[entry])
    job = run(lab)
    assert job.status == "succeeded", (job.message, job.log_tail)
    with lab["factory"]() as session:
        version = session.get(ModelVersion, job.result_model_version_id)
        assert version.metrics["detector"]["version_id"] == child
        assert version.metrics["n_train"] + version.metrics["gate"]["heldout"]["n_good"] + (
            version.metrics["gate"]["heldout"]["n_defect"]
        ) == len(lab["labels"])


def test_unreadable_vectors_are_left_out_and_counted(lab: dict) -> None:
    with lab["factory"]() as session, session.begin():
        prediction = session.scalars(select(Prediction).limit(1)).one()
        prediction.embedding = b"\x00\x01\x02"  # an odd byte count: not float16 values
    job = run(lab)
    assert job.status == "succeeded", (job.message, job.log_tail)
    with lab["factory"]() as session:
        assert session.get(ModelVersion, job.result_model_version_id).metrics["n_unreadable"] == 1


def test_too_few_labels_fail_the_job_and_register_nothing(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lab = job_lab(session_factory, tmp_path, name="few")
    add_parts(lab, add_detector(lab), [i < 3 for i in range(30)], seed=2)
    job = run(lab)
    assert job.status == "failed"
    assert "at least 5 labelled defects and 5 labelled good parts" in job.message
    assert "Review more parts first" in job.message
    assert not scorer_versions(lab)
    assert not lab["models_root"].exists() or not any(lab["models_root"].rglob("config.json"))


def test_a_detector_without_vectors_is_refused_clearly(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lab = job_lab(session_factory, tmp_path, name="ae")
    add_parts(lab, add_detector(lab, kind="autoencoder"), [i % 3 == 0 for i in range(40)], seed=3)
    job = run(lab)
    assert job.status == "failed"
    assert "gives no per-image vectors" in job.message and "autoencoder" in job.message
    assert not scorer_versions(lab)


def test_predictions_stored_without_vectors_are_refused_clearly(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    lab = job_lab(session_factory, tmp_path, name="old")
    defects = [i % 3 == 0 for i in range(40)]
    add_parts(lab, add_detector(lab), defects, seed=4, vectors=False)
    job = run(lab)
    assert job.status == "failed"
    assert "stored no per-image vector" in job.message
    assert not scorer_versions(lab)


def test_a_scorer_must_lower_the_false_alarm_rate() -> None:
    from adcore.gate import Rates, gate_record
    from services.training.candidate_evaluation import CandidateEvaluation

    def evaluation(candidate_fpr: float, active_fpr: float) -> CandidateEvaluation:
        candidate = Rates(0.5, 0.0, candidate_fpr, tp=5, fp=1, tn=9)
        active = Rates(1.0, 0.0, active_fpr, tp=5, fp=1, tn=9)
        gate = gate_record(
            candidate=candidate,
            active=active,
            active_version_id=None,
            active_version=None,
            heldout={},
        )
        return CandidateEvaluation(candidate, active, gate)

    same = require_lower_fpr(evaluation(0.1, 0.1))
    assert not same.passed and "does not lower false alarms" in same.gate["decision"]["reasons"][0]
    assert require_lower_fpr(evaluation(0.05, 0.1)).passed
    assert require_lower_fpr(evaluation(0.0, 0.0)).passed  # nothing left to lower

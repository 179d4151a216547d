"""The ``train_feedback_scorer`` job (the triage model, stage 2) on stored synthetic readings."""

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
from db import Image, ModelVersion, Prediction, Project, User
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

DIM = 12
BUDGET = 0.2  # 17 labelled flagged defects are enough for the bound (2% would need 183)
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
    return run_job(lab, KIND, {"budget": BUDGET, **parameters})


def flagged_digests(lab: dict) -> set[str]:
    """The labelled parts the screen (threshold 1.0) flags."""
    with lab["factory"]() as session:
        rows = session.execute(
            select(Image.sha256, Prediction.score).join(Prediction, Prediction.image_id == Image.id)
        ).all()
    return {digest for digest, score in rows if score >= 1.0}


def scorer_versions(lab: dict) -> list[ModelVersion]:
    with lab["factory"]() as session:
        return list(
            session.scalars(select(ModelVersion).where(ModelVersion.kind == "feedback_scorer"))
        )


def test_a_triage_candidate_is_trained_on_flagged_parts_gated_out_of_fold_and_promoted(
    lab: dict,
) -> None:
    job = run(lab)
    assert job.status == "succeeded", (job.message, job.log_tail)
    assert "passes the gate" in job.message
    factory = lab["factory"]
    with factory() as session:
        first = session.get(ModelVersion, job.result_model_version_id)
        assert first.kind == "feedback_scorer" and first.status == "candidate"
        assert first.metrics["detector"]["version_id"] == lab["detector_id"]
        trained = {entry["sha256"] for entry in first.training_snapshot["images"]}
        assert trained == flagged_digests(lab)  # only what the screen flags, nothing held out
        gate = first.metrics["gate"]
        assert gate["rule"] == "triage_out_of_fold" and gate["decision"]["passed"]
        evidence = gate["candidate"]
        assert evidence["accepted_goods"] > 0 and evidence["accepted_defects_share"] <= BUDGET
        assert evidence["n_goods"] + evidence["n_defects"] == len(trained)
        assert any("nested cross-validation" in note for note in gate["decision"]["notes"])
        assert 0.0 < first.threshold < 1.0  # the auto-accept threshold, a probability

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
    with factory() as session, session.begin():
        promote_model_version(session, second.id, session.get(User, manager))
    with factory() as session, session.begin():
        rollback_to(session, first.id, session.get(User, manager))
    with factory() as session:
        assert active_version(session, lab["project_id"], ModelFamily.SCORER).id == first.id


def test_a_triage_model_that_cannot_meet_the_budget_is_refused(lab: dict) -> None:
    job = run(lab, budget=0.02)  # 183 labelled flagged defects needed; there are about 30
    assert job.status == "succeeded", (job.message, job.log_tail)
    assert "does not pass the gate" in job.message
    with lab["factory"]() as session:
        gate = session.get(ModelVersion, job.result_model_version_id).metrics["gate"]
    assert not gate["decision"]["passed"]
    assert any("more labelled flagged defects" in r for r in gate["decision"]["reasons"])
    with (
        lab["factory"]() as session,
        session.begin(),
        pytest.raises(GateRefusedError),
    ):
        promote_model_version(
            session, job.result_model_version_id, session.get(User, lab["manager_id"])
        )


def test_audited_auto_accepted_labels_weigh_one_over_their_odds(lab: dict) -> None:
    with lab["factory"]() as session, session.begin():
        prediction = session.scalars(
            select(Prediction).where(Prediction.score >= 1.0).order_by(Prediction.id).limit(1)
        ).one()
        prediction.decision_region = "auto_accepted"
        prediction.audit_probability = 0.25
        prediction.audit = True
        digest = prediction.image.sha256
    job = run(lab)
    assert job.status == "succeeded", (job.message, job.log_tail)
    with lab["factory"]() as session:
        images = session.get(ModelVersion, job.result_model_version_id).training_snapshot["images"]
    weights = {entry["sha256"]: entry["weight"] for entry in images}
    assert weights[digest] == pytest.approx(4.0)
    assert {w for d, w in weights.items() if d != digest} == {1.0}


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
        assert version.metrics["n_train"] == len(flagged_digests(lab))


def test_unreadable_vectors_are_left_out_and_counted(lab: dict) -> None:
    with lab["factory"]() as session, session.begin():
        prediction = session.scalars(
            select(Prediction).where(Prediction.score >= 1.0).limit(1)
        ).one()  # a part the screen flags: only those are read
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
    assert "at least 5 labelled flagged defects and 5 labelled flagged good parts" in job.message
    assert "Review more flagged parts first" in job.message
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

"""The detector job kinds on tiny synthetic parts: refit and recalibrate make gated candidates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from job_support import job_lab, run_job
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.detectors.registry import load_detector
from adcore.holdout import in_evaluation_share
from adcore.thresholds import select_threshold
from db import Image, Job, ModelVersion, Project
from db.images import get_or_create_image
from db.model_families import detector_lineage
from db.review_queue import record_review
from services.model_management import train_first_model
from services.training.job_kinds import JobKind
from services.training.threshold_choice import in_check_share

TINY = {"image_size": 64, "coreset_ratio": 0.1, "calibration_fraction": 0.25, "device": "cpu"}
HOLDOUT = 0.5


@pytest.fixture
def lab(session_factory: sessionmaker[Session], tmp_path: Path) -> dict:
    """A project with an active v1 (fitted on a folder) and labelled parts in the database."""
    lab = job_lab(session_factory, tmp_path, name="widgets", target_fnr=0.0)
    factory, project_id, inspector = session_factory, lab["project_id"], lab["inspector"]
    folder = tmp_path / "good"
    folder.mkdir()
    train_bytes = [png(make_part(i)) for i in range(8)]
    for i, data in enumerate(train_bytes):
        (folder / f"{i:02d}.png").write_bytes(data)
    v1 = train_first_model(
        factory,
        project_id=project_id,
        folder_or_paths=folder,
        user=lab["manager"],
        models_root=lab["models_root"],
        **TINY,
    )
    labels = {}  # sha256 -> current label
    with factory() as session, session.begin():

        def label(data: bytes, *verdicts: str) -> str:
            image, _ = get_or_create_image(
                session,
                data=data,
                original_name="part.png",
                project_id=project_id,
                source="upload",
                width=64,
                height=64,
            )
            for verdict in verdicts:
                record_review(session, image_id=image.id, user=inspector, label=verdict)
            labels[image.sha256] = verdicts[-1]
            return image.sha256

        for i in range(12):
            label(png(make_part(100 + i)), "good")
        label(png(make_part(150)), "defect", "good")  # relabelled: now good
        label(png(make_part(151)), "good", "defect")  # relabelled: now defect
        for i in range(4):
            label(png(make_part(200 + i, defect=True)), "defect")
        bad_training = label(train_bytes[0], "defect")  # a training image found defective
    return {
        **lab,
        "v1": v1,
        "folder": folder,
        "labels": labels,
        "bad_training": bad_training,
        "train_digests": {hashlib.sha256(data).hexdigest() for data in train_bytes},
    }


def run_to_candidate(lab: dict, kind: str, parameters: dict) -> tuple[Job, ModelVersion]:
    """Run a ``kind`` job that must succeed; return it and the candidate it registered."""
    job = run_job(lab, kind, parameters)
    assert job.status == "succeeded", (job.message, job.log_tail)
    with lab["factory"]() as session:
        return job, session.get(ModelVersion, job.result_model_version_id)


def active_id(lab: dict) -> int | None:
    with lab["factory"]() as session:
        return session.get(Project, lab["project_id"]).active_model_version_id


def test_refit_learns_from_confirmed_good_parts_and_is_only_a_candidate(lab: dict) -> None:
    job, candidate = run_to_candidate(
        lab,
        JobKind.REFIT_DETECTOR,
        {"train_folder": str(lab["folder"]), "holdout_fraction": HOLDOUT},
    )
    assert candidate.status == "candidate" and candidate.kind == "patchcore"
    assert active_id(lab) == lab["v1"].id  # never activated by the job
    labels = lab["labels"]
    goods = {d for d, label in labels.items() if label == "good"}
    defects = {d for d, label in labels.items() if label == "defect"}
    expected_confirmed = {d for d in goods if not in_evaluation_share(d, HOLDOUT)}
    assert expected_confirmed  # the synthetic data must exercise the point of the test

    images = candidate.training_snapshot["images"]
    confirmed = {i["sha256"] for i in images if i["source"] == "confirmed_good"}
    from_snapshot = {i["sha256"] for i in images if i["source"] == "snapshot"}
    assert confirmed == expected_confirmed
    assert from_snapshot == lab["train_digests"] - {lab["bad_training"]}
    assert all(i["label"] == "good" for i in images)
    assert candidate.metrics["excluded_now_defect"] == 1
    assert candidate.metrics["missing_training_images"] == 0
    assert candidate.metrics["n_confirmed_good"] == len(expected_confirmed)

    heldout = {h["sha256"]: h["label"] for h in candidate.training_snapshot["heldout"]}
    chose = {h["sha256"] for h in candidate.training_snapshot["calibration"]}
    assert set(heldout) | chose == (defects - lab["train_digests"]) | (goods - expected_confirmed)
    assert not set(heldout) & chose  # the threshold is checked on parts it was not chosen on
    assert set(heldout) == {d for d in set(heldout) | chose if in_check_share(d)}
    assert not (set(heldout) | chose) & {i["sha256"] for i in images}

    gate = candidate.metrics["gate"]
    assert gate["active"]["version_id"] == lab["v1"].id
    n_defect = sum(label == "defect" for label in heldout.values())
    for side in ("candidate", "active"):
        assert gate[side]["n_defect"] == n_defect
        assert gate[side]["n_good"] == len(heldout) - n_defect
    assert gate["candidate"]["threshold"] == pytest.approx(candidate.threshold)
    assert gate["active"]["threshold"] == pytest.approx(lab["v1"].threshold)
    assert isinstance(gate["decision"]["passed"], bool)
    loaded = load_detector(candidate.artifact_path, device="cpu")
    assert loaded.threshold == pytest.approx(candidate.threshold)
    assert len(loaded.training_digests) == len(images)
    assert job.result_model_version_id == candidate.id and job.progress == 1.0


def test_recalibrate_follows_the_fnr_first_rule(lab: dict) -> None:
    job, candidate = run_to_candidate(lab, JobKind.RECALIBRATE_THRESHOLD, {})
    assert candidate.status == "candidate" and active_id(lab) == lab["v1"].id

    calibration = candidate.training_snapshot["calibration"]
    checked = {entry["sha256"] for entry in candidate.training_snapshot["heldout"]}
    digests = {entry["sha256"] for entry in calibration}
    assert digests | checked == set(lab["labels"]) - lab["train_digests"]
    assert digests and checked and not digests & checked  # chosen on some, checked on others
    assert checked == {d for d in digests | checked if in_check_share(d)}
    detector = load_detector(lab["v1"].artifact_path, device="cpu")
    with lab["factory"]() as session:
        rows = session.execute(
            select(Image.sha256, Image.stored_path).where(Image.sha256.in_(digests))
        ).all()
    paths = {row.sha256: lab["worker"].data_dir / row.stored_path for row in rows}
    scored, failures = detector.predict_files([paths[e["sha256"]] for e in calibration])
    assert not failures
    scores = np.array([prediction.score for _, prediction in scored])
    labels = np.array([int(e["label"] == "defect") for e in calibration])
    expected = select_threshold(scores, labels, target_fnr=0.0)
    ceiling = detector.calibrated_threshold
    assert ceiling is not None  # the fit recorded its own calibration
    assert candidate.metrics["chosen_threshold"] == pytest.approx(expected.value)
    assert candidate.threshold == pytest.approx(min(expected.value, ceiling))  # no audits yet
    capped = expected.value > ceiling
    assert candidate.metrics["threshold_rule"] == ("fnr_target_capped" if capped else "fnr_target")
    gate = candidate.metrics["gate"]
    checked_labels = [lab["labels"][d] for d in checked]
    assert gate["candidate"]["n_defect"] == checked_labels.count("defect")
    assert gate["candidate"]["n_good"] == checked_labels.count("good")
    assert gate["active"]["threshold"] == pytest.approx(lab["v1"].threshold)
    saved = load_detector(candidate.artifact_path, device="cpu")
    assert saved.threshold == pytest.approx(candidate.threshold)
    assert (
        candidate.training_snapshot["training_hash"] == lab["v1"].training_snapshot["training_hash"]
    )
    # The same model with another threshold: a feedback scorer trained on v1 still fits it.
    assert detector_lineage(candidate) == [candidate.id, lab["v1"].id]


def test_censored_reviews_alone_never_raise_the_threshold(
    lab: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay's "uncapped" failure is gone: censored reviews cannot raise the threshold.

    Reviewed parts ask for a higher threshold than the calibrated one; without audit evidence
    the job keeps the calibrated one, with it the job may raise it.
    """
    calibrated = load_detector(lab["v1"].artifact_path, device="cpu").calibrated_threshold
    _, capped = run_to_candidate(lab, JobKind.RECALIBRATE_THRESHOLD, {})
    chosen = capped.metrics["chosen_threshold"]
    assert chosen > calibrated  # the synthetic reviews do ask for a raise
    assert capped.threshold == pytest.approx(calibrated)
    assert capped.metrics["threshold_rule"] == "fnr_target_capped"
    assert capped.metrics["audit"]["n_audited"] == 0
    assert any("Capped at the calibrated" in n for n in capped.metrics["gate"]["decision"]["notes"])

    # 600 audited passed parts, none defective: the miss rate is below 1% at 95% confidence.
    monkeypatch.setattr(
        "services.audit_sampling.audit_counts", lambda session, project_id: (0, 600)
    )
    with lab["factory"]() as session, session.begin():
        session.get(Project, lab["project_id"]).target_fnr = 0.01
    _, raised = run_to_candidate(lab, JobKind.RECALIBRATE_THRESHOLD, {})
    assert raised.metrics["threshold_rule"] == "fnr_target"
    assert raised.threshold == pytest.approx(raised.metrics["chosen_threshold"])
    assert raised.threshold > calibrated

"""CLIP job kinds: ``train_clip`` (zero-/few-shot) and ``tune_clip`` (LoRA on labelled parts).

A tiny random open_clip model (``clip_tiny``) saved as a local checkpoint plays the CLIP
weights; the project's CLIP option names it. Jobs run through the real worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clip_tiny import TINY_CLIP, NetworkGuard, save_tiny_clip
from job_support import StopDuringTraining, job_context, job_lab, label_parts, run_job
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from adcore.detectors.clip import ClipDetector
from adcore.detectors.registry import load_detector
from adcore.errors import JobCancelled
from adcore.holdout import in_evaluation_share
from adcore.persistence import TENSORS_FILE
from db import Job, ModelVersion, User
from db.model_versions import promote_model_version, register_model_version
from services.project_settings import ClipSetting, set_clip_setting
from services.training.clip_jobs import tune_clip_job
from services.training.job_kinds import JobKind
from services.training.threshold_choice import in_check_share

pytestmark = pytest.mark.slow
SIZE = 32
HOLDOUT = 0.4
"""With these parts it holds out one good and two defective ones for the gate."""
FAST_TUNE = {"rank": 2, "alpha": 4.0, "n_context": 2, "epochs": 3, "learning_rate": 1e-2}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip-job"))


@pytest.fixture
def lab(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_checkpoint: Path,
) -> Iterator[dict]:
    """A project whose CLIP option names the tiny checkpoint; nothing labelled yet."""
    guard = NetworkGuard().install(monkeypatch)
    lab = job_lab(
        session_factory,
        tmp_path,
        name="widgets",
        object_name="metal plate",
        defect_types=["scratch"],
    )
    with session_factory() as session, session.begin():
        set_clip_setting(
            session,
            lab["project_id"],
            ClipSetting(TINY_CLIP, str(tiny_checkpoint)),
            user=session.get(User, lab["manager_id"]),
        )
    yield {**lab, "checkpoint": tiny_checkpoint}
    assert guard.attempts == []


def label_good_and_defective(lab: dict, n_good: int = 8, n_defect: int = 8) -> dict[str, str]:
    """Store and label ``n_good`` good then ``n_defect`` defective parts; sha256 -> label."""
    return label_parts(lab, [False] * n_good + [True] * n_defect, first_seed=700, size=SIZE)


def version_of(lab: dict, job: Job) -> ModelVersion:
    assert job.status == "succeeded", (job.message, job.log_tail)
    with lab["factory"]() as session:
        return session.get(ModelVersion, job.result_model_version_id)


def promote(lab: dict, version_id: int) -> None:
    with lab["factory"]() as session, session.begin():
        promote_model_version(session, version_id, session.get(User, lab["manager"].id))


def test_zero_shot_then_lora_tuning_give_gated_clip_candidates(lab: dict) -> None:
    digests = label_good_and_defective(lab, n_good=12, n_defect=12)
    zero = version_of(
        lab, run_job(lab, JobKind.TRAIN_CLIP, {"shots": 0, "holdout_fraction": HOLDOUT})
    )
    assert zero.kind == "clip" and zero.status == "candidate"
    assert zero.metrics["mode"] == "zero-shot" and zero.metrics["shots"] == 0
    assert zero.training_snapshot["images"] == []
    assert zero.metrics["clip_model"] == TINY_CLIP
    assert zero.metrics["object_name"] == "metal plate"  # the project's object by default
    assert zero.metrics["heldout_auroc"] is not None
    assert zero.metrics["gate"]["decision"]["passed"]  # nothing active yet
    assert zero.threshold is not None  # chosen FNR-first on the held-out defects
    saved = Path(zero.artifact_path) / TENSORS_FILE
    assert saved.stat().st_size < lab["checkpoint"].stat().st_size / 10  # CLIP not copied
    promote(lab, zero.id)

    job = run_job(lab, JobKind.TUNE_CLIP, {**FAST_TUNE, "holdout_fraction": HOLDOUT})
    tuned = version_of(lab, job)
    metrics = tuned.metrics
    assert tuned.kind == "clip" and tuned.status == "candidate"
    assert metrics["base_version_id"] == zero.id
    assert len(metrics["losses"]) == FAST_TUNE["epochs"] + 1
    assert metrics["trainable_parameters"] > 0 and 0 < metrics["adapter_megabytes"] < 1
    heldout = {entry["sha256"] for entry in tuned.training_snapshot["heldout"]}
    chose = {entry["sha256"] for entry in tuned.training_snapshot["calibration"]}
    assert heldout | chose == {d for d in digests if in_evaluation_share(d, HOLDOUT)}
    assert heldout == {d for d in heldout | chose if in_check_share(d)} and not heldout & chose
    trained = {entry["sha256"] for entry in tuned.training_snapshot["adapter_training"]}
    assert trained == set(digests) - heldout - chose
    gate = metrics["gate"]
    assert gate["active"]["version_id"] == zero.id
    assert gate["candidate"]["n_good"] + gate["candidate"]["n_defect"] == len(heldout)
    assert "passed" in gate["decision"]
    detector = load_detector(tuned.artifact_path, device="cpu")
    assert isinstance(detector, ClipDetector) and detector.adapter is not None
    assert detector.threshold == pytest.approx(tuned.threshold)
    assert job.message.startswith("CLIP adapted: candidate v")

    with lab["factory"]() as session, session.begin():  # whatever the gate said
        promote_model_version(
            session, tuned.id, session.get(User, lab["manager"].id), override_reason="test"
        )
    refit = version_of(lab, run_job(lab, JobKind.REFIT_DETECTOR, {"holdout_fraction": HOLDOUT}))
    assert refit.kind == "clip" and refit.metrics["n_train"] > 0  # confirmed-good references
    refitted = load_detector(refit.artifact_path, device="cpu")
    assert refitted.adapter is not None  # a refit keeps the LoRA adapters of its base


def test_few_shot_uses_the_folder_and_the_confirmed_good_parts(lab: dict, tmp_path: Path) -> None:
    digests = label_good_and_defective(lab, n_good=6, n_defect=3)
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(make_part(900 + i, size=SIZE)).save(folder / f"{i}.png")
    version = version_of(
        lab, run_job(lab, JobKind.TRAIN_CLIP, {"shots": 4, "train_folder": str(folder)})
    )
    assert version.metrics["mode"] == "few-shot" and version.metrics["shots"] == 4
    used = version.training_snapshot["images"]
    assert len(used) == 4 and {entry["source"] for entry in used} <= {"folder", "confirmed_good"}
    heldout = {entry["sha256"] for entry in version.training_snapshot["heldout"]}
    assert not heldout & {entry["sha256"] for entry in used}
    assert {d for d, label in digests.items() if label == "defect"} <= heldout


def test_refusals_are_clear(lab: dict) -> None:
    job = run_job(lab, JobKind.TUNE_CLIP, FAST_TUNE)
    assert job.status == "failed" and "needs an active CLIP detector" in job.message

    with lab["factory"]() as session, session.begin():
        other = register_model_version(
            session,
            project_id=lab["project_id"],
            kind="patchcore",
            artifact_path="models/widgets/v1",
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
    promote(lab, other.id)
    job = run_job(lab, JobKind.TUNE_CLIP, FAST_TUNE)
    assert job.status == "failed" and "(patchcore)" in job.message

    job = run_job(lab, JobKind.TRAIN_CLIP, {"shots": 2})
    assert job.status == "failed" and "Few-shot CLIP needs good images" in job.message

    with lab["factory"]() as session, session.begin():
        set_clip_setting(
            session,
            lab["project_id"],
            ClipSetting(TINY_CLIP, "/nowhere/clip.safetensors"),
            user=session.get(User, lab["manager"].id),
        )
    job = run_job(lab, JobKind.TRAIN_CLIP, {"shots": 0})
    assert job.status == "failed" and "cannot start" in job.message
    assert "/nowhere/clip.safetensors" in job.message


def test_tuning_needs_both_good_and_defective_labelled_parts(lab: dict) -> None:
    label_good_and_defective(lab, n_good=6, n_defect=0)
    zero = version_of(
        lab, run_job(lab, JobKind.TRAIN_CLIP, {"shots": 0, "holdout_fraction": HOLDOUT})
    )
    assert zero.threshold is not None  # a quantile of the held-out good scores
    promote(lab, zero.id)
    job = run_job(lab, JobKind.TUNE_CLIP, FAST_TUNE)
    assert job.status == "failed" and "labelled good and defective parts" in job.message


def test_refit_accepts_a_clip_detector_without_images(lab: dict) -> None:
    """The generic detector job: kind ``clip`` from the project's option; zero-shot needs none."""
    job = run_job(lab, JobKind.REFIT_DETECTOR, {"detector_kind": "clip", "config": {"shots": 0}})
    version = version_of(lab, job)
    assert version.kind == "clip" and version.metrics["n_train"] == 0
    detector = load_detector(version.artifact_path, device="cpu")
    assert detector.config.model_name == TINY_CLIP and detector.config.object_name == "metal plate"


def test_zero_shot_with_nothing_labelled_uses_clips_own_boundary(lab: dict) -> None:
    version = version_of(lab, run_job(lab, JobKind.TRAIN_CLIP, {"shots": 0}))
    assert version.threshold == 0.5 and version.metrics["threshold_rule"] == "clip_default"
    assert version.metrics["heldout"]["n_good"] == version.metrics["heldout"]["n_defect"] == 0


def test_a_cancelled_tuning_stops_in_training_and_registers_nothing(lab: dict) -> None:
    label_good_and_defective(lab)
    zero = version_of(
        lab, run_job(lab, JobKind.TRAIN_CLIP, {"shots": 0, "holdout_fraction": HOLDOUT})
    )
    promote(lab, zero.id)
    reporter = StopDuringTraining()
    ctx = job_context(lab, JobKind.TUNE_CLIP, {**FAST_TUNE, "epochs": 5}, reporter)
    with pytest.raises(JobCancelled):
        tune_clip_job(ctx)
    assert sum(message.startswith("Epoch") for message in reporter.messages) == 1
    with lab["factory"]() as session:
        assert [v.id for v in session.query(ModelVersion)] == [zero.id]

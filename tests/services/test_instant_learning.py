"""Instant learning from a confirmed-good review, on tiny synthetic parts and a SQLite file."""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from adcore.detectors.base import FitReport
from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.holdout import in_evaluation_share
from db import (
    Image,
    ModelVersion,
    PermissionDenied,
    Project,
    User,
    activate_model_version,
    register_model_version,
)
from db.images import get_or_create_image
from db.instant_updates import InstantUpdateConflict
from db.review_queue import record_review
from services import instant_update as instant_learning
from services.instant_update import learn_from_confirmed_good
from services.model_management import save_and_register

SMALL = PatchCoreConfig(image_size=64, coreset_ratio=0.1, calibration_fraction=0.25, batch_size=8)


def variant(seed: int) -> np.ndarray:
    """A good part with a bright maker's stamp that the training parts never had: (64, 64, 3)."""
    part = make_part(seed).copy()
    part[40:56, 40:56] = 235
    part[44:52, 44:52] = 60
    return part


@pytest.fixture(scope="module")
def fitted() -> tuple[PatchCore, FitReport]:
    detector = PatchCore(SMALL, device="cpu")
    return detector, detector.fit([make_part(i) for i in range(12)])


@pytest.fixture
def world(
    factory: sessionmaker[Session],
    fitted: tuple[PatchCore, FitReport],
    tmp_path: Path,
) -> dict:
    """Project with an active PatchCore v1, an inspector, and a stamped part labelled Good."""
    with factory() as session, session.begin():
        inspector = User(name="ines", role="inspector", password_hash="x")
        project = Project(name="Widgets")
        session.add_all([inspector, project])
        session.flush()
        ids = {"inspector": inspector.id, "project": project.id}
    models = tmp_path / "models"
    parent = save_and_register(
        factory,
        project_id=ids["project"],
        detector=fitted[0],
        fit=fitted[1],
        models_root=models,
        user=None,
        system=True,
    )
    ids |= {"parent": parent.id, "models": models}
    ids["image"] = _labelled(factory, ids, variant(300), "good")
    return ids


def _labelled(factory: sessionmaker[Session], ids: dict, pixels: np.ndarray, label: str) -> int:
    buffer = BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    with factory() as session, session.begin():
        image, _ = get_or_create_image(
            session,
            data=buffer.getvalue(),
            original_name="part.png",
            project_id=ids["project"],
            source="upload",
            width=64,
            height=64,
        )
        inspector = session.get(User, ids["inspector"])
        record_review(session, image_id=image.id, user=inspector, label=label)
        return image.id


def _user(factory: sessionmaker[Session], user_id: int) -> User:
    with factory() as session:
        return session.get(User, user_id)


def _learn(factory: sessionmaker[Session], world: dict, **kwargs: object):
    return learn_from_confirmed_good(
        factory,
        project_id=world["project"],
        image_ids=kwargs.pop("image_ids", world["image"]),
        user=_user(factory, world["inspector"]),
        models_dir=world["models"],
        device="cpu",
        **kwargs,
    )


def _active(factory: sessionmaker[Session], world: dict) -> ModelVersion:
    with factory() as session:
        project = session.get(Project, world["project"])
        return session.get(ModelVersion, project.active_model_version_id)


def _count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count(ModelVersion.id))))


def test_a_confirmed_good_part_stops_being_flagged_and_a_defect_still_is(
    factory: sessionmaker[Session],
    world: dict,
) -> None:
    result = _learn(factory, world)
    assert result.supported and result.updated
    assert result.scores_before[0] >= result.threshold  # it was flagged
    assert result.now_below_threshold and result.new_score < result.threshold
    assert result.patches_added > 0
    assert result.bank_size_after == result.bank_size_before + result.patches_added
    active = _active(factory, world)
    assert (active.id, active.version, active.threshold) == (result.version_id, 2, result.threshold)
    assert active.artifact_path == result.artifact_path

    parent = PatchCore.load(world["models"] / "widgets" / "v1", device="cpu")
    child = PatchCore.load(result.artifact_path, device="cpu")
    threshold = result.threshold
    defects = [make_part(600 + i, defect=True) for i in range(3)]
    assert all(p.score >= threshold for p in child.predict(defects))
    # An unseen part with the same stamp: most of its excess over the threshold is gone.
    old, new = parent.predict([variant(301)])[0].score, child.predict([variant(301)])[0].score
    assert old >= threshold and new < (old + threshold) / 2
    assert parent.predict([variant(300)])[0].score >= threshold  # the parent is untouched

    again = _learn(factory, world)  # the same part twice: nothing new to learn
    assert again.supported and not again.updated and again.version_id == result.version_id


def test_a_failed_database_write_removes_the_new_model_and_keeps_the_parent(
    factory: sessionmaker[Session],
    world: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(instant_learning, "record_instant_update", fail)
    with pytest.raises(RuntimeError, match="locked"):
        _learn(factory, world)
    assert _active(factory, world).id == world["parent"] and _count(factory) == 1
    assert sorted(p.name for p in (world["models"] / "widgets").iterdir()) == ["v1"]


def test_a_lost_race_is_redone_on_the_new_active_version(
    factory: sessionmaker[Session],
    world: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = instant_learning.record_instant_update
    calls = []

    def first_loses(*args: object, **kwargs: object) -> ModelVersion:
        calls.append(kwargs["artifact_path"])
        if len(calls) == 1:
            raise InstantUpdateConflict("another update won", active_version_id=None)
        return real(*args, **kwargs)

    monkeypatch.setattr(instant_learning, "record_instant_update", first_loses)
    result = _learn(factory, world)
    assert result.updated and len(calls) == 2 and result.version == 2
    # The loser's directory was removed before the retry saved again: one new model on disk.
    assert sorted(p.name for p in (world["models"] / "widgets").iterdir()) == ["v1", "v2"]


def test_other_kinds_are_not_supported_and_nothing_changes(
    factory: sessionmaker[Session],
    world: dict,
) -> None:
    with factory() as session, session.begin():
        other = register_model_version(
            session,
            project_id=world["project"],
            kind="autoencoder",
            artifact_path="models/widgets/v2",
            metrics={},
            threshold=1.0,
            training_snapshot={},
        )
        activate_model_version(session, version_id=other.id, user=None, system=True)
        other_id = other.id
    result = _learn(factory, world)
    assert not result.supported and not result.updated and "autoencoder" in result.message
    assert _active(factory, world).id == other_id and _count(factory) == 2


def test_refusals_happen_before_any_model_work(
    factory: sessionmaker[Session],
    world: dict,
) -> None:
    defect = _labelled(factory, world, make_part(700, defect=True), "defect")
    with pytest.raises(ValueError, match="Good"):
        _learn(factory, world, image_ids=defect)
    with factory() as session, session.begin():
        session.get(User, world["inspector"]).active = False
    with pytest.raises(PermissionDenied):
        _learn(factory, world)
    assert _active(factory, world).id == world["parent"] and _count(factory) == 1


def _stamped_part_in_evaluation_share(first_seed: int) -> np.ndarray:
    """A stamped good part whose PNG bytes fall in the held-out share (searched by seed)."""
    for seed in range(first_seed, first_seed + 200):
        pixels = variant(seed)
        buffer = BytesIO()
        PILImage.fromarray(pixels).save(buffer, format="PNG")
        if in_evaluation_share(hashlib.sha256(buffer.getvalue()).hexdigest()):
            return pixels
    raise AssertionError("no seed gave a part in the evaluation share")


def test_a_part_kept_aside_to_measure_false_alarms_is_not_learned(
    factory: sessionmaker[Session],
    world: dict,
) -> None:
    kept = _labelled(factory, world, _stamped_part_in_evaluation_share(400), "good")
    result = _learn(factory, world, image_ids=kept)
    assert result.supported and not result.updated
    assert result.message == instant_learning.KEPT_FOR_EVALUATION
    assert _active(factory, world).id == world["parent"] and _count(factory) == 1

    both = _learn(factory, world, image_ids=[kept, world["image"]])  # only the other is learned
    assert both.updated
    active = _active(factory, world)
    learned = [entry["sha256"] for entry in active.training_snapshot["images"]]
    with factory() as session:
        kept_digest = session.get(Image, kept).sha256
    assert kept_digest not in learned and len(learned) == len(set(learned))

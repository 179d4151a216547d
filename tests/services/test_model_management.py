"""Training a project's first model, and the threshold preview and recommendation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part

from adcore.persistence import file_sha256
from db import (
    Image,
    ModelVersion,
    PermissionDenied,
    Prediction,
    Project,
    Review,
    User,
    register_model_version,
)
from services import model_management as model_service
from services.model_management import (
    project_slug,
    recommended_threshold,
    threshold_preview,
    train_first_model,
)

TINY = {"image_size": 64, "coreset_ratio": 0.1, "calibration_fraction": 0.25, "device": "cpu"}
T0 = datetime(2025, 5, 1, tzinfo=UTC)


@pytest.fixture
def people(session_factory: sessionmaker[Session]) -> dict[str, User]:
    with session_factory() as session, session.begin():
        users = {
            role: User(name=f"{role}-1", role=role, password_hash="not-a-real-hash")
            for role in ("inspector", "manager")
        }
        session.add_all(users.values())
    return users


@pytest.fixture
def project_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session, session.begin():
        project = Project(name="Widgets: line 2!")
        session.add(project)
        session.flush()
        return project.id


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(8):
        PILImage.fromarray(make_part(i)).save(folder / f"{i:02d}.png")
    (folder / "zz-broken.png").write_bytes(b"not a png")
    (folder / "readme.txt").write_text("ignored")
    return folder


def test_a_manager_trains_registers_and_activates_v1(
    session_factory: sessionmaker[Session],
    people: dict[str, User],
    project_id: int,
    good_folder: Path,
    tmp_path: Path,
) -> None:
    progress: list[tuple[float, str]] = []
    version = train_first_model(
        session_factory,
        project_id=project_id,
        folder_or_paths=good_folder,
        user=people["manager"],
        models_root=tmp_path / "models",
        progress=lambda fraction, message: progress.append((fraction, message)),
        **TINY,
    )
    artifact = Path(version.artifact_path)
    assert artifact == tmp_path / "models" / "widgets-line-2" / "v1"
    assert (artifact / "config.json").is_file() and (artifact / "model.safetensors").is_file()
    assert progress[-1] == (1.0, "Version v1.0 registered")
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:], strict=False))
    with session_factory() as session:
        stored = session.get(ModelVersion, version.id)
        assert (stored.version, stored.status, stored.kind) == (1, "active", "patchcore")
        assert session.get(Project, project_id).active_model_version_id == version.id
        assert stored.created_by_id == people["manager"].id
        assert stored.threshold is not None and stored.threshold > 0
        assert stored.metrics["n_train"] == 8
        assert [s["name"] for s in stored.metrics["skipped"]] == ["zz-broken.png"]
        images = stored.training_snapshot["images"]
        assert len(images) == 8 and {i["label"] for i in images} == {"good"}
        # Where each training file was, so a refit can find the originals (checked by hash).
        expected = {file_sha256(p): p.resolve().as_posix() for p in good_folder.glob("0*.png")}
        assert {i["sha256"]: i["path"] for i in images} == expected


def test_an_inspector_is_refused_before_any_fitting(
    session_factory: sessionmaker[Session],
    people: dict[str, User],
    project_id: int,
    good_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_build(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the detector was built before the role check")

    monkeypatch.setattr(model_service, "build_detector", must_not_build)
    with pytest.raises(PermissionDenied, match="Only managers can train"):
        train_first_model(
            session_factory,
            project_id=project_id,
            folder_or_paths=good_folder,
            user=people["inspector"],
            models_root=tmp_path / "models",
        )
    assert not (tmp_path / "models").exists()
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 0


def labelled_version(factory: sessionmaker[Session], project_id: int, user: User) -> int:
    """Version with labelled defects 0.9, 0.8, 0.3 and goods 0.1, 0.2, 0.5, 0.6 (+ noise)."""
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="m",
            metrics={},
            threshold=0.5,
            training_snapshot={},
        )
        other = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="m2",
            metrics={},
            threshold=0.5,
            training_snapshot={},
        )
        parts = [(0.9, "defect"), (0.8, "defect"), (0.3, "defect")]
        parts += [(0.1, "good"), (0.2, "good"), (0.5, "good"), (0.6, "good"), (0.95, None)]
        for i, (score, label) in enumerate(parts):
            image = Image(
                project_id=project_id,
                sha256=f"{i:064x}",
                stored_path=f"images/00/{i}.png",
                original_name=f"{i}.png",
                width=8,
                height=8,
                size_bytes=10,
                source="upload",
            )
            session.add(image)
            session.flush()
            for version_id, value in ((version.id, score), (other.id, 1 - score)):
                session.add(
                    Prediction(
                        image_id=image.id,
                        model_version_id=version_id,
                        score=value,
                        threshold=0.5,
                        verdict="good",
                        created_at=T0,
                    )
                )
            if label is not None:
                session.add(Review(image_id=image.id, reviewer_id=user.id, label=label))
        return version.id


def test_threshold_preview_on_a_hand_built_labelled_set(
    session_factory: sessionmaker[Session], people: dict[str, User], project_id: int
) -> None:
    version_id = labelled_version(session_factory, project_id, people["inspector"])
    preview = threshold_preview(
        session_factory, project_id=project_id, model_version_id=version_id, threshold=0.55
    )
    assert preview == {
        "fnr": pytest.approx(1 / 3),
        "fpr": pytest.approx(1 / 4),
        "n_defect": 3,
        "n_good": 4,
        "tp": 2,
        "fp": 1,
        "tn": 3,
        "fn": 1,
    }
    everything = threshold_preview(
        session_factory, project_id=project_id, model_version_id=version_id, threshold=0.0
    )
    assert (everything["fnr"], everything["fpr"]) == (0.0, 1.0)


def test_recommended_threshold_bounds_the_miss_rate(
    session_factory: sessionmaker[Session], people: dict[str, User], project_id: int
) -> None:
    version_id = labelled_version(session_factory, project_id, people["inspector"])
    strict = recommended_threshold(
        session_factory, project_id=project_id, model_version_id=version_id
    )
    assert strict.rule == "fnr_target" and strict.target_fnr == 0.01  # the project's target
    assert (strict.value, strict.fnr, strict.fpr) == (0.3, 0.0, 0.5)
    lenient = recommended_threshold(
        session_factory, project_id=project_id, model_version_id=version_id, target_fnr=0.34
    )
    assert (lenient.value, lenient.fpr) == (0.8, 0.0)
    assert lenient.fnr == pytest.approx(1 / 3)


def test_nothing_labelled_gives_no_recommendation(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        version_id = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="m",
            metrics={},
            threshold=None,
            training_snapshot={},
        ).id
    kwargs = {"project_id": project_id, "model_version_id": version_id}
    assert recommended_threshold(session_factory, **kwargs) is None
    preview = threshold_preview(session_factory, threshold=1.0, **kwargs)
    assert preview["fnr"] is None and preview["n_good"] == preview["tp"] == 0


def test_project_slugs_are_safe_folder_names() -> None:
    assert project_slug("ELPV solar cells (demo)") == "elpv-solar-cells-demo"
    assert project_slug("../..") == "project"

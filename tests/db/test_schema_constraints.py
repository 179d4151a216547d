"""The database itself refuses bad rows: CHECK, UNIQUE and FOREIGN KEY constraints.

The errors are matched on what each backend reports: SQLite names the columns of a UNIQUE
violation and nothing of a foreign key; PostgreSQL names the violated constraint.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import Image, Job, ModelVersion, Prediction, Project, Review, User


def _violates(sqlite_message: str, postgresql_constraint: str) -> str:
    """A ``match`` pattern for an IntegrityError from either backend."""
    return f'{re.escape(sqlite_message)}|violates .* constraint "{postgresql_constraint}"'


def _insert(factory: sessionmaker[Session], *rows: object) -> None:
    with factory() as session, session.begin():
        session.add_all(rows)


def _model_version(project_id: int, version: int = 1, **overrides: object) -> ModelVersion:
    values: dict[str, object] = {
        "project_id": project_id,
        "version": version,
        "kind": "patchcore",
        "artifact_path": f"models/cells/v{version}",
    }
    values.update(overrides)
    return ModelVersion(**values)


def _image(project_id: int, sha256: str = "a" * 64, **overrides: object) -> Image:
    values: dict[str, object] = {
        "project_id": project_id,
        "sha256": sha256,
        "stored_path": f"images/{sha256[:2]}/{sha256}.png",
        "original_name": "part.png",
        "width": 8,
        "height": 8,
        "size_bytes": 100,
        "source": "upload",
    }
    values.update(overrides)
    return Image(**values)


def test_bad_role_is_rejected(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError, match="ck_users_role"):
        _insert(session_factory, User(name="eve", role="superuser", password_hash="x"))


def test_duplicate_user_name_is_rejected(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    make_user("ann")
    with pytest.raises(IntegrityError):
        _insert(session_factory, User(name="ann", role="manager", password_hash="x"))


def test_bad_review_label_is_rejected(
    session_factory: sessionmaker[Session], make_user: Callable[..., int], make_image: Callable
) -> None:
    reviewer, image = make_user("ann"), make_image()
    with pytest.raises(IntegrityError, match="ck_reviews_label"):
        _insert(session_factory, Review(image_id=image, reviewer_id=reviewer, label="maybe"))


def test_review_without_label_must_be_an_undo(
    session_factory: sessionmaker[Session], make_user: Callable[..., int], make_image: Callable
) -> None:
    reviewer, image = make_user("ann"), make_image()
    with pytest.raises(IntegrityError, match="ck_reviews_undo_shape"):
        _insert(session_factory, Review(image_id=image, reviewer_id=reviewer, label=None))


def test_defect_type_on_a_good_label_is_rejected(
    session_factory: sessionmaker[Session], make_user: Callable[..., int], make_image: Callable
) -> None:
    reviewer, image = make_user("ann"), make_image()
    review = Review(image_id=image, reviewer_id=reviewer, label="good", defect_type="crack")
    with pytest.raises(IntegrityError, match="ck_reviews_defect_type_needs_defect"):
        _insert(session_factory, review)


def test_bad_verdict_is_rejected(
    session_factory: sessionmaker[Session], project_id: int, make_image: Callable
) -> None:
    image = make_image()
    with session_factory() as session, session.begin():
        version = _model_version(project_id)
        session.add(version)
        session.flush()
        version_id = version.id
    prediction = Prediction(
        image_id=image, model_version_id=version_id, score=0.3, threshold=0.5, verdict="unsure"
    )
    with pytest.raises(IntegrityError, match="ck_predictions_verdict"):
        _insert(session_factory, prediction)


def test_bad_model_status_is_rejected(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with pytest.raises(IntegrityError, match="ck_model_versions_status"):
        _insert(session_factory, _model_version(project_id, status="deployed"))


def test_bad_job_status_and_progress_are_rejected(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError, match="ck_jobs_status"):
        _insert(session_factory, Job(kind="train", status="paused"))
    with pytest.raises(IntegrityError, match="ck_jobs_progress_range"):
        _insert(session_factory, Job(kind="train", progress=1.5))


def test_bad_image_source_and_hash_are_rejected(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with pytest.raises(IntegrityError, match="ck_images_source"):
        _insert(session_factory, _image(project_id, source="camera"))
    with pytest.raises(IntegrityError, match="ck_images_sha256_length"):
        _insert(session_factory, _image(project_id, sha256="abc"))


def test_sha256_is_unique_within_a_project(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    _insert(session_factory, _image(project_id))
    duplicate = _violates(
        "UNIQUE constraint failed: images.project_id, images.sha256", "uq_images_project_id_sha256"
    )
    with pytest.raises(IntegrityError, match=duplicate):
        _insert(session_factory, _image(project_id, original_name="copy.png"))


def test_model_version_number_is_unique_per_project(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    _insert(session_factory, _model_version(project_id, 1))
    duplicate = _violates(
        "UNIQUE constraint failed: model_versions.project_id, model_versions.version",
        "uq_model_versions_project_id_version",
    )
    with pytest.raises(IntegrityError, match=duplicate):
        _insert(session_factory, _model_version(project_id, 1, model_number=2))
    with session_factory() as session, session.begin():
        other = Project(name="tiles")
        session.add(other)
        session.flush()
        session.add(_model_version(other.id, 1))  # same number, other project: fine


def test_a_model_revision_is_unique_per_project(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    _insert(session_factory, _model_version(project_id, 1, model_number=1, revision=3))
    duplicate = _violates(
        "UNIQUE constraint failed: model_versions.project_id, model_versions.model_number, "
        "model_versions.revision",
        "uq_model_versions_project_id_model_number_revision",
    )
    with pytest.raises(IntegrityError, match=duplicate):
        _insert(session_factory, _model_version(project_id, 2, model_number=1, revision=3))
    _insert(session_factory, _model_version(project_id, 2, model_number=1, revision=4))


@pytest.mark.parametrize(
    ("numbers", "constraint"),
    [
        ({"model_number": 0}, "ck_model_versions_model_number_positive"),
        ({"revision": -1}, "ck_model_versions_revision_not_negative"),
    ],
)
def test_model_numbers_and_revisions_are_counted_from_one_and_zero(
    session_factory: sessionmaker[Session], project_id: int, numbers: dict, constraint: str
) -> None:
    with pytest.raises(IntegrityError, match=constraint):
        _insert(session_factory, _model_version(project_id, 1, **numbers))


def test_foreign_key_violation_is_rejected(session_factory: sessionmaker[Session]) -> None:
    missing = _violates("FOREIGN KEY constraint failed", "fk_images_project_id_projects")
    with pytest.raises(IntegrityError, match=missing):
        _insert(session_factory, _image(project_id=999))


def test_review_of_a_missing_image_is_rejected(
    session_factory: sessionmaker[Session], make_user: Callable[..., int]
) -> None:
    reviewer = make_user("ann")
    missing = _violates("FOREIGN KEY constraint failed", "fk_reviews_image_id_images")
    with pytest.raises(IntegrityError, match=missing):
        _insert(session_factory, Review(image_id=999, reviewer_id=reviewer, label="good"))


def test_active_model_version_cycle_round_trips(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        project = session.get_one(Project, project_id)
        version = _model_version(project_id, status="active", threshold=0.42)
        project.active_model_version = version
    with session_factory() as session:
        project = session.get_one(Project, project_id)
        assert project.active_model_version is not None
        assert project.active_model_version.threshold == 0.42
        assert project.active_model_version.project_id == project_id

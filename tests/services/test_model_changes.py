"""The Dashboard's model changes: detector revisions going live, with the reason recorded."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_version

from db import ModelVersion
from db.model_metrics import SAME_MODEL_AS_KEY, InstantUpdate, instant_update_metrics
from db.model_versions import activate_model_version, register_model_version
from services.model_changes import detector_changes


def register(factory: sessionmaker[Session], project_id: int, metrics: dict, notes: str) -> int:
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind="patchcore",
            artifact_path="models/cells/v",
            metrics=metrics,
            threshold=2.0,
            training_snapshot={},
            notes=notes,
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


def test_activations_are_listed_newest_first_and_instant_updates_are_counted(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    first = add_version(session_factory, project_id)
    recalibrated = register(
        session_factory, project_id, {SAME_MODEL_AS_KEY: [first]}, "Audits found misses."
    )
    with session_factory() as session:
        parent = session.get(ModelVersion, recalibrated)
        update = InstantUpdate(
            at="2026-11-02T10:00:00+00:00",
            by="ines",
            by_id=None,
            review_ids=(),
            image_ids=(),
            image_sha256=(),
            parent_version=parent.version,
            parent_version_id=recalibrated,
        )
        learned = instant_update_metrics(parent, update)
    register(session_factory, project_id, learned, "")
    add_version(session_factory, project_id, active=False)  # a candidate never live: left out
    add_version(session_factory, project_id, kind="feedback_scorer")  # not a detector

    with session_factory() as session:
        history = detector_changes(session, project_id)

    assert [(c.label, c.origin) for c in history.changes] == [
        ("v1.1", "recalibration"),
        ("v1.0", "training"),
    ]
    assert history.changes[0].why == "Audits found misses."
    assert history.changes[0].threshold == 2.0
    assert history.instant_updates == {"v1": 1}


def test_a_project_without_a_live_detector_has_no_changes(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session:
        history = detector_changes(session, project_id)
    assert history.changes == [] and history.instant_updates == {}

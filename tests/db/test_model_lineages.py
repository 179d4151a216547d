"""Model lineages: registration numbers models and revisions; labels; the lineage queries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import Image, ModelVersion, User, activate_model_version, register_model_version
from db.instant_updates import record_instant_update
from db.model_families import ModelFamily, detector_lineage
from db.model_lineages import (
    LineageNumber,
    RevisionOrigin,
    label_of,
    lineages,
    model_label,
    model_numbers,
    parent_version_id,
    revision_origin,
    version_label,
    version_labels,
)
from db.model_metrics import ScorerDetector, new_version_metrics
from db.model_versions import rollback_to
from db.review_queue import record_review


def test_labels() -> None:
    assert (version_label(2, 14), version_label(2, 0), model_label(2)) == ("v2.14", "v2.0", "v2")
    assert label_of(ModelVersion(version=7, model_number=3, revision=5)) == "v3.5"
    assert label_of(ModelVersion(version=7)) == "v7"  # not numbered yet


@pytest.mark.parametrize(
    ("metrics", "parent"),
    [
        ({}, None),
        (None, None),
        ({"same_model_as": [5, 4]}, 5),
        # an update of a recalibration: its own update names the direct parent
        ({"same_model_as": [5, 4], "instant_updates": [{"parent_version_id": 6}]}, 6),
        ({"instant_updates": [{"parent_version_id": 2}, {"parent_version_id": 3}]}, 3),
        ({"instant_updates": [{"parent_version_id": None}], "same_model_as": [True, "x", 9]}, 9),
        ({"same_model_as": [8, 4]}, 4),  # never itself (own id 8)
    ],
)
def test_parent_version_id_reads_the_lineage_records(metrics: dict | None, parent: int) -> None:
    assert parent_version_id(metrics, own_id=8) == parent


def test_revision_origin() -> None:
    assert revision_origin({"n_train": 3}) == RevisionOrigin.TRAINING
    assert revision_origin({"same_model_as": [1]}) == RevisionOrigin.RECALIBRATION
    updated = {"same_model_as": [1], "instant_updates": [{"parent_version_id": 2}]}
    assert revision_origin(updated) == RevisionOrigin.INSTANT_UPDATE


def _register(session: Session, project_id: int, metrics: dict, kind: str = "patchcore") -> int:
    return register_model_version(
        session,
        project_id=project_id,
        kind=kind,
        artifact_path="m",
        metrics=metrics,
        threshold=1.0,
        training_snapshot={},
    ).id


def _instant_update(session: Session, parent_id: int, inspector: User, image_id: int) -> int:
    review = record_review(session, image_id=image_id, user=inspector, label="good")
    return record_instant_update(
        session,
        parent_version_id=parent_id,
        artifact_path="m2",
        added_sha256=session.get(Image, image_id).sha256,
        review_id=review.id,
        user=inspector,
    ).id


@pytest.fixture
def story(
    session_factory: sessionmaker[Session],
    project_id: int,
    make_user: Callable[..., int],
    make_image: Callable[[int], int],
) -> dict[str, int]:
    """Seven versions: ``{label they must get: id}``.

    v1.0 (fit), v1.1 and v1.2 (instant updates), v1.3 (recalibration, a candidate), v2.0
    (refit, a candidate), v3.0 (feedback scorer), then a rollback to v1.1 and its update, v1.4.
    """
    inspector_id = make_user("ines", "inspector")
    manager_id = make_user("mona", "manager")
    images = [make_image(seed) for seed in range(3)]
    ids: dict[str, int] = {}
    with session_factory() as session, session.begin():
        inspector = session.get(User, inspector_id)
        ids["v1.0"] = _register(session, project_id, new_version_metrics({"n_train": 10}))
        activate_model_version(session, version_id=ids["v1.0"], user=None, system=True)
        ids["v1.1"] = _instant_update(session, ids["v1.0"], inspector, images[0])
        ids["v1.2"] = _instant_update(session, ids["v1.1"], inspector, images[1])
        lineage = detector_lineage(session.get(ModelVersion, ids["v1.2"]))
        ids["v1.3"] = _register(session, project_id, new_version_metrics({}, same_model_as=lineage))
        ids["v2.0"] = _register(session, project_id, new_version_metrics({"n_train": 12}))
        scorer = new_version_metrics({}, scorer_detector=ScorerDetector(ids["v1.2"]))
        ids["v3.0"] = _register(session, project_id, scorer, kind="feedback_scorer")
        rollback_to(session, ids["v1.1"], session.get(User, manager_id))
        ids["v1.4"] = _instant_update(session, ids["v1.1"], inspector, images[2])
    return ids


def test_registration_numbers_models_and_revisions(
    session_factory: sessionmaker[Session], project_id: int, story: dict[str, int]
) -> None:
    with session_factory() as session:
        numbers = model_numbers(session, project_id)
        labels = version_labels(session, project_id)
        versions = {label: session.get(ModelVersion, i) for label, i in story.items()}
        assert {label_of(version) for version in versions.values()} == set(story)
        models = {lineage.model_number: lineage for lineage in lineages(session, project_id)}
        assert [revision.version_id for revision in models[1].revisions] == [
            story[label] for label in ("v1.4", "v1.3", "v1.2", "v1.1", "v1.0")
        ]
        assert 9 not in models
    assert numbers == {i: LineageNumber(*map(int, k[1:].split("."))) for k, i in story.items()}
    assert labels == {i: label for label, i in story.items()}
    # the internal numbers stay sequential, in the order the versions were registered
    assert [versions[label].version for label in story] == [1, 2, 3, 4, 5, 6, 7]
    assert versions["v1.1"].notes.startswith("Instant update of v1.0: ")


def test_lineages_list_models_with_their_revisions(
    session_factory: sessionmaker[Session], project_id: int, story: dict[str, int]
) -> None:
    with session_factory() as session:
        models = lineages(session, project_id)
    assert [m.title for m in models] == [
        "v3 (feedback_scorer, candidate)",
        "v2 (patchcore, candidate)",
        "v1 (patchcore, active)",
    ]
    assert [m.family for m in models] == [ModelFamily.SCORER, *[ModelFamily.DETECTOR] * 2]
    detector = models[-1]
    assert detector.label == "v1" and detector.latest.label == "v1.4"
    assert detector.active is not None and detector.active.version_id == story["v1.4"]
    assert [(r.label, r.origin.value, r.was_active) for r in detector.revisions] == [
        ("v1.4", "instant update", True),
        ("v1.3", "recalibration", False),
        ("v1.2", "instant update", True),
        ("v1.1", "instant update", True),
        ("v1.0", "training", True),
    ]
    assert models[1].active is None and models[1].revisions[0].origin == RevisionOrigin.TRAINING


def test_another_kind_or_another_project_starts_a_new_model(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        first = _register(session, project_id, {})
        other_kind = _register(session, project_id, {"same_model_as": [first]}, "autoencoder")
        missing = _register(session, project_id, {"same_model_as": [10**6]})
        numbers = model_numbers(session, project_id)
    assert [numbers[i] for i in (first, other_kind, missing)] == [(1, 0), (2, 0), (3, 0)]


def test_a_row_written_around_registration_is_a_model_of_its_own(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        rows = [
            ModelVersion(project_id=project_id, version=n, kind="patchcore", artifact_path="m")
            for n in (1, 4)
        ]
        session.add_all(rows)
        session.flush()
        assert [(row.model_number, row.revision) for row in rows] == [(1, 0), (4, 0)]

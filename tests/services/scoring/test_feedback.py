"""The active feedback scorer: found for its detector lineage, it decides; the facts stay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.detectors.patchcore import PatchCore, PatchCoreConfig
from adcore.errors import DatasetError
from adcore.feedback_scorer import DetectorIdentity, train_feedback_scorer
from db import Prediction, Project
from db.model_versions import activate_model_version, register_model_version
from services.inspection import InspectionRequest, inspect_uploads
from services.scoring.feedback import ActiveScorer, ScorerDecision, active_scorer, scorer_decisions
from services.scoring.predictor import Predictor

TINY = PatchCoreConfig(image_size=64, coreset_ratio=0.1)


@pytest.fixture(scope="module")
def detector() -> PatchCore:
    """A tiny PatchCore whose threshold passes the good synthetic parts."""
    fitted = PatchCore(TINY, device="cpu")
    fitted.fit([make_part(i) for i in range(8)])
    good = max(p.score for p in fitted.predict([make_part(100 + i) for i in range(3)]))
    return fitted.with_threshold(good * 1.5)


def register(factory: sessionmaker[Session], project_id: int, kind: str, **fields) -> int:
    """Register (and activate) a model version; return its id."""
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind=kind,
            metrics=fields.pop("metrics", {}),
            training_snapshot={},
            **fields,
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


@pytest.fixture
def project(session_factory: sessionmaker[Session], detector: PatchCore, tmp_path: Path) -> dict:
    """A project whose active detector is ``detector`` and whose active scorer flags a lot."""
    with session_factory() as session, session.begin():
        project = Project(name="widgets")
        session.add(project)
        session.flush()
        project_id = project.id
    detector_id = register(
        session_factory, project_id, "patchcore", artifact_path="m", threshold=detector.threshold
    )
    vectors = [p.embedding for p in detector.predict([make_part(300 + i) for i in range(20)])]
    labels = np.arange(20) % 2
    scorer, _ = train_feedback_scorer(
        np.where(labels == 1, 10.0, 0.0),  # "defects" score high: any low score looks good
        np.stack(vectors),
        labels,
        detector=DetectorIdentity(detector_id, 1, "patchcore", len(vectors[0])),
    )
    scorer.save(tmp_path / "scorer")
    scorer_id = register(
        session_factory,
        project_id,
        "feedback_scorer",
        artifact_path=str(tmp_path / "scorer"),
        threshold=0.0,  # flags every part: visible against the detector's verdicts
        metrics={"detector": {"version_id": detector_id}},
    )
    return {"id": project_id, "detector_id": detector_id, "scorer_id": scorer_id}


def inspect(
    factory: sessionmaker[Session], project_id: int, version_id: int, detector: PatchCore, seed: int
) -> list:
    """Upload one good synthetic part, scored by ``version_id``."""
    predictor = Predictor.load(
        factory, project_id=project_id, model_version_id=version_id, detector=detector
    )
    return inspect_uploads(
        factory, InspectionRequest(predictor), [("good.png", png(make_part(seed)))]
    )


def test_the_active_scorer_decides_and_the_detector_facts_stay(
    session_factory: sessionmaker[Session], project: dict, detector: PatchCore
) -> None:
    (result,) = inspect(session_factory, project["id"], project["detector_id"], detector, 100)
    assert result.score < result.threshold  # the detector alone would pass it
    assert result.verdict == "defect" and result.defect_probability is not None
    with session_factory() as session:
        stored = session.scalars(select(Prediction)).one()
    assert stored.scorer_version_id == project["scorer_id"]
    assert stored.defect_probability == pytest.approx(result.defect_probability)
    assert stored.score == pytest.approx(result.score)  # the detector's score stays
    assert stored.explanation["scorer"]["verdict"] == "defect"
    assert "feedback scorer" in stored.explanation["text"]


def test_an_older_detector_version_keeps_its_own_verdict(
    session_factory: sessionmaker[Session], project: dict, detector: PatchCore
) -> None:
    with session_factory() as session, session.begin():
        older = register_model_version(
            session,
            project_id=project["id"],
            kind="patchcore",
            artifact_path="old",
            metrics={},
            threshold=detector.threshold,
            training_snapshot={},
        ).id
    (result,) = inspect(session_factory, project["id"], older, detector, 101)
    assert result.verdict == "good" and result.defect_probability is None


class _BrokenScorer:
    def predict_proba(self, scores: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        raise DatasetError("vectors of another length")


def test_parts_without_vectors_or_a_broken_scorer_keep_the_detector_verdict() -> None:
    active = ActiveScorer(7, 2, 0.3, 1, _BrokenScorer())  # type: ignore[arg-type]
    assert scorer_decisions(active, [1.0, 2.0], [np.zeros(3), None]) == [None, None]
    assert scorer_decisions(None, [1.0], [np.zeros(3)]) == [None]


def test_a_decision_compares_the_probability_with_the_scorer_threshold() -> None:
    assert ScorerDecision(7, 2, 0.3, 0.3).verdict == "defect"
    passed = ScorerDecision(7, 2, 0.29, 0.3)
    assert passed.verdict == "good" and "passed" in passed.sentence()


def test_the_active_scorer_is_loaded_only_for_its_detector_lineage(
    session_factory: sessionmaker[Session], project_id: int, tmp_path: Path
) -> None:
    detector_id = register(
        session_factory, project_id, "patchcore", artifact_path="unused", threshold=1.0
    )
    with session_factory() as session:
        assert active_scorer(session, project_id) is None
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    vectors = rng.normal(size=(40, 6)) + labels[:, None]
    scorer, _ = train_feedback_scorer(
        rng.normal(size=40), vectors, labels, detector=DetectorIdentity(None, None, "p", 6)
    )
    scorer.save(tmp_path / "scorer")
    version_id = register(
        session_factory,
        project_id,
        "feedback_scorer",
        artifact_path=str(tmp_path / "scorer"),
        metrics={"detector": {"version_id": detector_id}},
        threshold=scorer.threshold,
    )
    with session_factory() as session:
        loaded = active_scorer(session, project_id)
        assert loaded is not None and loaded.version_id == version_id
        np.testing.assert_array_equal(
            loaded.scorer.predict_proba(np.zeros(40), vectors),
            scorer.predict_proba(np.zeros(40), vectors),
        )
        assert active_scorer(session, project_id).scorer is loaded.scorer  # cached
    register(session_factory, project_id, "patchcore", artifact_path="unused", threshold=1.0)
    with session_factory() as session:  # a refit: another lineage
        assert active_scorer(session, project_id) is None

"""The triage model: the active scorer of the detector's lineage triages flagged parts only.

A part the screen (the detector at its threshold) flags is sent to a human or auto-accepted by
the scorer; a part the screen passes is never looked at by it. The detector's facts stay.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from adcore.audit import AuditOdds
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


def make_project(
    factory: sessionmaker[Session],
    detector: PatchCore,
    scorer_dir: Path,
    *,
    detector_threshold: float,
    scorer_threshold: float,
) -> dict:
    """A project with ``detector`` active at ``detector_threshold`` and a scorer at its own.

    The scorer learnt that any low detector score looks good.
    """
    with factory() as session, session.begin():
        project = Project(name="widgets")
        session.add(project)
        session.flush()
        project_id = project.id
    detector_id = register(
        factory, project_id, "patchcore", artifact_path="m", threshold=detector_threshold
    )
    vectors = [p.embedding for p in detector.predict([make_part(300 + i) for i in range(20)])]
    labels = np.arange(20) % 2
    scorer, _ = train_feedback_scorer(
        np.where(labels == 1, 10.0, 0.0),  # "defects" score high: any low score looks good
        np.stack(vectors),
        labels,
        detector=DetectorIdentity(detector_id, 1, "patchcore", len(vectors[0])),
    )
    scorer.save(scorer_dir)
    scorer_id = register(
        factory,
        project_id,
        "feedback_scorer",
        artifact_path=str(scorer_dir),
        threshold=scorer_threshold,
        metrics={"detector": {"version_id": detector_id}},
    )
    return {"id": project_id, "detector_id": detector_id, "scorer_id": scorer_id}


@pytest.fixture
def project(session_factory: sessionmaker[Session], detector: PatchCore, tmp_path: Path) -> dict:
    """The detector at its own threshold; a scorer at threshold 0 (it would flag every part)."""
    return make_project(
        session_factory,
        detector,
        tmp_path / "scorer",
        detector_threshold=detector.threshold,
        scorer_threshold=0.0,
    )


@pytest.fixture
def screen_flags_all(
    session_factory: sessionmaker[Session], detector: PatchCore, tmp_path: Path
) -> Callable[[float], dict]:
    """A project whose screen flags every part (threshold 0), scorer threshold as asked."""

    def create(scorer_threshold: float) -> dict:
        return make_project(
            session_factory,
            detector,
            tmp_path / "scorer",
            detector_threshold=0.0,
            scorer_threshold=scorer_threshold,
        )

    return create


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


def test_a_scorer_does_not_flag_a_part_the_screen_passed(
    session_factory: sessionmaker[Session], project: dict, detector: PatchCore
) -> None:
    (result,) = inspect(session_factory, project["id"], project["detector_id"], detector, 100)
    assert result.score < result.threshold  # the screen passes it
    # the scorer (threshold 0) would flag any part it looked at: it did not look
    assert result.verdict == "good" and result.defect_probability is None
    assert result.region in {"near_pass", "deep_pass"}
    with session_factory() as session:
        stored = session.scalars(select(Prediction)).one()
    assert stored.verdict == "good"
    assert stored.scorer_version_id is None and stored.defect_probability is None
    assert stored.decision_region == result.region
    assert stored.explanation is not None and "scorer" not in stored.explanation
    assert "triage model" not in stored.explanation["text"]


def test_the_scorer_sends_a_flagged_part_to_a_human_and_the_detector_facts_stay(
    session_factory: sessionmaker[Session],
    screen_flags_all: Callable[[float], dict],
    detector: PatchCore,
) -> None:
    project = screen_flags_all(0.0)  # any p reaches the scorer's threshold
    (result,) = inspect(session_factory, project["id"], project["detector_id"], detector, 100)
    assert result.score >= result.threshold == 0.0  # the screen flags it
    assert result.verdict == "defect" and result.defect_probability is not None
    assert (result.region, result.audit_probability, result.audit) == ("sent_to_human", 1.0, False)
    with session_factory() as session:
        stored = session.scalars(select(Prediction)).one()
    assert stored.scorer_version_id == project["scorer_id"]
    assert stored.defect_probability == pytest.approx(result.defect_probability)
    assert stored.score == pytest.approx(result.score)  # the detector's score stays
    assert (stored.decision_region, stored.audit_probability) == ("sent_to_human", 1.0)
    assert stored.explanation["scorer"]["verdict"] == "defect"
    assert "feedback scorer" in stored.explanation["text"]
    assert "sent to a human" in stored.explanation["text"]


def test_the_scorer_auto_accepts_a_flagged_part_below_its_threshold(
    session_factory: sessionmaker[Session],
    screen_flags_all: Callable[[float], dict],
    detector: PatchCore,
) -> None:
    project = screen_flags_all(1.0)  # every p < 1 is below the scorer's threshold
    (result,) = inspect(session_factory, project["id"], project["detector_id"], detector, 100)
    assert result.score >= result.threshold  # the screen flags it ...
    assert result.verdict == "good"  # ... and the triage model accepts it
    assert result.defect_probability is not None and result.defect_probability < 1.0
    assert result.region == "auto_accepted"
    assert result.audit_probability == AuditOdds().auto_accepted
    with session_factory() as session:
        stored = session.scalars(select(Prediction)).one()
    assert stored.verdict == "good" and stored.scorer_version_id == project["scorer_id"]
    assert stored.defect_probability == pytest.approx(result.defect_probability)
    assert (stored.decision_region, stored.audit_probability) == (
        "auto_accepted",
        AuditOdds().auto_accepted,
    )
    assert stored.audit == result.audit
    assert stored.explanation["scorer"]["verdict"] == "good"
    assert "auto-accepted as good" in stored.explanation["text"]


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


class _ConstantScorer:
    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.seen: list[int] = []

    def predict_proba(self, scores: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        self.seen.append(len(scores))
        return np.full(len(scores), self.probability)


def test_parts_without_vectors_or_a_broken_scorer_keep_the_detector_verdict() -> None:
    active = ActiveScorer(7, 2, 0.3, 1, _BrokenScorer())  # type: ignore[arg-type]
    assert scorer_decisions(active, [1.0, 2.0], [np.zeros(3), None]) == [None, None]
    assert scorer_decisions(None, [1.0], [np.zeros(3)]) == [None]


def test_only_the_parts_the_screen_flagged_are_triaged() -> None:
    model = _ConstantScorer(0.9)
    active = ActiveScorer(7, 2, 0.3, 1, model)  # type: ignore[arg-type]
    vectors = [np.zeros(3), np.zeros(3), None, np.zeros(3)]
    decisions = scorer_decisions(active, [0.1, 2.0, 3.0, 1.5], vectors, [False, True, True, True])
    assert decisions[0] is None  # passed by the screen: never triaged
    assert decisions[2] is None  # flagged, but without a vector: the screen's verdict stands
    assert [d.probability for d in decisions if d is not None] == [0.9, 0.9]
    assert model.seen == [2]  # only the two flagged parts with a vector reached the model
    assert scorer_decisions(active, [0.1], [np.zeros(3)], [False]) == [None]
    assert model.seen == [2]  # nothing flagged: the model is not even called


def test_a_decision_compares_the_probability_with_the_scorer_threshold() -> None:
    sent = ScorerDecision(7, 2, 0.3, 0.3)  # at the threshold: sent to a human
    assert sent.verdict == "defect" and "sent to a human" in sent.sentence()
    accepted = ScorerDecision(7, 2, 0.29, 0.3)
    assert accepted.verdict == "good" and "auto-accepted as good" in accepted.sentence()
    assert "0.29" in accepted.sentence() and "0.30" in accepted.sentence()


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

"""The stage-2 switch: with ``settings["scorer"]["enabled"]`` false, no triage model decides.

A stand-in detector (a flat part's grey level / 100, screen threshold 1.0, with a small vector)
and an active triage model that would auto-accept every flagged part (threshold 1): with stage 2
on, a flagged part is auto-accepted; switched off, the screen alone decides and it is sent to a
human.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from stand_in_detector import GreyLevelDetector, grey_part

from adcore.feedback_scorer import DetectorIdentity, ScorerConfig, train_feedback_scorer
from db import ModelVersion, Prediction, Project, Role, User
from db.model_versions import activate_model_version, register_model_version
from services.inspection import InspectionRequest, InspectionResult, inspect_uploads
from services.scorer_training import (
    SCORER_KEY,
    ScorerSetting,
    scorer_setting,
    set_scorer_setting,
)
from services.scoring.feedback import deciding_scorer
from services.scoring.predictor import Predictor

DIM = 4
FLAGGED_LEVEL = 150
"""A grey level the screen flags (score 1.5 at threshold 1.0)."""


class VectorGreyDetector(GreyLevelDetector):
    """The grey-level stand-in, with a (DIM,) vector per part as PatchCore gives."""

    def predict(self, images: Sequence[np.ndarray]) -> list[SimpleNamespace]:
        """The stand-in's predictions, each with ``embedding`` [score, 1, 0, 0]."""
        predictions = super().predict(images)
        for prediction in predictions:
            prediction.embedding = np.array([prediction.score, 1.0, 0.0, 0.0], np.float32)
        return predictions


def register(factory: sessionmaker[Session], project_id: int, kind: str, **fields: object) -> int:
    """Register and activate a model version; its id."""
    with factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=project_id,
            kind=kind,
            metrics=fields.pop("metrics", {}),
            training_snapshot={},
            **fields,  # type: ignore[arg-type]
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
        return version.id


@pytest.fixture
def project(session_factory: sessionmaker[Session], tmp_path: Path) -> dict[str, int]:
    """The stand-in active at threshold 1.0 and an active triage model at threshold 1."""
    with session_factory() as session, session.begin():
        row = Project(name="widgets")
        session.add(row)
        session.flush()
        project_id = row.id
    detector_id = register(
        session_factory, project_id, "patchcore", artifact_path="stand-in", threshold=1.0
    )
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 2
    vectors = rng.normal(size=(12, DIM)) + 3.0 * labels[:, None]
    scorer, _ = train_feedback_scorer(
        1.0 + labels.astype(float),
        vectors,
        labels,
        detector=DetectorIdentity(detector_id, 1, "patchcore", DIM),
        config=ScorerConfig(folds=2, c_values=(1.0,)),
    )
    scorer.save(tmp_path / "triage")
    scorer_id = register(
        session_factory,
        project_id,
        "feedback_scorer",
        artifact_path=str(tmp_path / "triage"),
        threshold=1.0,  # every p < 1: every flagged part auto-accepted
        metrics={"detector": {"version_id": detector_id}},
    )
    return {"id": project_id, "detector_id": detector_id, "scorer_id": scorer_id}


def store_scorer_setting(factory: sessionmaker[Session], project_id: int, **stored: object) -> None:
    """Write ``settings["scorer"]`` as it is stored (or edited by hand)."""
    with factory() as session, session.begin():
        row = session.get(Project, project_id)
        row.settings = {**(row.settings or {}), SCORER_KEY: dict(stored)}


def decider(factory: sessionmaker[Session], project: dict[str, int]) -> int | None:
    """The id of the scorer that decides for the active detector's parts, or None."""
    with factory() as session:
        version = session.get(ModelVersion, project["detector_id"])
        scorer = deciding_scorer(session, project["id"], version)
        return None if scorer is None else scorer.version_id


def predictor(factory: sessionmaker[Session], project: dict[str, int]) -> Predictor:
    return Predictor.load(
        factory,
        project_id=project["id"],
        model_version_id=project["detector_id"],
        detector=VectorGreyDetector(),
    )


def inspect_flagged_part(
    factory: sessionmaker[Session], project: dict[str, int]
) -> InspectionResult:
    (result,) = inspect_uploads(
        factory,
        InspectionRequest(predictor(factory, project)),
        [("part.png", grey_part(FLAGGED_LEVEL))],
    )
    return result


def test_with_stage_two_on_the_triage_model_auto_accepts(
    session_factory: sessionmaker[Session], project: dict[str, int]
) -> None:
    assert decider(session_factory, project) == project["scorer_id"]  # no setting: on
    store_scorer_setting(session_factory, project["id"], every_n_reviews=25, enabled=True)
    assert decider(session_factory, project) == project["scorer_id"]
    result = inspect_flagged_part(session_factory, project)
    assert result.score >= result.threshold  # the screen flags it ...
    assert result.verdict == "good" and result.region == "auto_accepted"  # ... stage 2 accepts
    assert result.defect_probability is not None


def test_with_stage_two_off_the_screen_alone_decides(
    session_factory: sessionmaker[Session], project: dict[str, int]
) -> None:
    store_scorer_setting(session_factory, project["id"], every_n_reviews=25, enabled=False)
    assert decider(session_factory, project) is None
    assert predictor(session_factory, project).scorer is None
    result = inspect_flagged_part(session_factory, project)
    assert result.score >= result.threshold
    assert result.verdict == "defect" and result.region == "sent_to_human"
    assert result.defect_probability is None
    with session_factory() as session:
        stored = session.scalars(select(Prediction)).one()
    assert stored.verdict == "defect" and stored.scorer_version_id is None
    assert stored.defect_probability is None
    assert "scorer" not in (stored.explanation or {})


def test_a_manager_switching_stage_two_off_and_on_again(
    session_factory: sessionmaker[Session],
    project: dict[str, int],
    make_user: Callable[..., int],
) -> None:
    manager = make_user("max", Role.MANAGER)
    for enabled, want in ((False, None), (True, project["scorer_id"])):
        with session_factory() as session, session.begin():
            user = session.get(User, manager)
            setting = ScorerSetting(25, enabled=enabled)
            set_scorer_setting(session, project["id"], setting, user=user)
        assert decider(session_factory, project) == want


@pytest.mark.parametrize("enabled", [False, True, 0, None, "false"])
def test_deciding_reads_the_switch_as_the_option_does(
    session_factory: sessionmaker[Session], project: dict[str, int], enabled: object
) -> None:
    """Hand-edited values: inspection and the settings page agree on whether stage 2 is on."""
    store_scorer_setting(session_factory, project["id"], enabled=enabled)
    with session_factory() as session:
        on = scorer_setting(session.get(Project, project["id"])).enabled
    assert on is (enabled is not False)
    assert (decider(session_factory, project) is not None) is on

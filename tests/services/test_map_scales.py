"""A part's map scale is its model version's: saved calibration + the threshold in force."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy.orm import Session, sessionmaker
from stored_predictions import add_flagged_prediction

from adcore.map_scale import MapCalibration
from adcore.persistence import save_model
from db import ModelVersion
from services.map_scales import prediction_map_scale

CALIBRATION = MapCalibration(
    normal_level=22.0, percentile=99.0, peak_to_score=0.95, good_peak=27.0, n_images=20
)


def point_version_at(
    factory: sessionmaker[Session], version_id: int, artifact: Path, threshold: float
) -> None:
    with factory() as session, session.begin():
        version = session.get(ModelVersion, version_id)
        version.artifact_path = artifact.as_posix()
        version.threshold = threshold


def saved_model(directory: Path, calibration: MapCalibration | None) -> Path:
    extra = {"map_calibration": calibration.to_json()} if calibration is not None else {}
    return save_model(
        directory, kind="patchcore", config={}, tensors={"bank": torch.zeros(1)}, extra=extra
    )


def test_two_parts_of_one_version_share_its_scale(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int], tmp_path: Path
) -> None:
    _, version_id = project_and_version
    point_version_at(session_factory, version_id, saved_model(tmp_path / "v1", CALIBRATION), 30.0)
    first = add_flagged_prediction(session_factory, project_and_version)
    second = add_flagged_prediction(session_factory, project_and_version)
    with session_factory() as session:
        scales = [prediction_map_scale(session, pid) for pid in (first, second)]
    assert scales[0] == scales[1]
    assert scales[0] is not None and scales[0].note is None
    assert (scales[0].normal, scales[0].hot) == (22.0, pytest.approx(28.5))
    point_version_at(session_factory, version_id, tmp_path / "v1", 40.0)  # a manager moves it
    with session_factory() as session:
        moved = prediction_map_scale(session, first)
    assert moved is not None and moved.hot == pytest.approx(38.0)


def test_an_old_model_falls_back_with_a_note(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int], tmp_path: Path
) -> None:
    _, version_id = project_and_version
    point_version_at(session_factory, version_id, saved_model(tmp_path / "old", None), 30.0)
    prediction_id = add_flagged_prediction(session_factory, project_and_version)
    with session_factory() as session:
        scale = prediction_map_scale(session, prediction_id)
        assert prediction_map_scale(session, prediction_id + 100) is None
    assert scale is not None and (scale.normal, scale.hot) == (0.0, 30.0)
    assert "Retrain" in (scale.note or "")


def test_a_missing_model_directory_falls_back(
    session_factory: sessionmaker[Session], project_and_version: tuple[int, int], tmp_path: Path
) -> None:
    _, version_id = project_and_version
    point_version_at(session_factory, version_id, tmp_path / "gone", 30.0)
    prediction_id = add_flagged_prediction(session_factory, project_and_version)
    with session_factory() as session:
        scale = prediction_map_scale(session, prediction_id)
    assert scale is not None and scale.note and scale.hot == 30.0

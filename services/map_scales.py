"""The colour scale of a part's anomaly map: its model version's, read from the saved model.

Every part a version scored is coloured on that version's one scale
(:func:`adcore.map_scale.map_scale`): the normal level measured on its good images at fit time,
saved in the model's ``config.json``, and the version's threshold in force. The saved document
is read once per model directory and modification time.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from adcore.errors import ModelFileError
from adcore.map_scale import STORED_KEY, MapCalibration, MapScale, map_scale
from adcore.persistence import CONFIG_FILE, read_document
from db import get_prediction

log = logging.getLogger(__name__)


def stored_map_calibration(artifact_path: str | Path) -> MapCalibration | None:
    """The map calibration saved with a model; None when absent or unreadable (logged)."""
    config = Path(artifact_path) / CONFIG_FILE
    try:
        stamp = config.stat().st_mtime_ns
    except OSError:
        log.warning("No %s in %s: its maps get a fallback colour scale", CONFIG_FILE, artifact_path)
        return None
    return _calibration_at(str(artifact_path), stamp)


@lru_cache(maxsize=32)
def _calibration_at(artifact_path: str, _stamp: int) -> MapCalibration | None:
    try:
        document = read_document(artifact_path)
    except ModelFileError as err:
        log.warning("Cannot read the map scale of %s: %s", artifact_path, err)
        return None
    return MapCalibration.from_json(document.get(STORED_KEY))


def prediction_map_scale(session: Session, prediction_id: int) -> MapScale | None:
    """The colour scale of a stored prediction's map: its version's calibration and threshold.

    Args:
        session: An open session.
        prediction_id: The prediction.

    Returns:
        The version's scale; None when the prediction is gone or its version has neither a
        calibration nor a threshold (the caller colours the map on its own range).
    """
    prediction = get_prediction(session, prediction_id)
    if prediction is None:
        return None
    version = prediction.model_version
    return map_scale(stored_map_calibration(version.artifact_path), version.threshold)

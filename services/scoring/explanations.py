"""The grounded explanation decided with each verdict, and its "resembles" fact.

The scoring service (:class:`services.scoring.predictor.Predictor`) decides with every verdict
the explanation :func:`adcore.explain.explain` builds from the measured facts of the part's
anomaly map; for a flagged part with a feature vector, the confirmed defect type it resembles
most (nearest inspector-labelled defects, :func:`adcore.explain.neighbours.nearest_defect_types`)
joins the facts. The confirmed defects' vectors are read once per scoring batch, and only when
the batch has such a part. When the feedback scorer decided, its sentence follows the
detector's facts. An explanation is a courtesy: no failure here ever fails the scoring of a
part; it only loses the explanation (logged).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from adcore.explain.neighbours import DefectLibrary, SimilarDefects, nearest_defect_types
from db.image_store import sha256_hex
from services.scoring.defect_library import load_defect_library
from services.scoring.feedback import ScorerDecision

logger = logging.getLogger(__name__)


def explain_part(
    name: str,
    pixels: np.ndarray,
    anomaly_map: np.ndarray,
    score: float,
    threshold: float,
    similar: SimilarDefects | None,
) -> dict[str, Any] | None:
    """``{"facts": ..., "text": ...}`` for ``Prediction.explanation``; None (logged) on error.

    An explanation is a courtesy: it never fails the scoring of a part.
    """
    from adcore.explain import explain

    try:
        return explain(pixels, anomaly_map, score, threshold, similar=similar)
    except Exception:  # noqa: BLE001 - any failure of the explainer only loses the explanation
        logger.exception("Could not explain the prediction of %s", name)
        return None


def with_scorer_decision(
    explanation: dict[str, Any] | None, decision: ScorerDecision | None
) -> dict[str, Any] | None:
    """The explanation with the feedback scorer's sentence and figures, when it decided."""
    if decision is None or explanation is None:
        return explanation
    return {
        **explanation,
        "text": f"{explanation['text']} {decision.sentence()}",
        "scorer": {
            "version": decision.scorer_version,
            "probability": decision.probability,
            "threshold": decision.threshold,
            "verdict": decision.verdict,
        },
    }


def confirmed_defects(
    Session: sessionmaker[OrmSession],  # noqa: N803 - the app's session factory
    project_id: int,
    model_version_id: int,
) -> DefectLibrary:
    """The version's confirmed defects with vectors (empty, logged, when they cannot be read)."""
    try:
        with Session() as session:
            return load_defect_library(session, project_id, model_version_id)
    except SQLAlchemyError:
        logger.exception("Could not read the confirmed defects of project %s", project_id)
        return DefectLibrary.empty()


def similar_defects(
    name: str, data: bytes, embedding: np.ndarray, library: DefectLibrary
) -> SimilarDefects | None:
    """The confirmed defect type a part resembles (never itself); None (logged) on error."""
    if not len(library):
        return None
    try:
        own_key = sha256_hex(data)  # the key images are stored under (db.image_store)
        return nearest_defect_types(embedding, library, exclude_key=own_key)
    except ValueError:
        logger.exception("Could not compare %s with the confirmed defects", name)
        return None

"""Safe teaching: a Good teaches the detector at once only when the part does not look defective.

Instant learning puts a confirmed-good flagged part into the detector's memory bank: from then
on, parts like it pass. One inspector's wrong Good on a real defect would teach the line to
pass that defect. So a Good on a flagged part waits when the triage model (stage 2 of the
cascade) finds the part *defect-like*: its p(defect) is at least
:data:`DEFECT_LIKE_PROBABILITY`. The probability is the one stored with the part's prediction
when stage 2 decided it, else that of the project's newest triage model trained on the active
detector's lineage (active or candidate: while stage 2 is off it still has an opinion), on the
part's stored score and vector. Without any triage model, every Good teaches as before.

A held part is learned once a second inspector labels it Good too (each reviewer's latest label,
:class:`db.models.ReviewerLabel`); an audit label is one inspector's word like any other.
:func:`teaching_hold` says why a Good must wait, in a sentence the page shows.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adcore.errors import LoupeError
from adcore.explain.neighbours import embedding_from_bytes
from db.base import Label, ModelStatus
from db.model_families import SCORER_KINDS, ModelFamily, active_version, detector_lineage
from db.model_lineages import label_of
from db.models import ModelVersion, Prediction, ReviewerLabel
from services.scoring.feedback import load_scorer, scorer_detector_id

__all__ = ["DEFECT_LIKE_PROBABILITY", "SECOND_OPINIONS", "teaching_hold"]

logger = logging.getLogger(__name__)

DEFECT_LIKE_PROBABILITY = 0.5
"""p(defect) from which the triage model calls a part defect-like."""
SECOND_OPINIONS = 2
"""Distinct inspectors whose Good makes a defect-like part safe to learn."""


def teaching_hold(session: Session, image_id: int) -> str | None:
    """Why a Good on this flagged part must not teach the detector yet, or ``None``.

    Args:
        session: The review's session (the Good is already recorded in it).
        image_id: The part.

    Returns:
        A sentence for the page, or ``None`` when the part may be learned now.
    """
    goods = session.scalar(
        select(func.count())
        .select_from(ReviewerLabel)
        .where(ReviewerLabel.image_id == image_id, ReviewerLabel.label == Label.GOOD.value)
    )
    if int(goods or 0) >= SECOND_OPINIONS:
        return None
    probability = _defect_probability(session, image_id)
    if probability is None or probability < DEFECT_LIKE_PROBABILITY:
        return None
    return (
        f"Not learned yet: the triage model finds this part defect-like (p(defect) "
        f"{probability:.2f}), so the detector learns it only after a second inspector's Good."
    )


def _defect_probability(session: Session, image_id: int) -> float | None:
    """The triage model's p(defect) for the part: stored, else computed; ``None`` without one."""
    prediction = session.scalars(
        select(Prediction)
        .where(Prediction.image_id == image_id)
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
        .limit(1)
    ).first()
    if prediction is None:
        return None
    if prediction.defect_probability is not None:
        return float(prediction.defect_probability)
    if prediction.embedding is None:
        return None
    project_id = prediction.image.project_id
    detector = active_version(session, project_id, ModelFamily.DETECTOR)
    if detector is None or prediction.model_version_id not in detector_lineage(detector):
        return None
    scorer = _newest_triage_model(session, project_id, detector)
    if scorer is None:
        return None
    try:
        model = load_scorer(scorer.artifact_path)
        vector = embedding_from_bytes(prediction.embedding)
        p = model.predict_proba(np.array([prediction.score]), vector.reshape(1, -1))
    except (LoupeError, OSError, ValueError) as err:
        logger.warning("Triage model %s not usable for safe teaching: %s", label_of(scorer), err)
        return None
    return float(p[0])


def _newest_triage_model(
    session: Session, project_id: int, detector: ModelVersion
) -> ModelVersion | None:
    """The active triage model if it fits the detector, else the newest one that does."""
    lineage = set(detector_lineage(detector))
    active = active_version(session, project_id, ModelFamily.SCORER)
    active_id = None if active is None else active.id
    versions = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.project_id == project_id,
            ModelVersion.kind.in_(sorted(SCORER_KINDS)),
            ModelVersion.status != ModelStatus.RETIRED.value,
        )
        .order_by(ModelVersion.version.desc())
    ).all()
    fitting = [v for v in versions if scorer_detector_id(v) in lineage]
    in_force = [v for v in fitting if v.id == active_id]
    return (in_force or fitting or [None])[0]

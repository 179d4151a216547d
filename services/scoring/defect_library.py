"""The confirmed defects of a project, read from the store for the "resembles" fact.

The similarity rules live in :mod:`adcore.explain.neighbours`; this module only reads the
vectors of a project's confirmed defects for one model version.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from adcore.explain.neighbours import DefectLibrary, embedding_from_bytes, usual_length
from db import Image, Label, Prediction, Review

logger = logging.getLogger(__name__)


def load_defect_library(session: Session, project_id: int, model_version_id: int) -> DefectLibrary:
    """The confirmed defects of a project with their vectors from one model version.

    An image counts when its current review labels it ``defect`` with a defect type and it has
    a prediction with an embedding by the version; its latest such prediction is used. Stored
    vectors of another length than most (a corrupt row) are skipped and logged.

    Args:
        session: An open session.
        project_id: The project.
        model_version_id: The model version whose vectors are compared.

    Returns:
        The library, keyed by the images' sha256 (empty when nothing is confirmed yet).
    """
    rows = session.execute(
        select(Image.sha256, Review.defect_type, Prediction.embedding)
        .select_from(Image)
        .join(Review, Review.id == Image.current_review_id)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(
            Image.project_id == project_id,
            Review.label == Label.DEFECT.value,
            Review.defect_type.is_not(None),
            Prediction.model_version_id == model_version_id,
            Prediction.embedding.is_not(None),
        )
        .order_by(Image.id, Prediction.created_at.desc(), Prediction.id.desc())
    ).all()
    latest: dict[str, tuple[str, np.ndarray]] = {}
    for sha256, defect_type, blob in rows:
        if sha256 in latest:
            continue
        try:
            latest[sha256] = (defect_type, embedding_from_bytes(blob))
        except ValueError as err:
            logger.warning("Skipping the stored embedding of image %s: %s", sha256[:12], err)
    if not latest:
        return DefectLibrary.empty()
    usual = usual_length([vector for _, vector in latest.values()])
    kept = {key: pair for key, pair in latest.items() if pair[1].size == usual and usual > 0}
    if len(kept) < len(latest):
        logger.warning("Skipped %d stored embeddings of an unusual length", len(latest) - len(kept))
    if not kept:
        return DefectLibrary.empty()
    return DefectLibrary.from_pairs(
        [(vector, defect_type) for defect_type, vector in kept.values()], keys=list(kept)
    )

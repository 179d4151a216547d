"""Every decided part of a project, as the line decided it, with its current label.

A part (an image) may have several predictions (re-scoring after an instant update or a
promotion), but the line decided it once: at its *first* prediction (lowest ``created_at``,
then lowest id), whose decision region, audit probability and audit flag later predictions
carry anyway. :func:`loop_parts` gives one row per predicted image of a project, from that
first prediction, with the image's current label (``images.current_review_id``; ``None`` when
unlabelled). ``since`` / ``until`` bound the first prediction's time, i.e. when the line
decided the part, not when it was reviewed.

The first prediction is found with two grouped passes (the earliest time per image, then the
lowest id at that time), portable SQL that both SQLite and PostgreSQL answer from the
``(image_id, created_at)`` index, as :func:`db.predictions.latest_prediction_ids` does for the
latest one. The estimate itself is :mod:`services.loop_rates`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from db.models import Image, Prediction, Review
from db.periods import raw_timestamp, require_aware, utc_datetime

__all__ = ["LoopPart", "loop_parts"]


class LoopPart(NamedTuple):
    """One decided part: its first prediction's decision and its current label.

    Attributes:
        image_id: The image (the part).
        decided_at: When its first prediction was stored (aware UTC).
        region: The decision region (:class:`db.base.DecisionRegion`); ``None`` when decided
            before regions were stored.
        audit_probability: The known probability that a part of the region is looked at by a
            human; ``None`` when decided before regions were stored.
        audited: Whether the part was drawn for audit.
        verdict: The first prediction's verdict (``"defect"`` / ``"good"``).
        label: The current human label (``"defect"`` / ``"good"``), ``None`` when unlabelled.
        model_version_id: The model version whose first prediction decided the part.
    """

    image_id: int
    decided_at: datetime
    region: str | None
    audit_probability: float | None
    audited: bool
    verdict: str
    label: str | None
    model_version_id: int


def loop_parts(
    session: Session,
    project_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[LoopPart]:
    """One row per predicted image of a project, from its first prediction, in image order.

    Args:
        session: The caller's session.
        project_id: The project.
        since: Only parts first predicted at or after this moment (timezone-aware).
        until: Only parts first predicted before this moment (timezone-aware).

    Returns:
        The parts; images without any prediction are left out.

    Raises:
        ValueError: If ``since`` or ``until`` is a naive datetime.
    """
    require_aware(since=since, until=until)
    first_at = func.min(Prediction.created_at)
    earliest: Any = (
        select(Prediction.image_id, first_at.label("first_at"))
        .where(Prediction.image_id.in_(select(Image.id).where(Image.project_id == project_id)))
        .group_by(Prediction.image_id)
    )
    if since is not None:
        earliest = earliest.having(first_at >= since)
    if until is not None:
        earliest = earliest.having(first_at < until)
    earliest = earliest.subquery("first_at")
    first_ids = (
        select(Prediction.image_id, func.min(Prediction.id).label("prediction_id"))
        .join(
            earliest,
            and_(
                Prediction.image_id == earliest.c.image_id,
                Prediction.created_at == earliest.c.first_at,
            ),
        )
        .group_by(Prediction.image_id)
        .subquery("first_prediction_ids")
    )
    rows = session.execute(
        select(
            Prediction.image_id,
            raw_timestamp(Prediction.created_at),
            Prediction.decision_region,
            Prediction.audit_probability,
            Prediction.audit,
            Prediction.verdict,
            Review.label,
            Prediction.model_version_id,
        )
        .join(first_ids, first_ids.c.prediction_id == Prediction.id)
        .join(Image, Image.id == Prediction.image_id)
        .outerjoin(Review, Review.id == Image.current_review_id)
        .order_by(Prediction.image_id)
    )
    return [
        LoopPart(
            image_id=image_id,
            decided_at=utc_datetime(decided_at),
            region=region,
            audit_probability=None if probability is None else float(probability),
            audited=bool(audited),
            verdict=verdict,
            label=label,
            model_version_id=model_version_id,
        )
        for (
            image_id,
            decided_at,
            region,
            probability,
            audited,
            verdict,
            label,
            model_version_id,
        ) in rows
    ]

"""What Loupe announces to a line: a new part's verdict, and each later human label of it.

Both are written to the outbox (:mod:`db.outbound_messages`) in the transaction that stores
what they announce, and only for projects with a channel on. The bodies are plain JSON:

``verdict``: ``project``, ``image_id``, ``prediction_id``, ``inspection_id`` (the station
post, when a station posted the part), ``station``, ``part_id``, ``source``, ``filename``,
``verdict``, ``score``, ``threshold``, ``model_version``, ``audit``, ``explanation``,
``inspected_at``.

``review``: the same part keys, then ``label`` (the part's label *after* this change: an undo
falls back to the earlier label, or ``null``), ``defect_type``, ``reviewer``, ``reviewed_at``,
``undo``, ``model_verdict`` (the verdict first announced) and ``corrects_model`` (the label
differs from it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Image, ModelVersion, Prediction, Project, Review, StationInspection, User
from db.outbound_messages import OutboundConfig, enqueue


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _part(session: Session, image: Image, project: Project) -> dict[str, Any]:
    post = session.execute(
        select(StationInspection.id, StationInspection.station, StationInspection.part_id)
        .where(StationInspection.image_id == image.id)
        .order_by(StationInspection.id)
        .limit(1)
    ).first()
    return {
        "project": project.name,
        "project_id": project.id,
        "image_id": image.id,
        "inspection_id": post.id if post else None,
        "station": post.station if post else None,
        "part_id": post.part_id if post else None,
        "source": "api" if post else image.source,  # upload, folder, demo or api
        "filename": image.original_name,
    }


def _announcing(session: Session, project_id: int) -> tuple[Project, OutboundConfig] | None:
    """The project and its channels, or ``None`` when it has none on (nothing to build)."""
    project = session.get(Project, project_id)
    config = OutboundConfig.of(project) if project is not None else None
    if config is None or not config.channels:
        return None
    return project, config


def announce_verdict(
    session: Session,
    prediction_id: int,
    *,
    station: str | None = None,
    part_id: str | None = None,
    inspection_id: int | None = None,
) -> list[int]:
    """Write the ``verdict`` message of a just-stored prediction (none if no channel is on).

    Args:
        session: The transaction that stored the prediction (or the station post).
        prediction_id: The stored prediction.
        station: The posting station, when known before its post row is visible.
        part_id: The station's part id.
        inspection_id: The station post's id.

    Returns:
        The outbox row ids.
    """
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        return []
    image = session.get(Image, prediction.image_id)
    announcing = _announcing(session, image.project_id) if image else None
    if announcing is None or image is None:
        return []
    project, config = announcing
    payload = _part(session, image, project)
    if station is not None:  # posted through the inspection API
        payload.update(station=station, part_id=part_id, inspection_id=inspection_id, source="api")
    explanation = prediction.explanation if isinstance(prediction.explanation, dict) else {}
    payload.update(
        event="verdict",
        prediction_id=prediction.id,
        verdict=prediction.verdict,
        score=float(prediction.score),
        threshold=float(prediction.threshold),
        model_version=session.scalar(
            select(ModelVersion.version).where(ModelVersion.id == prediction.model_version_id)
        ),
        audit=bool(prediction.audit),
        explanation=explanation.get("text"),
        inspected_at=_iso(prediction.created_at),
    )
    return enqueue(session, project.id, "verdict", payload, config=config)


def announce_review(session: Session, review: Review) -> list[int]:
    """Write the ``review`` message of a just-flushed review or undo (none if no channel is on).

    Returns:
        The outbox row ids.
    """
    image = session.get(Image, review.image_id)
    announcing = _announcing(session, image.project_id) if image else None
    if announcing is None or image is None:
        return []
    project, config = announcing
    session.refresh(image, ["current_review_id"])
    current = session.get(Review, image.current_review_id) if image.current_review_id else None
    first = session.scalars(
        select(Prediction)
        .where(Prediction.image_id == image.id)
        .order_by(Prediction.created_at, Prediction.id)
        .limit(1)
    ).first()
    label = current.label if current is not None else None
    model_verdict = first.verdict if first is not None else None
    payload = _part(session, image, project)
    payload.update(
        event="review",
        review_id=review.id,
        label=label,
        defect_type=current.defect_type if current is not None else None,
        reviewer=session.scalar(select(User.name).where(User.id == review.reviewer_id)),
        reviewed_at=_iso(review.created_at),
        undo=bool(review.is_undo),
        model_verdict=model_verdict,
        corrects_model=label is not None and model_verdict is not None and label != model_verdict,
    )
    return enqueue(session, project.id, "review", payload, config=config)

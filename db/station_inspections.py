"""Parts posted by stations: find an earlier post of the same part, record a post, read back.

Read-back joins the stored prediction (verdict, score, threshold, model version, explanation)
and the part's current human label, so a line's MES reads the final decision once an
inspector has reviewed the part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.base import utcnow
from db.model_lineages import version_label
from db.models import Image, ModelVersion, Prediction, Review, StationInspection, User


@dataclass(frozen=True)
class StationRecord:
    """One posted part as the API returns it (plain values)."""

    id: int
    project_id: int
    station: str
    part_id: str | None
    captured_at: datetime | None
    inspected_at: datetime
    image_id: int
    prediction_id: int
    verdict: str
    score: float
    threshold: float
    model_version: int
    model_label: str
    explanation: str | None
    stored_path: str
    anomaly_map_path: str | None
    label: str | None
    defect_type: str | None
    reviewer: str | None
    reviewed_at: datetime | None


@dataclass(frozen=True)
class EarlierPost:
    """A station's earlier post of a part: its id and the sha256 of the bytes it sent."""

    id: int
    sha256: str


def find_earlier_post(
    session: Session,
    *,
    project_id: int,
    station: str,
    part_id: str | None,
    sha256: str,
    window: timedelta,
) -> EarlierPost | None:
    """The station's earlier post of the same part, if any.

    With a part id, the post of that id (whatever bytes it sent: the caller compares them);
    without one, the first post of the same bytes within ``window`` (a camera that retried),
    with or without a part id.
    """
    statement = select(StationInspection.id, StationInspection.sha256).where(
        StationInspection.project_id == project_id, StationInspection.station == station
    )
    if part_id is not None:
        statement = statement.where(StationInspection.part_id == part_id)
    else:
        statement = statement.where(
            StationInspection.sha256 == sha256,
            StationInspection.created_at >= utcnow() - window,
        )
    row = session.execute(statement.order_by(StationInspection.id).limit(1)).first()
    return None if row is None else EarlierPost(row.id, row.sha256)


def record_post(
    session: Session,
    *,
    project_id: int,
    api_key_id: int,
    station: str,
    part_id: str | None,
    captured_at: datetime | None,
    sha256: str,
    image_id: int,
    prediction_id: int,
) -> int:
    """Store one post (flushed; the caller commits). Raises IntegrityError on a duplicate id."""
    row = StationInspection(
        project_id=project_id,
        api_key_id=api_key_id,
        station=station,
        part_id=part_id,
        captured_at=captured_at,
        sha256=sha256,
        image_id=image_id,
        prediction_id=prediction_id,
    )
    session.add(row)
    session.flush()
    return row.id


def _records() -> Any:
    reviewer = aliased(User, name="reviewer")
    return (
        select(
            StationInspection,
            Prediction,
            ModelVersion.version,
            ModelVersion.model_number,
            ModelVersion.revision,
            Image.stored_path,
            Review.label,
            Review.defect_type,
            Review.created_at,
            reviewer.name,
        )
        .join(Prediction, Prediction.id == StationInspection.prediction_id)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .join(Image, Image.id == StationInspection.image_id)
        .outerjoin(Review, Review.id == Image.current_review_id)
        .outerjoin(reviewer, reviewer.id == Review.reviewer_id)
    )


def _record(row: Any) -> StationRecord:
    (
        post,
        prediction,
        version,
        model_number,
        revision,
        stored_path,
        label,
        defect_type,
        reviewed_at,
        reviewer,
    ) = row
    explanation = prediction.explanation if isinstance(prediction.explanation, dict) else {}
    return StationRecord(
        id=post.id,
        project_id=post.project_id,
        station=post.station,
        part_id=post.part_id,
        captured_at=post.captured_at,
        inspected_at=post.created_at,
        image_id=post.image_id,
        prediction_id=post.prediction_id,
        verdict=prediction.verdict,
        score=float(prediction.score),
        threshold=float(prediction.threshold),
        model_version=version,
        model_label=version_label(model_number, revision),
        explanation=explanation.get("text"),
        stored_path=stored_path,
        anomaly_map_path=prediction.anomaly_map_path,
        label=label,
        defect_type=defect_type,
        reviewer=reviewer,
        reviewed_at=reviewed_at,
    )


def get_post(session: Session, project_id: int, post_id: int) -> StationRecord | None:
    """One post of the project, with its current label; ``None`` if there is none."""
    row = session.execute(
        _records().where(
            StationInspection.id == post_id, StationInspection.project_id == project_id
        )
    ).first()
    return None if row is None else _record(row)


def list_posts(
    session: Session,
    project_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    verdict: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StationRecord]:
    """The project's posts in ``[since, until)`` (inspection time), oldest first, paged."""
    statement = _records().where(StationInspection.project_id == project_id)
    if since is not None:
        statement = statement.where(StationInspection.created_at >= since)
    if until is not None:
        statement = statement.where(StationInspection.created_at < until)
    if verdict is not None:
        statement = statement.where(Prediction.verdict == verdict)
    statement = statement.order_by(StationInspection.id).limit(limit).offset(offset)
    return [_record(row) for row in session.execute(statement)]

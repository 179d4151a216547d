"""The review queue: which unlabelled parts an inspector should look at next, and labelling them.

An image is in the queue when it has no counting review (``images.current_review_id`` is
``NULL``) and its latest prediction is flagged (sent to a human) or an audit sample (a part the
line passed or auto-accepted, drawn at random with its region's known odds, see
:mod:`db.audits`). Parts just below the threshold come in only through their region's audit
draw (``near_pass``), so that every look a human takes has known odds; a caller may still ask
for a near band (``near_margin``). Predictions come from
the project's active model version; an image the active version has not scored (yet) keeps the
latest prediction of any version, so activating a new version (a promotion, an instant update)
never empties the queue while the waiting parts are being re-scored.

Flags are judged against the version's *current* threshold (falling back to the threshold
stored with the prediction), so lowering a threshold immediately brings the newly suspicious
parts to the front; stored predictions are never rewritten.

When the active feedback scorer decided a prediction (``defect_probability``, see
:mod:`services.scoring.feedback`), the scorer's probability against *its* current threshold
(the triage model of the cascade, which only decides parts the screen flagged) decides instead
of the detector's score: the part is sent to a human when ``p >= threshold`` (and, with a near
band, in the queue when ``p >= threshold * (1 - near_margin)``); auto-accepted parts are queued
only when drawn for audit. Such parts come first, the most uncertain (``p`` closest to the
threshold) first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, aliased

from db.base import Label
from db.model_families import active_version_id
from db.models import Image, ModelVersion, Review, User
from db.permissions import CAN_REVIEW, require_session_role
from db.predictions import latest_predictions
from db.projects import add_defect_type
from db.review_log import add_review, undo_last_review
from db.verdict_events import announce_review

DEFAULT_NEAR_MARGIN = 0.0
"""No near band by default: near-threshold parts are audited with known odds instead."""
DEFAULT_PROBABILITY_THRESHOLD = 0.5
"""The probability threshold of a feedback scorer saved without one."""


@dataclass(frozen=True)
class QueueItem:
    """One part waiting for a human label.

    Attributes:
        image_id: The image.
        prediction_id: Its latest prediction (of the active version when there is one).
        original_name: The file name it was uploaded with (display only).
        stored_path: Its file, relative to the data directory.
        score: The anomaly score.
        threshold: The threshold it is judged against (the version's current one).
        verdict: ``"defect"`` if ``score >= threshold`` else ``"good"``.
        created_at: When the prediction was made.
        audit: Whether the part is an audit sample (drawn at random among passed parts).
        defect_probability: The feedback scorer's p(defect) when it decided, else None.
        probability_threshold: That scorer's current threshold, else None.
    """

    image_id: int
    prediction_id: int
    original_name: str
    stored_path: str
    score: float
    threshold: float
    verdict: str
    created_at: datetime
    audit: bool = False
    defect_probability: float | None = None
    probability_threshold: float | None = None


def review_queue(
    session: Session,
    project_id: int,
    *,
    near_margin: float = DEFAULT_NEAR_MARGIN,
    limit: int | None = None,
) -> list[QueueItem]:
    """Return the unlabelled parts to review, most urgent first.

    Flagged parts (``score >= threshold``) come first; then the audit samples (passed parts
    drawn at random: they are there to measure the miss rate, so every one of them must be
    labelled, and they are few); then the good parts within ``near_margin`` of the threshold
    (``score >= threshold * (1 - near_margin)``). Within each group, highest score first.
    Other parts further below the threshold are not in the queue. An audit sample that a
    newer threshold flags is listed with the flagged parts (still marked ``audit``). Parts the
    feedback scorer decided are judged by its probability and come first with the flagged
    parts, the most uncertain first (see the module docstring).

    Args:
        session: The caller's session.
        project_id: The project.
        near_margin: Relative margin below the threshold that still needs a human look.
        limit: At most this many items.

    Returns:
        The queue items.
    """
    statement = _queue_select(session, project_id, near_margin)
    if limit is not None:
        statement = statement.limit(max(0, int(limit)))
    return [QueueItem(**row._asdict()) for row in session.execute(statement)]


def queue_size(
    session: Session, project_id: int, *, near_margin: float = DEFAULT_NEAR_MARGIN
) -> int:
    """Return how many parts :func:`review_queue` would list (without a limit)."""
    inner = _queue_select(session, project_id, near_margin).order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


def flagged_by_model(session: Session, image_id: int) -> bool:
    """Whether the model flags the image now, judged as :func:`review_queue` judges a part.

    The image's latest stored prediction (the active version's when it has one) is flagged
    when ``score >= `` its version's current threshold and, when the triage model decided it,
    ``p(defect) >= `` the model's current threshold (the cascade); the version's threshold is
    the one stored with the prediction when the version has none. Whether the image is
    labelled does not matter, so a relabelled part is judged too. What the inspector saw when
    they labelled it: read before the label is recorded.

    Returns:
        False when the image does not exist or has no prediction.
    """
    project_id = session.scalar(select(Image.project_id).where(Image.id == image_id))
    if project_id is None:
        return False
    latest = latest_predictions(
        project_id, prefer_version_id=active_version_id(session, project_id)
    )
    scorer = aliased(ModelVersion, name="scorer_version")
    row = session.execute(
        select(
            latest.c.score,
            func.coalesce(ModelVersion.threshold, latest.c.threshold).label("threshold"),
            latest.c.defect_probability,
            func.coalesce(scorer.threshold, DEFAULT_PROBABILITY_THRESHOLD).label("p_threshold"),
        )
        .select_from(latest)
        .join(ModelVersion, ModelVersion.id == latest.c.model_version_id)
        .outerjoin(scorer, scorer.id == latest.c.scorer_version_id)
        .where(latest.c.image_id == image_id)
    ).first()
    if row is None:
        return False
    screened = bool(row.score >= row.threshold)
    if row.defect_probability is not None:  # the triage model decides among screened parts
        return screened and bool(row.defect_probability >= row.p_threshold)
    return screened


def record_review(
    session: Session,
    *,
    image_id: int,
    user: User,
    label: str,
    defect_type: str | None = None,
    note: str | None = None,
    seconds_spent: float | None = None,
    region: dict[str, Any] | None = None,
) -> Review:
    """Append the user's label for an image (flushed, so it has an id).

    A defect type the project does not know yet is added to its vocabulary.

    Args:
        session: The caller's session.
        image_id: The labelled image.
        user: The reviewer (inspector, manager or admin).
        label: ``"good"`` or ``"defect"``.
        defect_type: The kind of defect (only with ``"defect"``; blank means none).
        note: Free text (blank means none).
        seconds_spent: Time spent on the part, >= 0.
        region: The box drawn around the defect (only with ``"defect"``), see
            :func:`defect_region`.

    Returns:
        The new review.

    Raises:
        PermissionDenied: If the user may not review.
        LookupError: If the image does not exist.
        ValueError: On an unknown label, a defect type or box on a good part, a box outside
            the image, or negative seconds.
    """
    reviewer = require_session_role(session, user, *CAN_REVIEW)
    if label not in {member.value for member in Label}:
        raise ValueError(f"A label must be 'good' or 'defect', got {label!r}.")
    image = session.get(Image, image_id)
    if image is None:
        raise LookupError(f"There is no image with id {image_id}.")
    if seconds_spent is not None and not seconds_spent >= 0:
        raise ValueError(f"Seconds spent must be zero or more, got {seconds_spent!r}.")
    box = defect_region(region) if region is not None else None
    if box is not None and label != Label.DEFECT:
        raise ValueError("A defect box can only be drawn with the label 'defect'.")
    defect_type = (defect_type or "").strip() or None
    if defect_type is not None:
        if label != Label.DEFECT:
            raise ValueError("A defect type can only be given with the label 'defect'.")
        add_defect_type(session, image.project_id, defect_type, user=reviewer)
    review = add_review(
        session,
        image_id=image_id,
        reviewer_id=reviewer.id,
        label=label,
        defect_type=defect_type,
        note=(note or "").strip() or None,
        seconds_spent=seconds_spent,
        region=box,
    )
    announce_review(session, review)
    return review


def defect_region(region: dict[str, Any]) -> dict[str, float]:
    """Check a box drawn around a defect: ``{"x", "y", "w", "h"}`` as fractions of the image.

    ``x``, ``y`` is the top-left corner from the image's top-left; ``w``, ``h`` the size. A box
    that pokes out of the image by rounding (up to 1%) is clipped to it.

    Returns:
        The box with four floats, rounded to 4 decimals.

    Raises:
        ValueError: If a value is missing or not a number, the box is empty, or it lies
            outside the image.
    """
    try:
        x, y, w, h = (float(region[key]) for key in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            "A defect box needs the numbers x, y, w and h (fractions of the image)."
        ) from err
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError("A defect box needs a positive width and height.")
    slack = 0.01
    if x < -slack or y < -slack or x + w > 1 + slack or y + h > 1 + slack:
        raise ValueError("A defect box must lie inside the image (fractions from 0 to 1).")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(1.0, x + w), min(1.0, y + h)
    return {"x": round(x0, 4), "y": round(y0, 4), "w": round(x1 - x0, 4), "h": round(y1 - y0, 4)}


def undo_last(session: Session, *, user: User) -> Review | None:
    """Cancel the user's own latest counting review (see :func:`db.review_log.undo_last_review`).

    Returns:
        The undo row, or ``None`` when there is nothing left to undo.

    Raises:
        PermissionDenied: If the user may not review.
    """
    reviewer = require_session_role(session, user, *CAN_REVIEW)
    undo = undo_last_review(session, reviewer_id=reviewer.id)
    if undo is not None:
        announce_review(session, undo)
    return undo


def _queue_select(session: Session, project_id: int, near_margin: float) -> Select:
    if not near_margin >= 0:
        raise ValueError(f"near_margin must be zero or more, got {near_margin!r}.")
    # The active version's prediction first; an image it has not scored (yet) keeps the
    # latest prediction of any version.
    latest = latest_predictions(
        project_id, prefer_version_id=active_version_id(session, project_id), unlabelled_only=True
    )
    threshold = func.coalesce(ModelVersion.threshold, latest.c.threshold)
    scorer = aliased(ModelVersion, name="scorer_version")
    probability = latest.c.defect_probability
    probability_threshold = func.coalesce(scorer.threshold, DEFAULT_PROBABILITY_THRESHOLD)
    by_scorer = probability.is_not(None)
    # The one verdict rule, adcore.verdicts.verdict_for (flagged when the value reaches its
    # threshold), restated in SQL: the store cannot call Python. Keep the two the same.
    # The cascade: the triage model only decides parts the screen (the detector at its current
    # threshold) flags; a part the screen no longer flags is not sent to a human by it.
    screened = latest.c.score >= threshold
    scorer_flagged = by_scorer & screened & (probability >= probability_threshold)
    scorer_near = (
        by_scorer & screened & (probability >= probability_threshold * (1.0 - float(near_margin)))
    )
    detector_flagged = ~by_scorer & (latest.c.score >= threshold)
    detector_near = ~by_scorer & (
        latest.c.score >= threshold - func.abs(threshold) * float(near_margin)
    )
    flagged = scorer_flagged | detector_flagged
    audit = latest.c.audit.is_(True)
    verdict = case((flagged, Label.DEFECT.value), else_=Label.GOOD.value)
    urgency = case((scorer_near | detector_flagged, 0), (audit, 1), else_=2)
    # Scorer-decided parts: the most uncertain first; the detector's: the highest score first.
    uncertainty = case((by_scorer, func.abs(probability - probability_threshold)), else_=2.0)
    return (
        select(
            latest.c.image_id,
            latest.c.prediction_id,
            Image.original_name,
            Image.stored_path,
            latest.c.score,
            threshold.label("threshold"),
            verdict.label("verdict"),
            latest.c.predicted_at.label("created_at"),
            latest.c.audit,
            probability.label("defect_probability"),
            case((by_scorer, probability_threshold)).label("probability_threshold"),
        )
        .select_from(latest)
        .join(Image, Image.id == latest.c.image_id)
        .join(ModelVersion, ModelVersion.id == latest.c.model_version_id)
        .outerjoin(scorer, scorer.id == latest.c.scorer_version_id)
        .where(scorer_near | detector_near | audit)
        .order_by(urgency, uncertainty, latest.c.score.desc(), latest.c.image_id)
    )

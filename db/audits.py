"""Audited parts: passed parts drawn at random for review, and what their labels say.

A prediction with ``audit`` true belongs to a part that passed its first inspection and was
drawn for review (:mod:`adcore.audit` draws, :mod:`services.inspection` stores the flag; later
predictions of a drawn part carry it). An image is *audited* when any of its predictions has
the flag. It counts once, by its *current* label (``images.current_review_id``): two
reviewers labelling the same part add one audited part, not two, and an undone label takes
the part out of the counts until it is labelled again. It is *missed* when that label is
``defect``: a defect the threshold let through.

``since`` / ``until`` refer to when the part was drawn (its first audited prediction), i.e.
when the line let it pass, not when it was reviewed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Subquery, case, func, select
from sqlalchemy.orm import Session

from db.base import Label
from db.models import Image, Prediction, Review
from db.periods import require_aware

__all__ = [
    "AuditCounts",
    "FirstDecision",
    "audit_counts",
    "drawn_for_audit",
    "first_decision",
    "unlabelled_audits",
]


class AuditCounts(NamedTuple):
    """Labelled audited parts and, of those, the ones labelled defect (missed by the model)."""

    n_missed: int
    n_audited: int


class FirstDecision(NamedTuple):
    """How the line decided a part at its first inspection (its first prediction)."""

    region: str | None
    audit_probability: float | None
    audit: bool


def first_decision(session: Session, image_id: int) -> FirstDecision | None:
    """The region, audit odds and audit flag of an image's first prediction; ``None`` if none.

    Inspection carries them to every later prediction of the part (re-scoring): the line
    decided the part once, and a part is drawn at most once.
    """
    row = session.execute(
        select(Prediction.decision_region, Prediction.audit_probability, Prediction.audit)
        .where(Prediction.image_id == image_id)
        .order_by(Prediction.created_at, Prediction.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return FirstDecision(row[0], None if row[1] is None else float(row[1]), bool(row[2]))


def drawn_for_audit(session: Session, image_id: int) -> bool | None:
    """Whether an image was drawn for audit; ``None`` when it has no prediction yet.

    Inspection asks this before storing a new prediction: an image scored before is never drawn
    again (one draw per part, at its first inspection), but keeps its flag.
    """
    n_predictions, n_audited = session.execute(
        select(
            func.count(Prediction.id),
            func.coalesce(func.sum(case((Prediction.audit.is_(True), 1), else_=0)), 0),
        ).where(Prediction.image_id == image_id)
    ).one()
    if not n_predictions:
        return None
    return bool(n_audited)


def audit_counts(
    session: Session,
    project_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditCounts:
    """Count a project's labelled audited parts and the missed ones, each part once.

    Args:
        session: The caller's session.
        project_id: The project.
        since: Only parts drawn at or after this moment (timezone-aware).
        until: Only parts drawn before this moment (timezone-aware).

    Returns:
        ``(n_missed, n_audited)``, ready for :func:`adcore.audit.miss_rate_estimate`.

    Raises:
        ValueError: If ``since`` or ``until`` is a naive datetime.
    """
    drawn = _drawn_parts(project_id, since=since, until=until)
    missed = case((Review.label == Label.DEFECT.value, 1), else_=0)
    n_audited, n_missed = session.execute(
        select(func.count(), func.coalesce(func.sum(missed), 0))
        .select_from(drawn)
        .join(Image, Image.id == drawn.c.image_id)
        .join(Review, Review.id == Image.current_review_id)
    ).one()
    return AuditCounts(n_missed=int(n_missed), n_audited=int(n_audited))


def unlabelled_audits(session: Session, project_id: int) -> int:
    """How many of a project's audited parts have no current label (waiting for review)."""
    drawn = _drawn_parts(project_id)
    return int(
        session.scalar(
            select(func.count())
            .select_from(drawn)
            .join(Image, Image.id == drawn.c.image_id)
            .where(Image.current_review_id.is_(None))
        )
        or 0
    )


def _drawn_parts(
    project_id: int, *, since: datetime | None = None, until: datetime | None = None
) -> Subquery:
    """One row per audited image of the project: ``image_id`` and ``drawn_at``.

    ``drawn_at`` is the time of the image's first audited prediction; ``since`` / ``until``
    bound it (``HAVING``, so a part re-scored later still counts when it was drawn).
    """
    require_aware(since=since, until=until)
    drawn_at = func.min(Prediction.created_at)
    statement: Any = (
        select(Prediction.image_id, drawn_at.label("drawn_at"))
        .join(Image, Image.id == Prediction.image_id)
        .where(Image.project_id == project_id, Prediction.audit.is_(True))
        .group_by(Prediction.image_id)
    )
    if since is not None:
        statement = statement.having(drawn_at >= since)
    if until is not None:
        statement = statement.having(drawn_at < until)
    return statement.subquery("drawn_parts")

"""Every decided part of a project, as the line decided it, with its current label.

A part (an image) may have several predictions (re-scoring after an instant update or a
promotion), but the line decided it once: at its *first* prediction (lowest ``created_at``,
then lowest id), whose decision region, audit probability and audit flag later predictions
carry anyway. :func:`loop_parts` gives one row per predicted image of a project, from that
first prediction, with the image's current label (``images.current_review_id``; ``None`` when
unlabelled). ``since`` / ``until`` bound the first prediction's time, i.e. when the line
decided the part, not when it was reviewed.

The first prediction is found with a window function (``row_number()`` over each image's
predictions by time, then id), portable SQL that SQLite (3.25+) and PostgreSQL answer in one
pass. :func:`loop_part_counts` gives the same parts counted in SQL by the hour or day in which
they were decided and everything the estimate reads (region, odds, audit flag, verdict, label,
model version): a few hundred rows instead of one per part, which is what the Dashboard reads
(fetching tens of thousands of rows costs more than the query). The estimate itself is
:mod:`services.loop_rates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any, Literal, NamedTuple

from sqlalchemy import Subquery, func, select
from sqlalchemy.orm import Session

from db.models import Image, Prediction, Review
from db.periods import raw_timestamp, require_aware, sql_hour_start, sql_period_start, utc_datetime

__all__ = ["LoopCount", "LoopPart", "loop_part_counts", "loop_parts"]


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


class LoopCount(NamedTuple):
    """Decided parts that share their period and everything the estimate reads.

    Attributes:
        decided_in: The start of the UTC hour (``by="hour"``) or day (``by="day"``) in which
            the line decided them (aware UTC).
        region: Their decision region (``None``: decided before regions were stored).
        audit_probability: Their audit odds (``None`` with ``region``).
        audited: Whether they were drawn for audit.
        verdict: Their first prediction's verdict.
        label: Their current human label (``None``: unlabelled).
        model_version_id: The model version that decided them.
        n: How many parts.
    """

    decided_in: datetime
    region: str | None
    audit_probability: float | None
    audited: bool
    verdict: str
    label: str | None
    model_version_id: int
    n: int


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
    first = _first_predictions(project_id, since, until)
    rows = session.execute(
        select(first.c.image_id, raw_timestamp(first.c.created_at), *_decision_columns(first))
        .join(Image, Image.id == first.c.image_id)
        .outerjoin(Review, Review.id == Image.current_review_id)
        .order_by(first.c.image_id)
    )
    return [
        LoopPart(image_id, utc_datetime(decided_at), *_decision(decision))
        for image_id, decided_at, *decision in rows
    ]


def loop_part_counts(
    session: Session,
    project_id: int,
    *,
    by: Literal["hour", "day"] = "day",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[LoopCount]:
    """The parts of :func:`loop_parts`, counted per UTC hour or day and per estimate input.

    Args:
        session: The caller's session.
        project_id: The project.
        by: ``"hour"`` (enough for shifts) or ``"day"`` (days and weeks).
        since: Only parts first predicted at or after this moment (timezone-aware).
        until: Only parts first predicted before this moment (timezone-aware).

    Returns:
        The counts, oldest first (their order within a period is unspecified).

    Raises:
        ValueError: On a naive ``since`` / ``until`` or an unknown ``by``.
    """
    if by not in ("hour", "day"):
        raise ValueError(f"by must be 'hour' or 'day', got {by!r}.")
    first = _first_predictions(project_id, since, until)
    period = (
        sql_hour_start(first.c.created_at)
        if by == "hour"
        else sql_period_start(first.c.created_at, "day")
    )
    keys = (raw_timestamp(period), *_decision_columns(first))
    rows = session.execute(
        select(*keys, func.count())
        .select_from(first)
        .join(Image, Image.id == first.c.image_id)
        .outerjoin(Review, Review.id == Image.current_review_id)
        .group_by(*keys)
        .order_by(keys[0])
    )
    return [
        LoopCount(utc_datetime(_as_moment(start)), *_decision(decision), int(n))
        for start, *decision, n in rows
    ]


def _decision_columns(first: Subquery) -> tuple[Any, ...]:
    """What the estimate reads of a first prediction, in :class:`LoopPart`'s field order.

    The label comes from the image's current review (the query joins ``Review`` on
    ``images.current_review_id``).
    """
    return (
        first.c.decision_region,
        first.c.audit_probability,
        first.c.audit,
        first.c.verdict,
        Review.label,
        first.c.model_version_id,
    )


def _decision(values: Sequence[Any]) -> tuple[Any, ...]:
    """The values of :func:`_decision_columns` as the named tuples hold them."""
    region, probability, audited, verdict, label, model_version_id = values
    probability = None if probability is None else float(probability)
    return region, probability, bool(audited), verdict, label, model_version_id


def _as_moment(start: Any) -> Any:
    """A period start as :func:`db.periods.utc_datetime` reads it (a date is its midnight)."""
    if isinstance(start, str) and len(start) == 10:
        return f"{start} 00:00:00"
    if isinstance(start, date) and not isinstance(start, datetime):
        return datetime.combine(start, time(0))
    return start


def _first_predictions(project_id: int, since: datetime | None, until: datetime | None) -> Subquery:
    """Each predicted image's first prediction (by time, then id), within ``since``/``until``.

    Raises:
        ValueError: If ``since`` or ``until`` is a naive datetime.
    """
    require_aware(since=since, until=until)
    rank = func.row_number().over(
        partition_by=Prediction.image_id, order_by=(Prediction.created_at, Prediction.id)
    )
    ranked = (
        select(
            Prediction.image_id,
            Prediction.created_at,
            Prediction.decision_region,
            Prediction.audit_probability,
            Prediction.audit,
            Prediction.verdict,
            Prediction.model_version_id,
            rank.label("rank"),
        )
        .join(Image, Image.id == Prediction.image_id)
        .where(Image.project_id == project_id)
        .subquery("ranked_predictions")
    )
    first: Any = select(ranked).where(ranked.c.rank == 1)
    if since is not None:
        first = first.where(ranked.c.created_at >= since)
    if until is not None:
        first = first.where(ranked.c.created_at < until)
    return first.subquery("first_predictions")

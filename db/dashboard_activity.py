"""Dashboard numbers about the work itself: review throughput, and a cache key for the page.

Re-exported by :mod:`db.dashboard`, which pages import.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, ModelVersion, Prediction, Project, Review, User
from db.periods import Period, period_starts, raw_timestamp


def data_version(session: Session, project_id: int) -> tuple[Any, ...]:
    """A cheap fingerprint of what the dashboard reads, for caching its results in the UI.

    It changes whenever a review, prediction or image is added (reviews are append-only, so
    their largest id and count move on every change, undo rows included) and whenever a
    version's threshold or status or the project's active version changes. Use it as part of
    a cache key, e.g. ``st.cache_data`` on ``(project_id, data_version(...))``, so reruns of
    the page cost only this query until the data really changes.

    Returns:
        A hashable tuple.
    """
    totals = session.execute(
        select(
            *(
                select(aggregate(model.id)).scalar_subquery()
                for model in (Review, Prediction, Image)
                for aggregate in (func.max, func.count)
            ),
            select(Project.active_model_version_id)
            .where(Project.id == project_id)
            .scalar_subquery(),
        )
    ).one()
    versions = session.execute(
        select(ModelVersion.id, ModelVersion.threshold, ModelVersion.status)
        .where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.id)
    ).all()
    return (*totals, *(tuple(version) for version in versions))


def throughput(
    session: Session,
    project_id: int,
    *,
    period: Period = "day",
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Return reviews per reviewer and period with the median time spent per review.

    Every label given counts (also ones later corrected or undone: they were work done);
    undo rows do not.

    Args:
        session: The caller's session.
        project_id: The project.
        period: ``"day"`` or ``"week"``.
        since: Only reviews made at or after this (aware) moment; ``None`` for all.

    Returns:
        ``{"reviewer", "period_start", "n_reviews", "median_seconds"}`` dicts ordered by
        period then reviewer; ``median_seconds`` is ``None`` when no time was recorded.
    """
    start_of = period_starts(period)
    # A non-correlated IN (the project's image ids, gathered once) costs less than a
    # correlated EXISTS per review.
    in_project = Review.image_id.in_(select(Image.id).where(Image.project_id == project_id))
    statement = select(
        Review.reviewer_id, raw_timestamp(Review.created_at), Review.seconds_spent
    ).where(Review.is_undo.is_(False), in_project)
    if since is not None:
        statement = statement.where(Review.created_at >= since)
    names = {user_id: name for user_id, name in session.execute(select(User.id, User.name))}
    counts: dict[tuple[date, str], int] = defaultdict(int)
    seconds: dict[tuple[date, str], list[float]] = defaultdict(list)
    for reviewer_id, created_at, spent in session.execute(statement):
        key = (start_of(created_at), names[reviewer_id])
        counts[key] += 1
        if spent is not None:
            seconds[key].append(spent)
    return [
        {
            "reviewer": reviewer,
            "period_start": start,
            "n_reviews": n_reviews,
            "median_seconds": (
                statistics.median(seconds[(start, reviewer)])
                if (start, reviewer) in seconds
                else None
            ),
        }
        for (start, reviewer), n_reviews in sorted(counts.items())
    ]

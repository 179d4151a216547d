"""Dashboard numbers about the work itself: review throughput, and a cache key for the page.

Re-exported by :mod:`db.dashboard`, which pages import.
"""

from __future__ import annotations

import statistics
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, ModelVersion, Prediction, Project, Review, User
from db.periods import Period, period_starts, raw_timestamp, sql_period_start


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
    # ``image_id + 0`` makes SQLite read the reviews in table order instead of looking each
    # project image's reviews up through the index (portable: PostgreSQL plans the same).
    period_key = raw_timestamp(sql_period_start(Review.created_at, period)).label("start")
    in_project = (Review.image_id + 0).in_(select(Image.id).where(Image.project_id == project_id))
    conditions = [Review.is_undo.is_(False), in_project]
    if since is not None:
        conditions.append(Review.created_at >= since)
    names = {user_id: name for user_id, name in session.execute(select(User.id, User.name))}
    if session.get_bind().dialect.name == "sqlite":
        groups = _groups_in_python(session, period, conditions)
    else:
        groups = _groups_in_sql(session, period_key, conditions)
    rows = [
        {
            "reviewer": names[reviewer_id],
            "period_start": start if isinstance(start, date) else date.fromisoformat(start),
            "n_reviews": n_reviews,
            "median_seconds": median,
        }
        for (reviewer_id, start), (n_reviews, median) in groups.items()
    ]
    rows.sort(key=lambda row: (row["period_start"], row["reviewer"]))
    return rows


Groups = dict[tuple[int, Any], tuple[int, float | None]]
"""``{(reviewer id, period start): (reviews, median seconds or None)}``."""


def _groups_in_sql(session: Session, period_key: Any, conditions: list[Any]) -> Groups:
    """Count and median per group in one grouped pass (PostgreSQL).

    ``percentile_cont(0.5)`` is the median as :func:`statistics.median` gives it (the mean of
    the two middle values for an even count) and skips reviews with no time recorded. An
    ordered-set aggregate SQLite does not have: SQLite groups in Python
    (:func:`_groups_in_python`).
    """
    median = func.percentile_cont(0.5).within_group(Review.seconds_spent)
    rows = session.execute(
        select(Review.reviewer_id, period_key, func.count(), median)
        .where(*conditions)
        .group_by(Review.reviewer_id, period_key)
    )
    return {
        (reviewer_id, start): (int(n), None if middle is None else float(middle))
        for reviewer_id, start, n, middle in rows
    }


def _groups_in_python(session: Session, period: Period, conditions: list[Any]) -> Groups:
    """Count and median per group in one Python pass over the rows.

    Rows are grouped by reviewer and the stored timestamp's day (SQLite stores UTC text, so
    its first ten characters), then the few day groups are folded into periods.
    """
    statement = select(
        Review.reviewer_id, raw_timestamp(Review.created_at), Review.seconds_spent
    ).where(*conditions)
    by_day: dict[tuple[int, Any], list[float | None]] = {}
    # A Core execute skips the ORM's per-row work: the rows are plain values.
    for reviewer_id, created_at, spent in session.connection().execute(statement):
        day = created_at[:10] if isinstance(created_at, str) else created_at
        group = by_day.get((reviewer_id, day))
        if group is None:
            group = by_day[(reviewer_id, day)] = []
        group.append(spent)
    start_of = period_starts(period)
    spent_by_group: dict[tuple[int, Any], list[float | None]] = {}
    for (reviewer_id, day), spent in by_day.items():
        spent_by_group.setdefault((reviewer_id, start_of(day)), []).extend(spent)
    groups: Groups = {}
    for key, spent in spent_by_group.items():
        timed = [value for value in spent if value is not None]
        groups[key] = (len(spent), statistics.median(timed) if timed else None)
    return groups

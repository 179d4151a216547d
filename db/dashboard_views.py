"""More numbers for the manager's dashboard: defect types, second opinions, drift.

(The load, parts sent to a human per period, is :mod:`services.line_trends`.)

* :func:`defect_type_counts`: current defect labels by type, for a Pareto chart;
* :func:`second_opinions`: each reviewer's latest label of every part two or more reviewers
  labelled, for inter-inspector agreement (the maths is in :mod:`services.dashboard_stats`);
* :func:`good_part_scores`: the scores a model version gave parts that are good (confirmed, or
  passed and never labelled otherwise), oldest first, for the drift alarm.

Portable SQL only; periods and per-image reductions happen in Python (see :mod:`db.periods`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import combinations
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from db.base import Label
from db.models import Image, Prediction, Review, ReviewerLabel, User
from db.periods import raw_timestamp, utc_datetime


def defect_type_counts(session: Session, project_id: int) -> list[tuple[str, int]]:
    """Parts currently labelled defect, by defect type (``"(unspecified)"`` when none given).

    Returns:
        ``(defect type, parts)`` pairs, most frequent first (ties by name).
    """
    rows = session.execute(
        select(Review.defect_type, func.count())
        .select_from(Image)
        .join(Review, Review.id == Image.current_review_id)
        .where(Image.project_id == project_id, Review.label == Label.DEFECT.value)
        .group_by(Review.defect_type)
    )
    counts: Counter[str] = Counter()
    for defect_type, n in rows:
        counts[defect_type or "(unspecified)"] += n
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def second_opinions(session: Session, project_id: int) -> dict[int, dict[str, str]]:
    """Each reviewer's latest label of every part two or more reviewers labelled.

    A reviewer's undone label no longer counts as theirs (the undo row supersedes it). Read
    from ``reviewer_labels`` (:mod:`db.models.reviewer_labels`), the log's answer per
    (part, reviewer).

    Returns:
        ``{image_id: {reviewer name: label}}`` for parts with labels from two or more reviewers.
    """
    shared = (
        select(ReviewerLabel.image_id)
        .where(ReviewerLabel.project_id == project_id)
        .group_by(ReviewerLabel.image_id)
        .having(func.count() >= 2)
    )
    statement = (
        select(ReviewerLabel.image_id, User.name, ReviewerLabel.label)
        .join(User, User.id == ReviewerLabel.reviewer_id)
        .where(ReviewerLabel.project_id == project_id, ReviewerLabel.image_id.in_(shared))
        .order_by(ReviewerLabel.image_id)
    )
    opinions: dict[int, dict[str, str]] = {}
    for image_id, name, label in session.execute(statement):
        opinions.setdefault(image_id, {})[name] = label
    return opinions


PairTables = dict[tuple[str, str], Counter[tuple[str, str]]]
"""``{(first reviewer, second reviewer): {(first's label, second's label): parts}}``."""


def pair_label_tables(session: Session, project_id: int) -> PairTables:
    """For every two reviewers, how their latest labels of the parts both labelled pair up.

    The same counts as pairing :func:`second_opinions` up per part (names sorted within a
    pair), counted in SQL: ``reviewer_labels`` joined with itself on the part.

    Returns:
        The tables, ready for :func:`services.dashboard_stats.agreement_from_tables`.
    """
    one, other = aliased(ReviewerLabel, name="one"), aliased(ReviewerLabel, name="other")
    names = {user_id: name for user_id, name in session.execute(select(User.id, User.name))}
    rows = session.execute(
        select(one.reviewer_id, other.reviewer_id, one.label, other.label, func.count())
        .join(other, (other.image_id == one.image_id) & (one.reviewer_id < other.reviewer_id))
        .where(one.project_id == project_id)
        .group_by(one.reviewer_id, other.reviewer_id, one.label, other.label)
    )
    tables: PairTables = {}
    for one_id, other_id, one_label, other_label, n in rows:
        (first, first_label), (second, second_label) = sorted(
            ((names[one_id], one_label), (names[other_id], other_label))
        )
        tables.setdefault((first, second), Counter())[(first_label, second_label)] += int(n)
    return tables


def pair_tables_from_opinions(opinions: Mapping[int, Mapping[str, str]]) -> PairTables:
    """Pair up each part's reviewers (names sorted) and count how their labels pair up.

    Args:
        opinions: ``{part id: {reviewer: label}}`` (:func:`second_opinions`).

    Returns:
        The :data:`PairTables` of those parts.
    """
    tables: PairTables = {}
    for by_reviewer in opinions.values():
        for first, second in combinations(sorted(by_reviewer), 2):
            labels = (by_reviewer[first], by_reviewer[second])
            tables.setdefault((first, second), Counter())[labels] += 1
    return tables


def good_part_scores(
    session: Session, project_id: int, model_version_id: int, *, ends: int | None = None
) -> list[tuple[Any, float]]:
    """Scores the version gave parts that are good, oldest first.

    A part counts as good when its current label is good, or when it has no label and the
    version passed it (what the line treated as good). One score per part: the version's first.

    Returns:
        ``(scored at (aware UTC datetime), score)`` pairs in scoring order; with ``ends``,
        only the first ``ends`` and the last ``ends`` of them when there are more than
        ``2 * ends`` (all a drift test of two windows of ``ends`` parts reads).
    """
    first = (
        select(func.min(Prediction.id))
        .join(Image, Image.id == Prediction.image_id)
        .where(Image.project_id == project_id, Prediction.model_version_id == model_version_id)
        .group_by(Prediction.image_id)
    )
    statement = (
        select(Prediction.id, raw_timestamp(Prediction.created_at), Prediction.score)
        .join(Image, Image.id == Prediction.image_id)
        .outerjoin(Review, Review.id == Image.current_review_id)
        .where(
            Prediction.id.in_(first),
            or_(
                Review.label == Label.GOOD.value,
                Image.current_review_id.is_(None) & (Prediction.verdict == Label.GOOD.value),
            ),
        )
        .order_by(Prediction.id)
    )
    if ends is None:
        return [(utc_datetime(at), float(score)) for _, at, score in session.execute(statement)]
    # Only the ids of every good part, then the two ends' rows (at most 2 * ends ids).
    ids = list(session.scalars(statement.with_only_columns(Prediction.id)))
    if len(ids) > 2 * ends:
        ids = ids[:ends] + ids[-ends:]
    rows = session.execute(
        select(Prediction.id, raw_timestamp(Prediction.created_at), Prediction.score).where(
            Prediction.id.in_(ids)
        )
    )
    by_id = {prediction_id: (utc_datetime(at), float(score)) for prediction_id, at, score in rows}
    return [by_id[prediction_id] for prediction_id in ids]

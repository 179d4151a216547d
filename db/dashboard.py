"""Numbers for the dashboard: outcomes of reviewed parts, error rates, counts and throughput.

Everything returns plain dataclasses, dicts and lists, ready for plotly. Counting happens in
SQL (``GROUP BY``) where it is portable; what is not (reporting periods, medians) happens in
one Python pass over narrow rows. Periods are UTC days or ISO weeks starting on Monday.

An *outcome* pairs a reviewed image's latest prediction of a model version with the image's
current label. Verdicts are the ones stored with the predictions: the dashboard reports what
the line actually decided, whereas the review queue judges against the current threshold.

The rates over time and the confusion matrix are per model *lineage* (:mod:`db.model_lineages`):
an instant update or a recalibration is a revision of the same model, so its parts stay in the
model's figures. A part scored by several revisions of a model counts once there, with its
latest prediction among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from db.base import Label
from db.dashboard_activity import data_version, throughput
from db.model_families import active_version_id
from db.model_lineages import model_label, same_model_ids
from db.models import Image, ModelVersion, Prediction, Review, User
from db.periods import Period, period_start, raw_timestamp, sql_period_start, utc_datetime
from db.predictions import latest_prediction_ids

__all__ = [
    "Outcome",
    "Period",
    "RatePoint",
    "ScoreDistribution",
    "confusion",
    "data_version",
    "error_rates_over_time",
    "labelled_scores",
    "period_start",
    "review_counts",
    "reviewed_outcomes",
    "score_distribution",
    "score_ranges",
    "throughput",
]


@dataclass(frozen=True)
class Outcome:
    """A reviewed image's latest prediction by one model version, with its current label."""

    image_id: int
    model_version_id: int
    version: int
    score: float
    threshold: float
    verdict: str
    label: str
    reviewer: str
    reviewed_at: datetime
    predicted_at: datetime


@dataclass(frozen=True)
class RatePoint:
    """Miss and false-alarm rates of one model (all its revisions) over one period of reviews.

    ``model_number`` is the lineage (:mod:`db.model_lineages`), :attr:`model` its label.
    ``fnr`` is ``None`` without labelled defects in the period, ``fpr`` without good parts.
    ``n_missed`` of the ``n_defect`` defects were passed; ``n_false_alarm`` of the ``n_good``
    good parts were flagged (the counts behind the rates, for their intervals).
    """

    period_start: date
    model_number: int
    fnr: float | None
    fpr: float | None
    n_defect: int
    n_good: int
    n_missed: int = 0
    n_false_alarm: int = 0

    @property
    def model(self) -> str:
        """The model's label, e.g. ``"v2"``."""
        return model_label(self.model_number)


class ScoreDistribution(NamedTuple):
    """Scores of every scored image (label ``None`` when unreviewed) and the active threshold."""

    points: list[tuple[float, str | None]]
    threshold: float | None


def _outcome_rows(
    session: Session, project_id: int, model_version_id: int | None, *columns: Any
) -> Any:
    """SELECT ``columns`` over (labelled image x version that scored it) of a project.

    ``Review`` is the image's current review (joined on ``images.current_review_id``) and
    ``Prediction`` the version's latest prediction of it (the one not ``superseded``).
    """
    latest = (Prediction.image_id == Image.id) & Prediction.superseded.is_(False)
    if model_version_id is not None:
        latest &= Prediction.model_version_id == model_version_id
    same_project = (ModelVersion.id == Prediction.model_version_id) & (
        ModelVersion.project_id == Image.project_id
    )
    return (
        select(*columns)
        .select_from(Image)
        .join(Review, Review.id == Image.current_review_id)
        .join(Prediction, latest)
        .join(ModelVersion, same_project)
        .where(Image.project_id == project_id)
    )


def reviewed_outcomes(
    session: Session, project_id: int, *, model_version_id: int | None = None
) -> list[Outcome]:
    """Return one outcome per (reviewed image, model version that scored it).

    Args:
        session: The caller's session.
        project_id: The project.
        model_version_id: Only this version's outcomes; ``None`` for every version.

    Returns:
        Outcomes ordered by review time, image and version.
    """
    statement = _outcome_rows(
        session,
        project_id,
        model_version_id,
        Image.id,
        ModelVersion.id,
        Prediction.score,
        Prediction.threshold,
        Prediction.verdict,
        Review.label,
        Review.reviewer_id,
        raw_timestamp(Review.created_at).label("reviewed_at"),
        raw_timestamp(Prediction.created_at).label("predicted_at"),
    )
    # Small lookups and a Python sort cost less than joining, converting and sorting in SQL.
    names = {user_id: name for user_id, name in session.execute(select(User.id, User.name))}
    in_project = ModelVersion.project_id == project_id
    versions = {
        version_id: number
        for version_id, number in session.execute(
            select(ModelVersion.id, ModelVersion.version).where(in_project)
        )
    }
    outcomes = [
        Outcome(
            image_id,
            version_id,
            versions[version_id],
            score,
            threshold,
            verdict,
            label,
            names[reviewer_id],
            utc_datetime(reviewed_at),
            utc_datetime(predicted_at),
        )
        for (
            image_id,
            version_id,
            score,
            threshold,
            verdict,
            label,
            reviewer_id,
            reviewed_at,
            predicted_at,
        ) in session.execute(statement)
    ]
    outcomes.sort(key=lambda outcome: (outcome.reviewed_at, outcome.image_id, outcome.version))
    return outcomes


def error_rates_over_time(
    session: Session, project_id: int, *, period: Period = "day"
) -> list[RatePoint]:
    """Return FNR and FPR per review period and model lineage.

    A reviewed image counts once per model that scored it, with its latest prediction among
    the model's revisions.

    Args:
        session: The caller's session.
        project_id: The project.
        period: ``"day"`` or ``"week"``: outcomes are grouped by their current label's date.

    Returns:
        Points ordered by period, then model number.
    """
    # Counted in SQL per (period, model): one row per group comes back, not one per part.
    period_key = raw_timestamp(sql_period_start(Review.created_at, period))
    defect, good = Label.DEFECT.value, Label.GOOD.value
    is_defect = Review.label == defect
    later, later_version = aliased(Prediction), aliased(ModelVersion)
    rescored_later = exists().where(  # by a revision of the same model
        later.image_id == Prediction.image_id,
        later.superseded.is_(False),
        later_version.id == later.model_version_id,
        later_version.project_id == ModelVersion.project_id,
        later_version.model_number == ModelVersion.model_number,
        _after(later, Prediction),
    )
    statement = (
        _outcome_rows(
            session,
            project_id,
            None,
            period_key,
            ModelVersion.model_number,
            func.sum(case((is_defect, 1), else_=0)),
            func.sum(case((is_defect & (Prediction.verdict == good), 1), else_=0)),
            func.sum(case((is_defect, 0), else_=1)),
            func.sum(case((is_defect, 0), (Prediction.verdict == good, 0), else_=1)),
        )
        .where(~rescored_later)
        .group_by(period_key, ModelVersion.model_number)
    )
    points = [
        RatePoint(
            period_start=start if isinstance(start, date) else date.fromisoformat(start),
            model_number=int(model),
            fnr=missed / n_defect if n_defect else None,
            fpr=alarms / n_good if n_good else None,
            n_defect=int(n_defect),
            n_good=int(n_good),
            n_missed=int(missed),
            n_false_alarm=int(alarms),
        )
        for start, model, n_defect, missed, n_good, alarms in session.execute(statement)
    ]
    points.sort(key=lambda point: (point.period_start, point.model_number))
    return points


def review_counts(session: Session, project_id: int) -> dict[str, int]:
    """Return ``{"total", "reviewed", "unreviewed", "flagged_unreviewed"}`` image counts.

    ``flagged_unreviewed`` counts unlabelled images whose latest prediction (of the active
    version; of any version when none is active) is flagged against the version's current
    threshold: the head of the review queue.
    """
    version_id = active_version_id(session, project_id)
    reviewed = Image.current_review_id.is_not(None)
    threshold = func.coalesce(ModelVersion.threshold, Prediction.threshold)
    flagged = case((Prediction.score >= threshold, 1), else_=0)
    statement = select(reviewed, flagged, func.count()).select_from(Image)
    if version_id is not None:  # the version's latest prediction: the one not superseded
        latest_of_version = (
            (Prediction.image_id == Image.id)
            & (Prediction.model_version_id == version_id)
            & Prediction.superseded.is_(False)
        )
        statement = statement.outerjoin(Prediction, latest_of_version)
    else:
        latest = latest_prediction_ids(project_id, per_version=False, dialect=_dialect(session))
        statement = statement.outerjoin(latest, latest.c.image_id == Image.id).outerjoin(
            Prediction, Prediction.id == latest.c.prediction_id
        )
    rows = session.execute(
        statement.outerjoin(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Image.project_id == project_id)
        .group_by(reviewed, flagged)
    )
    counts = {"total": 0, "reviewed": 0, "unreviewed": 0, "flagged_unreviewed": 0}
    for reviewed, is_flagged, n in rows:
        counts["total"] += n
        counts["reviewed" if reviewed else "unreviewed"] += n
        if is_flagged and not reviewed:
            counts["flagged_unreviewed"] += n
    return counts


def confusion(
    session: Session, project_id: int, model_version_id: int | None = None
) -> dict[str, int]:
    """Return ``{"tp", "fp", "tn", "fn"}`` of stored verdicts against current labels.

    A model is judged as a whole lineage: each reviewed image's latest prediction among the
    revisions of the version's model, so an instant update does not empty the matrix.

    Args:
        session: The caller's session.
        project_id: The project.
        model_version_id: A version of the model judged; default the active one, or, when none
            is active, each image's latest prediction of any version.
    """
    version_id = model_version_id or active_version_id(session, project_id)
    statement = (
        select(Review.label, Prediction.verdict, func.count())
        .select_from(Image)
        .join(Review, Review.id == Image.current_review_id)
        .where(Image.project_id == project_id)
        .group_by(Review.label, Prediction.verdict)
    )
    if version_id is None:
        latest = latest_prediction_ids(project_id, per_version=False, dialect=_dialect(session))
        statement = statement.join(latest, latest.c.image_id == Image.id).join(
            Prediction, Prediction.id == latest.c.prediction_id
        )
    else:
        model = same_model_ids(project_id, version_id)
        later = aliased(Prediction)
        rescored_later = exists().where(
            later.image_id == Prediction.image_id,
            later.superseded.is_(False),
            later.model_version_id.in_(model),
            _after(later, Prediction),
        )
        of_model = (
            (Prediction.image_id == Image.id)
            & Prediction.superseded.is_(False)
            & Prediction.model_version_id.in_(model)
        )
        statement = statement.join(Prediction, of_model).where(~rescored_later)
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for label, verdict, n in session.execute(statement):
        if label is None or verdict is None:
            continue
        flagged = verdict == Label.DEFECT
        if label == Label.DEFECT:
            counts["tp" if flagged else "fn"] += n
        else:
            counts["fp" if flagged else "tn"] += n
    return counts


def _after(later: Any, earlier: Any) -> ColumnElement[bool]:
    """``later`` is a later prediction than ``earlier`` (time, then id, as everywhere)."""
    return (later.created_at > earlier.created_at) | (
        (later.created_at == earlier.created_at) & (later.id > earlier.id)
    )


def score_distribution(session: Session, project_id: int) -> ScoreDistribution:
    """Return every scored image's latest score with its current label, and the threshold.

    Scores come from the active version (any version when none is active), in no particular
    order; the threshold is the active version's current one (``None`` without one).
    """
    version_id = active_version_id(session, project_id)
    points = [
        (score, label)
        for score, label in session.execute(
            _labelled_scores_select(session, project_id, version_id)
        )
    ]
    threshold = None
    if version_id is not None:
        threshold = session.scalar(
            select(ModelVersion.threshold).where(ModelVersion.id == version_id)
        )
    return ScoreDistribution(points, threshold)


def score_ranges(session: Session, project_id: int) -> dict[int, tuple[float, float]]:
    """The lowest and highest score each of the project's model versions has given.

    Returns:
        ``{model_version_id: (min score, max score)}`` for versions with predictions.
    """
    rows = session.execute(
        select(Prediction.model_version_id, func.min(Prediction.score), func.max(Prediction.score))
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(ModelVersion.project_id == project_id)
        .group_by(Prediction.model_version_id)
    )
    return {version_id: (low, high) for version_id, low, high in rows}


def labelled_scores(
    session: Session, project_id: int, model_version_id: int
) -> list[tuple[float, str]]:
    """Return ``(score, current label)`` of every labelled image the version has scored."""
    statement = _labelled_scores_select(session, project_id, model_version_id, labelled_only=True)
    return [(score, label) for score, label in session.execute(statement)]


def _labelled_scores_select(
    session: Session, project_id: int, model_version_id: int | None, *, labelled_only: bool = False
) -> Any:
    latest = latest_prediction_ids(
        project_id, model_version_id, per_version=False, dialect=_dialect(session)
    )
    statement = (
        select(Prediction.score, Review.label)
        .select_from(Image)
        .join(latest, latest.c.image_id == Image.id)
        .join(Prediction, Prediction.id == latest.c.prediction_id)
    )
    on_review = Review.id == Image.current_review_id
    statement = statement.join(Review, on_review, isouter=not labelled_only)
    return statement.where(Image.project_id == project_id)


def _dialect(session: Session) -> str:
    """The session's database dialect name (``"sqlite"``, ``"postgresql"``)."""
    return session.get_bind().dialect.name

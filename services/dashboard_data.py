"""Everything the Dashboard page reads, gathered in one call (the page caches it).

:func:`dashboard_data` is the plain function behind the page's ``st.cache_data`` wrapper, so
the page and ``bench/dashboard_queries.py`` run the same sequence of queries. The audit
section (:func:`services.audit_sampling.miss_rate_report`) is read outside the cache, because
it shows the current audit share; the shift report only when asked for.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from db.dashboard import (
    RatePoint,
    ScoreDistribution,
    confusion,
    error_rates_over_time,
    review_counts,
    score_distribution,
    throughput,
)
from db.dashboard_views import (
    defect_type_counts,
    good_part_scores,
    pair_label_tables,
)
from db.model_families import active_version_id
from db.periods import Period
from services.dashboard_stats import (
    DRIFT_WINDOW,
    DriftCheck,
    PairAgreement,
    agreement_from_tables,
    score_drift,
)
from services.line_trends import LineTrends, TrendPeriod, line_trends
from services.model_changes import DetectorHistory, detector_changes


class DashboardData(NamedTuple):
    """The cached part of the Dashboard page (the field order is the page's unpacking order).

    Attributes:
        line: The headline: the line's estimated FNR / FPR per period and model lineage, and
            the load (:func:`services.line_trends.line_trends`).
        changes: When the detector changed and why
            (:func:`services.model_changes.detector_changes`).
        rates: FNR / FPR on reviewed parts per period and model
            (:func:`db.dashboard.error_rates_over_time`).
        counts: ``{"total", "reviewed", "unreviewed", "flagged_unreviewed"}``.
        matrix: ``{"tp", "fp", "tn", "fn"}`` of the active model (all its revisions).
        distribution: Scores with labels and the active threshold.
        work: Reviews per reviewer and period (:func:`db.dashboard.throughput`).
        defect_types: ``(defect type, parts)``, most frequent first.
        agreement: Inspector pairs' agreement.
        drift: The drift check of the active version's good parts; ``None`` without one.
    """

    line: LineTrends
    changes: DetectorHistory
    rates: list[RatePoint]
    counts: dict[str, int]
    matrix: dict[str, int]
    distribution: ScoreDistribution
    work: list[dict[str, Any]]
    defect_types: list[tuple[str, int]]
    agreement: list[PairAgreement]
    drift: DriftCheck | None


def detail_period(period: TrendPeriod) -> Period:
    """The period of the charts other than the headline: shifts are grouped by day."""
    return "week" if period == "week" else "day"


def dashboard_data(session: Session, project_id: int, period: TrendPeriod) -> DashboardData:
    """Run every cached query of the Dashboard page, in the page's order.

    Args:
        session: The caller's session (read only).
        project_id: The project.
        period: ``"day"``, ``"week"`` or ``"shift"`` (the headline's periods; the other
            charts group shifts by day).

    Returns:
        The page's numbers.

    Raises:
        ValueError: On an unknown period.
    """
    by = detail_period(period)
    active = active_version_id(session, project_id)
    good_scores = (
        [] if active is None else good_part_scores(session, project_id, active, ends=DRIFT_WINDOW)
    )
    return DashboardData(
        line=line_trends(session, project_id, period),
        changes=detector_changes(session, project_id),
        rates=error_rates_over_time(session, project_id, period=by),
        counts=review_counts(session, project_id),
        matrix=confusion(session, project_id),
        distribution=score_distribution(session, project_id),
        work=throughput(session, project_id, period=by),
        defect_types=defect_type_counts(session, project_id),
        agreement=agreement_from_tables(pair_label_tables(session, project_id)),
        drift=None if active is None else score_drift(good_scores),
    )

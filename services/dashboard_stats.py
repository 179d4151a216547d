"""Statistics behind the manager's views: inspector agreement and score drift.

* :func:`pairwise_agreement`: for every pair of reviewers who labelled the same parts, how often
  they agreed (with a Wilson interval, :func:`adcore.rates.rate_estimate`) and Cohen's kappa
  (scikit-learn), which discounts the agreement two reviewers reach by chance when almost every
  part is good.
* :func:`score_drift`: whether the scores of recent good parts have moved away from the scores
  the same model gave good parts when it started, by a two-sample Kolmogorov-Smirnov test
  (scipy). The alarm rule is stated with the result: p < ``alpha`` (0.01) *and* a KS statistic of
  at least ``min_statistic`` (0.2: the two score distributions' CDFs differ by 20 points
  somewhere), so a huge history does not raise an alarm on a shift too small to matter.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from adcore.rates import RateEstimate, rate_estimate
from db.dashboard_views import pair_tables_from_opinions

DRIFT_WINDOW = 200
"""Good parts in each of the two compared windows (the model's first ones, the latest ones)."""
DRIFT_MIN_PARTS = 50
"""Fewest good parts per window for a drift test."""
DRIFT_ALPHA = 0.01
DRIFT_MIN_STATISTIC = 0.2


@dataclass(frozen=True)
class PairAgreement:
    """How two reviewers' labels of the same parts compare.

    Attributes:
        reviewers: The two reviewer names, sorted.
        agreement: Parts they labelled alike among the parts both labelled.
        kappa: Cohen's kappa (None when it is undefined: both always gave one same label).
    """

    reviewers: tuple[str, str]
    agreement: RateEstimate
    kappa: float | None


def pairwise_agreement(opinions: Mapping[int, Mapping[str, str]]) -> list[PairAgreement]:
    """Agreement of every reviewer pair over the parts both labelled.

    Args:
        opinions: ``{part id: {reviewer: label}}`` (:func:`db.dashboard_views.second_opinions`).

    Returns:
        One :class:`PairAgreement` per pair with shared parts, most shared parts first.
    """
    return agreement_from_tables(pair_tables_from_opinions(opinions))


def agreement_from_tables(
    tables: Mapping[tuple[str, str], Mapping[tuple[str, str], int]],
) -> list[PairAgreement]:
    """Agreement of every reviewer pair from their label contingency tables.

    Cohen's kappa is scikit-learn's, called once per pair on the table's distinct label pairs
    weighted by their counts (the same confusion matrix as one row per part, far fewer rows).

    Args:
        tables: ``{(first reviewer, second reviewer): {(first's label, second's label): parts}}``
            with the two names sorted.

    Returns:
        One :class:`PairAgreement` per pair with shared parts, most shared parts first.
    """
    from sklearn.metrics import cohen_kappa_score

    out = []
    for pair, table in tables.items():
        cells = [(a, b, n) for (a, b), n in table.items() if n > 0]
        if not cells:
            continue
        n_shared = sum(n for _, _, n in cells)
        agreed = sum(n for a, b, n in cells if a == b)
        kappa = None
        if len({label for a, b, _ in cells for label in (a, b)}) > 1:
            value = float(
                cohen_kappa_score(
                    [a for a, _, _ in cells],
                    [b for _, b, _ in cells],
                    sample_weight=[n for _, _, n in cells],
                )
            )
            kappa = None if math.isnan(value) else value
        out.append(PairAgreement(pair, rate_estimate(agreed, n_shared), kappa))
    return sorted(out, key=lambda p: (-p.agreement.n, p.reviewers))


@dataclass(frozen=True)
class DriftCheck:
    """The drift test of recent good parts' scores against the model's first good parts.

    Attributes:
        tested: Whether there were enough parts to test (else ``reason`` says why).
        alarm: Whether the scores drifted by the stated rule.
        statistic: The KS statistic (largest CDF difference), or None.
        p_value: The KS test's p-value, or None.
        n_reference: Good parts in the reference window (the model's first ones).
        n_recent: Good parts in the recent window (the latest ones).
        reference_span: First and last scoring moments of the reference window.
        recent_span: First and last scoring moments of the recent window.
        median_shift: Median recent score minus median reference score, or None.
        rule: The alarm rule in words.
        reason: Why no test was made, or empty.
    """

    tested: bool
    alarm: bool
    statistic: float | None
    p_value: float | None
    n_reference: int
    n_recent: int
    reference_span: tuple[datetime, datetime] | None
    recent_span: tuple[datetime, datetime] | None
    median_shift: float | None
    rule: str
    reason: str = ""


def score_drift(
    scored: Sequence[tuple[datetime, float]],
    *,
    window: int = DRIFT_WINDOW,
    min_parts: int = DRIFT_MIN_PARTS,
    alpha: float = DRIFT_ALPHA,
    min_statistic: float = DRIFT_MIN_STATISTIC,
) -> DriftCheck:
    """Test whether the latest good parts score differently from the model's first ones.

    The first ``window`` good parts the model scored are the reference; the last ``window``
    (never overlapping the reference: with fewer than ``2 * window`` parts, the history is
    split in two halves) are compared with them by a two-sample Kolmogorov-Smirnov test.

    Args:
        scored: ``(scored at, score)`` of good parts in scoring order
            (:func:`db.dashboard_views.good_part_scores`).
        window: Parts per window.
        min_parts: Fewest parts per window for a test.
        alpha: The test's significance level.
        min_statistic: Smallest KS statistic that raises the alarm.

    Returns:
        The :class:`DriftCheck`.
    """
    rule = (
        f"alarm when the Kolmogorov-Smirnov test gives p < {alpha:g} and the score "
        f"distributions differ by at least {min_statistic:.0%} somewhere (KS statistic)"
    )
    size = min(window, len(scored) // 2)
    if size < min_parts:
        reason = (
            f"{len(scored)} good parts scored by this model: the drift test needs "
            f"{2 * min_parts} (two windows of {min_parts})."
        )
        return DriftCheck(False, False, None, None, size, size, None, None, None, rule, reason)
    from scipy.stats import ks_2samp

    reference, recent = scored[:size], scored[-size:]
    ref_scores = [score for _, score in reference]
    new_scores = [score for _, score in recent]
    result = ks_2samp(ref_scores, new_scores)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return DriftCheck(
        tested=True,
        alarm=p_value < alpha and statistic >= min_statistic,
        statistic=statistic,
        p_value=p_value,
        n_reference=size,
        n_recent=size,
        reference_span=(reference[0][0], reference[-1][0]),
        recent_span=(recent[0][0], recent[-1][0]),
        median_shift=statistics.median(new_scores) - statistics.median(ref_scores),
        rule=rule,
    )

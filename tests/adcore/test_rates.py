"""Rates with Wilson score intervals, checked against hand-computed known cases."""

from __future__ import annotations

import math

import pytest

from adcore.rates import rate_estimate

Z = 1.959963984540054  # the 97.5% normal quantile


def wilson(count: int, n: int) -> tuple[float, float]:
    """The Wilson score interval by its textbook formula."""
    p = count / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("count", "n"), [(0, 5), (5, 10), (1, 12), (30, 12000), (12, 12)])
def test_the_interval_is_the_wilson_score_interval(count: int, n: int) -> None:
    estimate = rate_estimate(count, n)
    low, high = wilson(count, n)
    assert estimate.rate == pytest.approx(count / n)
    assert estimate.low == pytest.approx(max(low, 0.0), abs=1e-9)
    assert estimate.high == pytest.approx(min(high, 1.0), abs=1e-9)
    assert (estimate.count, estimate.n) == (count, n)


def test_zero_of_five_is_not_a_zero_rate() -> None:
    estimate = rate_estimate(0, 5)
    assert estimate.rate == 0.0 and estimate.high == pytest.approx(0.4345, abs=1e-4)


def test_twelve_parts_give_a_wider_interval_than_twelve_thousand() -> None:
    few, many = rate_estimate(1, 12), rate_estimate(1000, 12000)
    assert few.rate == pytest.approx(many.rate)
    assert (few.high - few.low) > 10 * (many.high - many.low)


def test_no_parts_give_no_rate_and_bad_counts_are_refused() -> None:
    assert rate_estimate(0, 0).rate is None and rate_estimate(0, 0).high is None
    for count, n in ((3, 2), (-1, 5), (1.5, 4), (True, 3)):
        with pytest.raises(ValueError, match="[Cc]ounts"):
            rate_estimate(count, n)
    with pytest.raises(ValueError, match="confidence"):
        rate_estimate(1, 2, confidence=1.5)

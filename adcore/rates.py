"""Error rates with their uncertainty: a share of parts and its confidence interval.

A miss rate from 12 reviewed defects is not a miss rate from 12,000: every rate Loupe shows
comes with the number of parts behind it and a Wilson score interval (scipy's
``binomtest(...).proportion_ci(method="wilson")``), which stays inside [0, 1] and is honest
about 0 of 5 (0% but up to ~43%).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class RateEstimate:
    """``count`` events among ``n`` parts, as a rate with a confidence interval.

    Attributes:
        count: Parts with the event (missed defects, false alarms, ...).
        n: Parts the rate is over.
        rate: ``count / n`` (None when ``n`` is 0).
        low: Lower end of the interval (None when ``n`` is 0).
        high: Upper end of the interval (None when ``n`` is 0).
        confidence: The interval's confidence level.
    """

    count: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    confidence: float = DEFAULT_CONFIDENCE


def rate_estimate(count: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> RateEstimate:
    """The rate ``count / n`` with its Wilson score interval (scipy).

    Args:
        count: Parts with the event.
        n: Parts the rate is over.
        confidence: Confidence level of the interval, in (0, 1).

    Returns:
        The estimate; rate and interval are None when ``n`` is 0.

    Raises:
        ValueError: On counts that are not whole numbers, negative counts, ``count > n``, or a
            confidence outside (0, 1).
    """
    for value in (count, n):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"Counts must be whole numbers, got {value!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"The confidence must be between 0 and 1, got {confidence!r}.")
    count, n = int(count), int(n)
    if n < 0 or count < 0 or count > n:
        raise ValueError(f"Bad counts: {count} of {n}.")
    if n == 0:
        return RateEstimate(0, 0, None, None, None, confidence)
    from scipy.stats import binomtest  # scipy.stats takes half a second to import

    interval = binomtest(count, n).proportion_ci(confidence_level=confidence, method="wilson")
    return RateEstimate(count, n, count / n, float(interval.low), float(interval.high), confidence)

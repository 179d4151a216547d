"""Audit sampling of passed parts and the miss rate it estimates.

Reviews alone are censored: inspectors only see parts that score near or above the threshold,
so they never learn how many defects the threshold lets through. An *audit* fixes that: a small
random share of the parts that pass is drawn at inspection time and reviewed like any flagged
part. The defects found among audited passed parts estimate the miss rate among all passed
parts, with a binomial confidence interval (scipy's Wilson score interval).

Pure functions: drawing is :func:`draw_audit`, estimating is :func:`miss_rate_estimate`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from adcore.rates import DEFAULT_CONFIDENCE, rate_estimate

DEFAULT_AUDIT_SHARE = 0.02
"""Share of the passed parts drawn for audit unless a project says otherwise."""
MAX_AUDIT_SHARE = 0.5
"""Highest share a project may ask for (beyond it, review everything instead)."""


def check_audit_share(share: float) -> float:
    """Return ``share`` as a float if it is in [0, :data:`MAX_AUDIT_SHARE`], else raise.

    Raises:
        ValueError: If the share is not a number in that range.
    """
    if isinstance(share, bool | str | bytes):  # float("0.1") and float(True) would pass
        raise ValueError(f"The audit share must be a number, got {share!r}.")
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise ValueError(f"The audit share must be a number, got {share!r}.") from None
    if not 0.0 <= value <= MAX_AUDIT_SHARE:
        raise ValueError(
            f"The audit share must be between 0 and {MAX_AUDIT_SHARE:.0%}, got {share!r}."
        )
    return value


def draw_audit(share: float, rng: random.Random | None = None) -> bool:
    """Whether one passed part is drawn for audit (probability ``share``).

    Args:
        share: The audit share in [0, :data:`MAX_AUDIT_SHARE`].
        rng: A random generator (a seeded one for reproducible draws); default the system's.

    Returns:
        True for a part to audit.
    """
    value = check_audit_share(share)
    if value == 0.0:
        return False
    draw = (rng or random).random()
    return draw < value


@dataclass(frozen=True)
class MissRateEstimate:
    """The miss rate among passed parts, from audited ones.

    Attributes:
        n_audited: Audited passed parts with a current label.
        n_missed: Of those, parts labelled defect (defects the threshold let through).
        rate: ``n_missed / n_audited`` (None without audited parts).
        low: Lower end of the confidence interval (None without audited parts).
        high: Upper end of the confidence interval (None without audited parts).
        confidence: The interval's confidence level.
    """

    n_audited: int
    n_missed: int
    rate: float | None
    low: float | None
    high: float | None
    confidence: float = DEFAULT_CONFIDENCE

    def within(self, target: float) -> bool:
        """Whether the evidence shows the miss rate stays within ``target``.

        True only when there are audited parts and the interval's upper end is at most
        ``target``: an estimate without evidence never counts as safe.
        """
        return self.high is not None and self.high <= target


def miss_rate_estimate(
    n_missed: int, n_audited: int, confidence: float = DEFAULT_CONFIDENCE
) -> MissRateEstimate:
    """Estimate the miss rate among passed parts with a Wilson score interval (scipy).

    Args:
        n_missed: Audited passed parts labelled defect.
        n_audited: Audited passed parts with a label.
        confidence: Confidence level of the interval.

    Returns:
        The estimate; rate and interval are None when nothing was audited.

    Raises:
        ValueError: On counts that are not whole numbers, negative counts, more misses than
            audited parts, or a confidence outside (0, 1).
    """
    try:
        estimate = rate_estimate(n_missed, n_audited, confidence)
    except ValueError as err:
        raise ValueError(f"Bad audit counts: {err}") from None
    return MissRateEstimate(
        estimate.n, estimate.count, estimate.rate, estimate.low, estimate.high, confidence
    )

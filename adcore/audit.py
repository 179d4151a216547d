"""Audit sampling of passed parts and the miss rate it estimates.

Reviews alone are censored: inspectors only see parts that score near or above the threshold,
so they never learn how many defects the threshold lets through. An *audit* fixes that: a small
random share of the parts that pass is drawn at inspection time and reviewed like any flagged
part. The defects found among audited passed parts estimate the miss rate among all passed
parts, with a binomial confidence interval (scipy's Wilson score interval).

Since the decision cascade, each *decision region* has its own known, nonzero audit odds
(:class:`AuditOdds`): parts the screen passes far below the threshold (``deep_pass``), just
below it (``near_pass``), and flagged parts the triage model auto-accepts (``auto_accepted``).
Parts sent to a human are reviewed with certainty (probability 1). The odds in force are
stored with every part, so each audited label can be weighted by 1/probability in training
and estimation (:mod:`adcore.loop_estimate`).

Pure functions: drawing is :func:`draw_audit`, estimating is :func:`miss_rate_estimate`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from adcore.rates import DEFAULT_CONFIDENCE, rate_estimate
from adcore.verdicts import is_flagged

DEFAULT_AUDIT_SHARE = 0.02
"""Share of the passed parts drawn for audit unless a project says otherwise."""

SENT_TO_HUMAN = "sent_to_human"
"""Flagged by the screen and not auto-accepted: reviewed with certainty."""
AUTO_ACCEPTED = "auto_accepted"
"""Flagged by the screen, accepted as good by the triage model (stage 2)."""
NEAR_PASS = "near_pass"
"""Passed by the screen with a score within the near band below the threshold."""
DEEP_PASS = "deep_pass"
"""Passed by the screen further below the threshold."""
REGIONS = (SENT_TO_HUMAN, AUTO_ACCEPTED, NEAR_PASS, DEEP_PASS)
"""Every decision region (the values of :class:`db.DecisionRegion`)."""
AUDITED_REGIONS = (AUTO_ACCEPTED, NEAR_PASS, DEEP_PASS)
"""Regions whose parts pass the line and reach a human only when drawn for audit."""
MIN_AUDIT_ODDS = 0.001
"""Lowest odds a region may have: every region is audited with a known, nonzero probability."""
DEFAULT_NEAR_BAND = 0.1
"""Relative band below the threshold that counts as ``near_pass`` (``score >= t - |t| * band``)."""


@dataclass(frozen=True)
class AuditOdds:
    """The audit probability of each region where the line passes parts, and the near band.

    Attributes:
        deep_pass: Odds for parts passed far below the threshold.
        near_pass: Odds for parts passed within the near band.
        auto_accepted: Odds for flagged parts the triage model auto-accepted.
        near_band: The near band, relative to the threshold's size.
    """

    deep_pass: float = DEFAULT_AUDIT_SHARE
    near_pass: float = 0.2
    auto_accepted: float = 0.1
    near_band: float = DEFAULT_NEAR_BAND

    def __post_init__(self) -> None:
        for region in AUDITED_REGIONS:
            object.__setattr__(self, region, check_region_odds(getattr(self, region), region))
        band = self.near_band
        if isinstance(band, bool) or not isinstance(band, int | float) or not 0 <= band <= 1:
            raise ValueError(f"The near band must be a fraction from 0 to 1, got {band!r}.")

    def probability(self, region: str) -> float:
        """The known probability that a part of ``region`` is looked at by a human.

        Raises:
            ValueError: On an unknown region.
        """
        if region == SENT_TO_HUMAN:
            return 1.0
        if region not in AUDITED_REGIONS:
            raise ValueError(f"Unknown decision region {region!r}; known: {', '.join(REGIONS)}.")
        return float(getattr(self, region))

    def to_json(self) -> dict[str, float]:
        """A JSON-ready dict (the project setting)."""
        return {
            "deep_pass": self.deep_pass,
            "near_pass": self.near_pass,
            "auto_accepted": self.auto_accepted,
            "near_band": self.near_band,
        }


def check_region_odds(odds: float, region: str = "a region") -> float:
    """Return ``odds`` as a float if it is in [:data:`MIN_AUDIT_ODDS`, 1], else raise.

    Raises:
        ValueError: If the odds are not a number in that range (zero is refused: a region
            nobody ever looks at hides its misses).
    """
    if isinstance(odds, bool | str | bytes):
        raise ValueError(f"The audit odds of {region} must be a number, got {odds!r}.")
    try:
        value = float(odds)
    except (TypeError, ValueError):
        raise ValueError(f"The audit odds of {region} must be a number, got {odds!r}.") from None
    if not MIN_AUDIT_ODDS <= value <= 1.0:
        raise ValueError(
            f"The audit odds of {region} must be between {MIN_AUDIT_ODDS:.1%} and 100% "
            f"(never zero: a region nobody looks at hides its misses), got {odds!r}."
        )
    return value


def decision_region(
    score: float, threshold: float, *, auto_accepted: bool, near_band: float
) -> str:
    """The region a part falls in: flagged (sent to a human or auto-accepted) or passed.

    Args:
        score: The detector's score.
        threshold: The screen's threshold (flagged when ``score >= threshold``).
        auto_accepted: Whether the triage model accepted the flagged part as good.
        near_band: The near band, relative to ``|threshold|``.

    Returns:
        One of :data:`REGIONS`.
    """
    if is_flagged(score, threshold):
        return AUTO_ACCEPTED if auto_accepted else SENT_TO_HUMAN
    if score >= threshold - abs(threshold) * near_band:
        return NEAR_PASS
    return DEEP_PASS


def draw_audit(share: float, rng: random.Random | None = None) -> bool:
    """Whether one part is drawn for audit (probability ``share``).

    Args:
        share: The probability, in [0, 1] (a region's odds).
        rng: A random generator (a seeded one for reproducible draws); default the system's.

    Returns:
        True for a part to audit.

    Raises:
        ValueError: If ``share`` is not a number in [0, 1].
    """
    try:
        value = float(share)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(share, bool | str | bytes) or not 0.0 <= value <= 1.0:
        raise ValueError(f"An audit probability must be a number from 0 to 1, got {share!r}.")
    if value == 0.0:
        return False
    if value == 1.0:
        return True
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

"""Audit sampling in the core: region odds, decision regions, drawing, the Wilson interval."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from adcore.audit import (
    AUDITED_REGIONS,
    AUTO_ACCEPTED,
    DEEP_PASS,
    DEFAULT_AUDIT_SHARE,
    DEFAULT_NEAR_BAND,
    MIN_AUDIT_ODDS,
    NEAR_PASS,
    REGIONS,
    SENT_TO_HUMAN,
    AuditOdds,
    MissRateEstimate,
    check_region_odds,
    decision_region,
    draw_audit,
    miss_rate_estimate,
)


def wilson(n_missed: int, n_audited: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval written out (the textbook formula, no continuity correction)."""
    z = norm.ppf(0.5 + confidence / 2)
    p = n_missed / n_audited
    centre = (p + z * z / (2 * n_audited)) / (1 + z * z / n_audited)
    half = z * math.sqrt(p * (1 - p) / n_audited + z * z / (4 * n_audited**2))
    half /= 1 + z * z / n_audited
    return max(0.0, centre - half), min(1.0, centre + half)


def test_the_default_share_is_two_percent() -> None:
    assert DEFAULT_AUDIT_SHARE == 0.02


def test_share_zero_never_draws_and_does_not_use_the_generator() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert not any(draw_audit(0.0, rng) for _ in range(1000))
    assert rng.getstate() == state


def test_draws_follow_the_share_and_repeat_with_the_seed() -> None:
    rng_a, rng_b = random.Random(7), random.Random(7)
    draws_a = [draw_audit(0.3, rng_a) for _ in range(5000)]
    draws_b = [draw_audit(0.3, rng_b) for _ in range(5000)]
    assert draws_a == draws_b
    assert 0.27 < sum(draws_a) / len(draws_a) < 0.33
    draws_high = [draw_audit(0.9, rng_a) for _ in range(2000)]  # a region's odds may exceed 50%
    assert 0.87 < sum(draws_high) / len(draws_high) < 0.93


def test_probability_one_always_draws_and_does_not_use_the_generator() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert all(draw_audit(1.0, rng) for _ in range(1000))
    assert draw_audit(1, rng)
    assert rng.getstate() == state


@pytest.mark.parametrize("probability", [-0.01, 1.01, 2.0, math.nan, math.inf, "0.1", True, b"x"])
def test_a_probability_outside_zero_to_one_is_refused(probability: object) -> None:
    with pytest.raises(ValueError, match="audit probability"):
        draw_audit(probability, random.Random(0))  # type: ignore[arg-type]


def test_no_audited_part_gives_no_rate_and_is_never_within_a_target() -> None:
    estimate = miss_rate_estimate(0, 0)
    assert estimate == MissRateEstimate(0, 0, None, None, None, 0.95)
    assert not estimate.within(0.05)


@pytest.mark.parametrize(("n_missed", "n_audited"), [(0, 10), (1, 50), (3, 40), (7, 7), (12, 300)])
def test_the_interval_is_scipys_wilson_interval(n_missed: int, n_audited: int) -> None:
    estimate = miss_rate_estimate(n_missed, n_audited)
    low, high = wilson(n_missed, n_audited)
    assert estimate.rate == pytest.approx(n_missed / n_audited)
    assert estimate.low == pytest.approx(low, abs=1e-9)
    assert estimate.high == pytest.approx(high, abs=1e-9)
    scipy = binomtest(n_missed, n_audited).proportion_ci(0.95, method="wilson")
    assert (estimate.low, estimate.high) == pytest.approx((scipy.low, scipy.high))
    assert estimate.low <= estimate.rate <= estimate.high


def test_known_values_and_the_target_check() -> None:
    none_missed = miss_rate_estimate(0, 10)
    assert none_missed.low == 0.0
    assert none_missed.high == pytest.approx(0.27753, abs=1e-5)  # z^2 / (n + z^2)
    many = miss_rate_estimate(0, 400)
    assert many.high == pytest.approx(0.009512, abs=1e-6)
    assert many.within(0.01) and not many.within(0.009)
    assert not none_missed.within(0.05)  # ten clean parts do not prove a 5% miss rate


def test_a_higher_confidence_widens_the_interval() -> None:
    narrow = miss_rate_estimate(2, 100, confidence=0.8)
    wide = miss_rate_estimate(2, 100, confidence=0.99)
    assert wide.low < narrow.low and wide.high > narrow.high
    assert wide.confidence == 0.99


def test_numpy_counts_are_accepted() -> None:
    assert miss_rate_estimate(np.int64(2), np.int32(40)).rate == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("n_missed", "n_audited"), [(-1, 10), (0, -1), (11, 10), (1.5, 10), (1, 10.0), (True, 2)]
)
def test_bad_counts_are_refused(n_missed: object, n_audited: object) -> None:
    with pytest.raises(ValueError, match="[Aa]udit counts"):
        miss_rate_estimate(n_missed, n_audited)  # type: ignore[arg-type]


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95, -0.5, math.nan])
def test_a_bad_confidence_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        miss_rate_estimate(1, 10, confidence=confidence)


def test_the_default_odds_per_region() -> None:
    odds = AuditOdds()
    assert odds.deep_pass == DEFAULT_AUDIT_SHARE == 0.02
    assert odds.near_pass == 0.2
    assert odds.auto_accepted == 0.1
    assert odds.near_band == DEFAULT_NEAR_BAND == 0.1
    assert odds.to_json() == {
        "deep_pass": 0.02,
        "near_pass": 0.2,
        "auto_accepted": 0.1,
        "near_band": 0.1,
    }
    assert AuditOdds(**odds.to_json()) == odds
    assert set(REGIONS) == {SENT_TO_HUMAN, *AUDITED_REGIONS}


def test_each_region_has_its_probability_and_a_part_sent_to_a_human_is_certain() -> None:
    odds = AuditOdds(deep_pass=0.01, near_pass=0.3, auto_accepted=0.15, near_band=0.2)
    assert odds.probability(SENT_TO_HUMAN) == 1.0
    assert odds.probability(AUTO_ACCEPTED) == 0.15
    assert odds.probability(NEAR_PASS) == 0.3
    assert odds.probability(DEEP_PASS) == 0.01
    assert all(isinstance(odds.probability(region), float) for region in REGIONS)
    with pytest.raises(ValueError, match="Unknown decision region"):
        odds.probability("flagged")


def test_odds_are_stored_as_floats_and_the_ends_of_the_range_are_accepted() -> None:
    odds = AuditOdds(deep_pass=MIN_AUDIT_ODDS, near_pass=1, auto_accepted=np.float32(0.25))
    assert odds.deep_pass == MIN_AUDIT_ODDS
    assert odds.near_pass == 1.0 and isinstance(odds.near_pass, float)
    assert odds.auto_accepted == pytest.approx(0.25) and type(odds.auto_accepted) is float
    assert AuditOdds(near_band=0).near_band == 0
    assert AuditOdds(near_band=1.0).near_band == 1.0


@pytest.mark.parametrize("region", AUDITED_REGIONS)
@pytest.mark.parametrize(
    "value", [0, 0.0, MIN_AUDIT_ODDS / 2, -0.1, 1.01, math.nan, math.inf, None, "0.1", True, b"x"]
)
def test_zero_negative_above_one_and_non_numeric_odds_are_refused(
    region: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"audit odds of {region}"):
        AuditOdds(**{region: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 0.0, -0.5, 1.5, MIN_AUDIT_ODDS * 0.99])
def test_zero_odds_are_refused_because_nobody_would_look(value: float) -> None:
    with pytest.raises(ValueError, match="never zero"):
        check_region_odds(value, "the test region")


@pytest.mark.parametrize("value", ["0.2", False, True, None, b"1"])
def test_odds_that_are_not_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="the test region must be a number"):
        check_region_odds(value, "the test region")  # type: ignore[arg-type]


@pytest.mark.parametrize("band", [-0.01, 1.01, math.nan, True, "0.1", None])
def test_a_near_band_outside_zero_to_one_is_refused(band: object) -> None:
    with pytest.raises(ValueError, match="near band"):
        AuditOdds(near_band=band)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("score", "auto_accepted", "region"),
    [
        (2.5, False, SENT_TO_HUMAN),
        (2.5, True, AUTO_ACCEPTED),
        (2.0, False, SENT_TO_HUMAN),  # a score at the threshold is flagged
        (2.0, True, AUTO_ACCEPTED),
        (1.99, False, NEAR_PASS),
        (1.8, False, NEAR_PASS),  # the band's lower edge, 2.0 - 2.0 * 0.1, is near
        (1.79, False, DEEP_PASS),
        (0.1, False, DEEP_PASS),
        (1.9, True, NEAR_PASS),  # a passed part is never auto-accepted: nothing triaged it
        (-3.0, True, DEEP_PASS),
    ],
)
def test_each_score_falls_in_one_region(score: float, auto_accepted: bool, region: str) -> None:
    assert decision_region(score, 2.0, auto_accepted=auto_accepted, near_band=0.1) == region


def test_the_near_band_is_relative_to_the_size_of_a_negative_threshold() -> None:
    # threshold -2: near band 10% reaches down to -2.2
    assert decision_region(-2.0, -2.0, auto_accepted=False, near_band=0.1) == SENT_TO_HUMAN
    assert decision_region(-2.1, -2.0, auto_accepted=False, near_band=0.1) == NEAR_PASS
    assert decision_region(-2.3, -2.0, auto_accepted=False, near_band=0.1) == DEEP_PASS


def test_a_zero_near_band_leaves_no_near_pass() -> None:
    assert decision_region(1.999, 2.0, auto_accepted=False, near_band=0.0) == DEEP_PASS
    assert decision_region(2.0, 2.0, auto_accepted=False, near_band=0.0) == SENT_TO_HUMAN

"""Audit sampling in the core: checking shares, drawing parts, the Wilson miss-rate interval."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from adcore.audit import (
    DEFAULT_AUDIT_SHARE,
    MAX_AUDIT_SHARE,
    MissRateEstimate,
    check_audit_share,
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


def test_the_default_share_is_two_percent_and_valid() -> None:
    assert DEFAULT_AUDIT_SHARE == 0.02
    assert check_audit_share(DEFAULT_AUDIT_SHARE) == 0.02
    assert check_audit_share(0) == 0.0
    assert check_audit_share(MAX_AUDIT_SHARE) == MAX_AUDIT_SHARE
    assert check_audit_share(np.float32(0.25)) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "share", [-0.01, MAX_AUDIT_SHARE + 0.01, 1.0, math.nan, math.inf, None, "0.1", True, b"x"]
)
def test_a_bad_share_is_refused_with_a_message(share: object) -> None:
    with pytest.raises(ValueError, match="audit share"):
        check_audit_share(share)  # type: ignore[arg-type]


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
    with pytest.raises(ValueError):
        draw_audit(0.9, rng_a)


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

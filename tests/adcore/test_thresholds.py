"""Tests for adcore.thresholds: the FNR-target rule, its optimality, and the fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adcore.audit import miss_rate_estimate
from adcore.metrics import rates_at_threshold
from adcore.thresholds import (
    DEFAULT_GOOD_QUANTILE,
    DEFAULT_TARGET_FNR,
    ThresholdChoice,
    cap_censored_raise,
    fnr_fpr_curve,
    select_threshold,
)


def _random_data(seed: int, n_good: int, n_defect: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(0.0, 1.0, n_good), rng.normal(1.5, 1.0, n_defect)]
    if ties:
        scores = np.round(scores, 1)
    labels = np.r_[np.zeros(n_good, int), np.ones(n_defect, int)]
    order = rng.permutation(scores.size)
    return scores[order], labels[order]


def test_defaults() -> None:
    assert DEFAULT_TARGET_FNR == 0.01
    assert DEFAULT_GOOD_QUANTILE == 0.99


def test_hundred_defects_one_may_be_missed() -> None:
    scores, labels = _random_data(0, 300, 100)
    choice = select_threshold(scores, labels)
    assert isinstance(choice, ThresholdChoice)
    assert choice.rule == "fnr_target"
    assert choice.target_fnr == DEFAULT_TARGET_FNR
    assert choice.good_quantile is None
    assert (choice.n_good, choice.n_defect) == (300, 100)
    defect_scores = np.sort(scores[labels == 1])
    assert choice.value == defect_scores[1]  # exactly the lowest defect is missed
    assert choice.fnr == pytest.approx(0.01)
    r = rates_at_threshold(labels, scores, choice.value)
    assert r.fn == 1
    assert choice.fpr == r.fpr


def test_target_zero_flags_every_defect() -> None:
    scores, labels = _random_data(1, 200, 37)
    choice = select_threshold(scores, labels, target_fnr=0.0)
    assert choice.value == scores[labels == 1].min()
    assert choice.fnr == 0.0
    assert np.all(scores[labels == 1] >= choice.value)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.29, 0.5, 0.9])
@pytest.mark.parametrize("ties", [False, True])
def test_fnr_target_holds_and_fpr_is_minimal(seed: int, target: float, ties: bool) -> None:
    rng = np.random.default_rng(100 + seed)
    scores, labels = _random_data(seed, int(rng.integers(1, 300)), int(rng.integers(1, 150)), ties)
    choice = select_threshold(scores, labels, target_fnr=target)
    rates = rates_at_threshold(labels, scores, choice.value)
    assert choice.fnr == rates.fnr <= target
    assert choice.fpr == rates.fpr
    # The threshold is an observed defect score.
    assert choice.value in scores[labels == 1]
    # No higher threshold keeps the target: the next higher distinct candidate breaks it
    # (every threshold in between misses the same defects as that candidate).
    higher = np.unique(scores[(labels == 1) & (scores > choice.value)])
    if higher.size:
        assert rates_at_threshold(labels, scores, higher[0]).fnr > target
    else:
        assert rates_at_threshold(labels, scores, np.nextafter(choice.value, np.inf)).fnr > target


def test_target_rounding_uses_full_allowance() -> None:
    # 0.29 * 100 == 28.999... in floating point; 29 misses still meet the 0.29 target.
    scores = np.arange(100.0)
    choice = select_threshold(scores, np.ones(100, int), target_fnr=0.29)
    assert choice.value == 29.0
    assert choice.fnr == 0.29
    assert choice.fpr is None  # no good parts to measure it on
    assert choice.n_good == 0


def test_ties_at_threshold_are_flagged() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.9, 0.1])
    labels = np.array([1, 1, 1, 1, 0])
    # Target allows one miss, but the three lowest defects tie: flag them all.
    choice = select_threshold(scores, labels, target_fnr=0.25)
    assert choice.value == 0.5
    assert choice.fnr == 0.0


def test_fallback_quantile_without_defects() -> None:
    scores = np.arange(1000.0)
    choice = select_threshold(scores, np.zeros(1000, int))
    assert choice.rule == "good_quantile"
    assert choice.target_fnr is None and choice.fnr is None
    assert choice.good_quantile == DEFAULT_GOOD_QUANTILE
    assert choice.value == np.quantile(scores, 0.99, method="higher")
    assert choice.value in scores
    assert choice.fpr == pytest.approx(0.01)
    assert (choice.n_good, choice.n_defect) == (1000, 0)


def test_fallback_without_labels_treats_scores_as_good() -> None:
    scores = np.random.default_rng(3).normal(size=250)
    choice = select_threshold(scores, good_quantile=0.9)
    assert choice.rule == "good_quantile"
    assert choice.value == np.quantile(scores, 0.9, method="higher")
    assert choice.fpr == pytest.approx(np.mean(scores >= choice.value))
    assert choice.n_good == 250


def test_fallback_quantile_one_is_max_and_single_score() -> None:
    scores = np.array([0.2, 0.7, 0.4])
    assert select_threshold(scores, good_quantile=1.0).value == 0.7
    choice = select_threshold(np.array([0.3]))
    assert choice.value == 0.3 and choice.fpr == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": np.array([])}, "no scores"),
        ({"scores": np.array([0.1, 0.2]), "labels": np.array([0])}, "same shape"),
        ({"scores": np.array([0.1, 0.2]), "labels": np.array([0, 2])}, "only 0"),
        ({"scores": np.array([0.1, np.nan])}, "NaN"),
        ({"scores": np.array([[0.1]])}, "1-D"),
        ({"scores": np.array([0.1]), "target_fnr": 1.0}, "target_fnr"),
        ({"scores": np.array([0.1]), "target_fnr": -0.1}, "target_fnr"),
        ({"scores": np.array([0.1]), "good_quantile": 0.0}, "good_quantile"),
        ({"scores": np.array([0.1]), "good_quantile": 1.01}, "good_quantile"),
    ],
)
def test_select_threshold_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_threshold(**kwargs)


def test_fnr_fpr_curve_matches_rates() -> None:
    scores, labels = _random_data(7, 50, 20, ties=True)
    thresholds, fnr, fpr = fnr_fpr_curve(labels, scores)
    assert thresholds.shape == fnr.shape == fpr.shape == (np.unique(scores).size + 1,)
    assert np.all(np.diff(thresholds) > 0) and thresholds[-1] == np.inf
    assert np.all(np.diff(fnr) >= 0) and np.all(np.diff(fpr) <= 0)
    for t, a, b in zip(thresholds, fnr, fpr, strict=True):
        r = rates_at_threshold(labels, scores, float(t))
        assert a == pytest.approx(r.fnr) and b == pytest.approx(r.fpr)
    # The operating point of an arbitrary threshold, via searchsorted.
    i = int(np.searchsorted(thresholds, 0.55))
    assert fnr[i] == pytest.approx(rates_at_threshold(labels, scores, 0.55).fnr)


def test_fnr_fpr_curve_single_class() -> None:
    thresholds, fnr, fpr = fnr_fpr_curve(np.zeros(3, int), np.array([0.1, 0.2, 0.3]))
    assert np.all(np.isnan(fnr))
    assert not np.any(np.isnan(fpr))
    assert math.isinf(thresholds[-1])


# --- no raise on censored reviews alone ---------------------------------------------------------


def test_a_lower_threshold_is_always_allowed() -> None:
    decision = cap_censored_raise(4.0, 5.0, miss_rate_estimate(0, 0), 0.01)
    assert (decision.value, decision.capped) == (4.0, False)


def test_a_raise_without_audits_is_capped_at_the_ceiling() -> None:
    decision = cap_censored_raise(7.0, 5.0, miss_rate_estimate(0, 0), 0.01)
    assert (decision.value, decision.chosen, decision.capped) == (5.0, 7.0, True)
    assert "no passed part has been audited" in decision.note


def test_a_raise_needs_the_whole_interval_within_target() -> None:
    too_few = cap_censored_raise(7.0, 5.0, miss_rate_estimate(0, 100), 0.01)  # up to 3.7%
    assert too_few.capped and too_few.value == 5.0 and "3.7%" in too_few.note
    found_misses = cap_censored_raise(7.0, 5.0, miss_rate_estimate(8, 1000), 0.01)  # up to 1.6%
    assert found_misses.capped
    enough = cap_censored_raise(7.0, 5.0, miss_rate_estimate(0, 600), 0.01)
    assert (enough.value, enough.capped) == (7.0, False)


def test_without_a_ceiling_nothing_is_capped() -> None:
    decision = cap_censored_raise(7.0, None, miss_rate_estimate(0, 0), 0.01)
    assert (decision.value, decision.capped) == (7.0, False)
